"""Atomic file writes: write to a temporary name beside the target, then rename.

A crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Example:
        >>> with atomic_path("out/table.parquet") as tmp:
        ...     pq.write_table(table, tmp)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def _to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` (dataclasses, numpy scalars allowed) as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    from fluidrec.errors import DataError

    p = Path(path)
    if not p.exists():
        raise DataError("file not found", table=str(p))
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg} at line {exc.lineno})", table=str(p)) from None


def load_torch_file(path: str | os.PathLike) -> Any:
    """Read a file written by ``torch.save`` without running any code it may carry.

    Every checkpoint fluidrec reads goes through here: ``weights_only=True`` lets the
    unpickler build tensors, numbers, strings and containers only, so a planted pickle
    fails to load instead of executing.

    Raises:
        DataError: missing, unreadable, corrupt, or holding anything but plain data.

    Example:
        >>> state = load_torch_file("runs/enc/checkpoint.pt")
    """
    import torch

    from fluidrec.errors import DataError, first_line

    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", table=str(p))
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types: UnpicklingError, RuntimeError, EOFError, ...
        raise DataError(f"unreadable or unsafe torch file ({type(exc).__name__}: {first_line(exc)})", table=str(p)) from None


def to_jsonable(obj: Any) -> Any:
    """Public form of the converter used by write_json (for --json printing)."""
    return _to_jsonable(obj)
