"""Helpers shared by the per-stage CLI modules (each stage owns ``<stage>/cli.py``).

A stage CLI module exposes ``register(subparsers)``, adding its subcommands. Each
subcommand sets ``func`` to a function taking the parsed args and returning an
exit code. Handlers stay thin: parse -> call one library function -> print.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluidrec.errors import UsageError
from fluidrec.utils.io import to_jsonable


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as one JSON object instead of a table")


def emit(result: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """Print ``result`` as JSON (``--json``) or through ``render`` as readable text."""
    if as_json:
        print(json.dumps(to_jsonable(result), indent=2, sort_keys=True))
    else:
        print(render(result))


def render_kv(d: dict, title: str | None = None) -> str:
    """A two-column, aligned key/value table for flat dicts (floats to 4 digits)."""
    lines = [title, "-" * len(title)] if title else []
    width = max((len(str(k)) for k in d), default=0)
    for k, v in d.items():
        shown = f"{v:.4f}" if isinstance(v, float) else str(v)
        lines.append(f"{str(k):<{width}}  {shown}")
    return "\n".join(lines)


def prepare_out_dir(path: str | Path, force: bool) -> Path:
    """Make sure ``path`` is a writable, empty directory (or ``force`` allows reuse)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"output directory {out} is not empty (use --force to overwrite)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"output directory {out} is not writable ({exc.strerror})") from None
    return out


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def fail(message: str) -> int:
    print(f"fluidrec: error: {message}", file=sys.stderr)
    return 2
