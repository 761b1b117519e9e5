"""Helpers shared by the per-stage CLI modules (each stage owns ``<stage>/cli.py``).

A stage CLI module exposes ``register(subparsers)``, adding its subcommands. Each
subcommand sets ``func`` to a function taking the parsed args and returning an
exit code. Handlers stay thin: parse -> call one library function -> print.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fluidrec.errors import UsageError
from fluidrec.utils.io import strict_jsonable

#: Largest integer a CLI flag takes: every count, id and time is stored as int64.
INT64_MAX = 2**63 - 1
#: Seeds are below 2^31: faiss and some numpy / torch entry points take a 32-bit seed.
SEED_MAX = 2**31 - 1


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as one JSON object instead of a table")


def emit(result: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """Print ``result`` as JSON (``--json``) or through ``render`` as readable text."""
    if as_json:
        # NaN / inf become null: allow_nan=False makes any value that slipped through an error here, not invalid JSON
        print(json.dumps(strict_jsonable(result), indent=2, sort_keys=True, allow_nan=False))
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
    try:
        if out.exists() and any(out.iterdir()) and not force:
            raise UsageError(f"output directory {out} is not empty (use --force to overwrite)")
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"output directory {out} is not writable ({exc.strerror or exc})") from None
    return out


@contextlib.contextmanager
def output_dir(path: str | Path, force: bool) -> Iterator[Path]:
    """``prepare_out_dir``, undone on failure: directories it created are removed again if still empty.

    A command that fails on bad input then leaves nothing behind (not even an empty
    output directory); one that had an existing directory leaves it as it was.

    Example:
        >>> with output_dir(args.out, args.force) as out:
        ...     import_csv(fmt, out, options)
    """
    created = []
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        created.append(probe)  # deepest first
        probe = probe.parent
    out = prepare_out_dir(path, force)
    try:
        yield out
    except BaseException:
        for d in created:
            try:
                d.rmdir()  # only if empty: never deletes what the command (or anyone) wrote
            except OSError:
                break
        raise


def bounded_int(low: int, high: int, what: str = "an integer") -> Callable[[str], int]:
    """An argparse ``type`` accepting integers in ``[low, high]`` (one-line error otherwise).

    Example:
        >>> p.add_argument("--negatives", type=bounded_int(0, 1000))
    """

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text.strip()[:40]}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text.strip()[:40]}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def non_negative_int(text: str) -> int:
    """An integer in [0, 2^63 - 1]: larger values cannot be stored (int64) and would overflow later."""
    return bounded_int(0, INT64_MAX)(text)


def positive_int(text: str) -> int:
    """An integer in [1, 2^63 - 1]."""
    return bounded_int(1, INT64_MAX)(text)


def seed_int(text: str) -> int:
    """A random seed in [0, 2^31 - 1] (the range every seeded library here accepts)."""
    return bounded_int(0, SEED_MAX)(text)


def finite_float(text: str) -> float:
    """A finite float (``nan`` and ``inf`` are refused at the flag, not deep inside a run)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def fail(message: str) -> int:
    print(f"fluidrec: error: {message}", file=sys.stderr)
    return 2
