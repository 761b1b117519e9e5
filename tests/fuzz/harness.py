"""Shared machinery of the table-driven bad-input cases.

A ``Case`` builds its bad input under a fresh directory and returns the CLI arguments
that read it; ``check_clean_failure`` runs them in-process (``fluidrec.cli.main``) and
asserts what the CLI promises for bad input:

- exit code 2 (argparse errors included, through ``SystemExit``);
- stderr is exactly one line, ``fluidrec...: error: ...``, with no traceback;
- the line names the offending file (or flag), and any extra text the case expects
  (a line number, a column, a value);
- nothing under the case directory is new or changed: no partial output, no empty
  output directory, no temporary file, inputs untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

from fluidrec.cli import main


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input.

    Args:
        id: the pytest id.
        build: writes the input under the given directory, returns the CLI argv.
        names: what the error line must name (a file name, a flag); any one suffices.
        expect: further substrings the error line must contain (all of them).
    """

    id: str
    build: Callable[[Path], list[str]]
    names: tuple[str, ...]
    expect: tuple[str, ...] = ()


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash (or "dir") of everything under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()  # drop what setup printed
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit through SystemExit
        code = exc.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def check_clean_failure(case: Case, root: Path, capsys) -> str:
    """Build ``case`` under ``root``, run it, assert a clean exit-2 failure; returns the error line."""
    argv = case.build(root)
    before = snapshot(root)
    code, out, err = run_main(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}, stderr: {err[-2000:]!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    line = lines[0]
    assert ": error: " in line, line
    assert any(n in line for n in case.names), f"error does not name any of {case.names}: {line}"
    for text in case.expect:
        assert text in line, f"error lacks {text!r}: {line}"
    assert out == "", f"stdout on failure: {out!r}"
    assert snapshot(root) == before, "a failed command left new or changed files"
    return line


def write(path: Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path``, creating parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def flip_bytes(src: Path, dst: Path, at: float, n: int = 16) -> Path:
    """Copy ``src`` to ``dst`` with ``n`` bytes inverted at relative position ``at``."""
    data = bytearray(src.read_bytes())
    start = int(len(data) * at)
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    return write(dst, bytes(data))
