"""Opening a state store from its URL: the one place that knows every backend.

Kept apart from ``store`` (the interface), which the backends import: were ``open_store`` in
``store``, ``store`` and ``sqlite_store``/``redis_store`` would import each other.

Example:
    >>> store = open_store("sqlite:///runs/state.sqlite", levels=4)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fluidrec.errors import UsageError
from fluidrec.serve.store import Store


def open_store(url: str, levels: int, *, history_len: int = 64) -> Store:
    """``sqlite:///PATH`` (relative: ``sqlite:///state.sqlite``; absolute: ``sqlite:////abs/state.sqlite``) or
    ``redis://HOST:PORT[/DB]``; ``history_len`` caps the clicks kept per user."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from fluidrec.serve.sqlite_store import SQLiteStore

        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise UsageError(f"--state {url!r}: expected sqlite:///PATH")
        return SQLiteStore(path, levels, history_len=history_len)
    if parts.scheme == "redis":
        from fluidrec.serve.redis_store import RedisStore

        return RedisStore(url, levels, history_len=history_len)
    raise UsageError(f"--state {url!r}: expected sqlite:///PATH or redis://HOST:PORT")
