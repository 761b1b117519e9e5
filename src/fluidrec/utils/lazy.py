"""Lazy package exports (PEP 562): a package names its public objects and the submodule
each lives in; the submodule is imported on first use. Keeps `fluidrec --help` and
torch-free commands from paying for importing torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` serving ``exports`` (name -> submodule).

    Example (in a package's ``__init__.py``):
        >>> __getattr__ = lazy_exports(__name__, {"RQKMeans": "rqkmeans"}, globals())
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value  # cache: later lookups skip __getattr__
        return value

    return __getattr__
