"""Matplotlib helpers shared by every figure the project writes: a headless pyplot and
an atomic save that always closes the figure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fluidrec.utils.io import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 110, tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix, default png), then close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        pyplot().close(fig)
    return Path(path)
