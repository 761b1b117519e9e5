"""Atomic file writes: write to a temporary name beside the target, then rename.

A crash never leaves a half-written file under the final name. Checkpoints
(``save_torch_file``) also get a ``<file>.sha256`` sidecar that ``load_torch_file``
verifies, so a file corrupted after it was written fails to load instead of
loading altered weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


#: Temporary files are named ``.<name>.tmp-<pid>`` beside their target.
TMP_MARK = ".tmp-"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts; another user's process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def temp_path(final: Path) -> Path:
    """The temporary name this process writes ``final`` under: ``.<name>.tmp-<pid>`` beside it."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")


def clean_stale_temps(final: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` files (or directories) beside ``final`` left by dead processes.

    A process killed between writing and renaming leaves its temporary file behind (a
    kill -9 runs no cleanup); the next write to the same target removes it. Temporaries
    of live processes (a concurrent writer) are left alone. Returns the paths removed.
    """
    final = Path(final)
    prefix = f".{final.name}{TMP_MARK}"
    removed: list[Path] = []
    try:
        candidates = [p for p in final.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:  # parent missing or unreadable: nothing to clean
        return removed
    for p in candidates:
        pid = p.name[len(prefix) :]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            continue  # gone already (another cleaner) or not ours to remove
        removed.append(p)
    return removed


def _write_error(final: Path, exc: OSError):
    """A UsageError naming ``final`` and, when an ancestor is a file, that ancestor."""
    from fluidrec.errors import UsageError

    for parent in final.parents:
        if parent.exists():
            if not parent.is_dir():
                return UsageError(f"cannot write {final}: {parent} is not a directory")
            break
    return UsageError(f"cannot write {final}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Stale temporaries of the same target left by killed processes are removed first. A
    file-system error (parent is a file, not writable, disk full) becomes a one-line
    ``UsageError`` naming ``path``; ``path`` itself is never left half-written.

    Example:
        >>> with atomic_path("out/table.parquet") as tmp:
        ...     pq.write_table(table, tmp)
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(final, exc) from None
    if final.is_dir():
        from fluidrec.errors import UsageError

        raise UsageError(f"cannot write {final}: it is a directory")
    clean_stale_temps(final)
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        if exc.errno is None:  # not a file-system error (e.g. a library's own OSError subclass)
            raise
        raise _write_error(final, exc) from None
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


def strict_jsonable(obj: Any) -> Any:
    """``to_jsonable`` with NaN and +-inf replaced by None, so the result is valid JSON.

    JSON has no NaN: ``json.dumps`` would print a bare ``NaN`` that strict parsers
    (``jq``, browsers, ``json.loads(..., parse_constant=...)``) reject. An undefined
    metric prints as ``null`` instead.
    """
    obj = _to_jsonable(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [strict_jsonable(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` (dataclasses, numpy scalars allowed) as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; every way it can fail is a ``DataError`` naming the file.

    Missing, a directory, unreadable, not UTF-8 (a UTF-8 BOM is allowed), not JSON, or
    nested too deeply for the parser: all one-line errors instead of tracebacks.
    """
    from fluidrec.errors import DataError, first_line

    p = Path(path)
    if not p.exists():
        raise DataError("file not found", table=str(p))
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except IsADirectoryError:
        raise DataError("expected a JSON file, found a directory", table=str(p)) from None
    except OSError as exc:
        raise DataError(f"unreadable ({exc.strerror or exc})", table=str(p)) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 at line {line} (byte offset {exc.start})", table=str(p)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg} at line {exc.lineno})", table=str(p)) from None
    except RecursionError:
        raise DataError("JSON nested too deeply to parse", table=str(p)) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (Python's int conversion limit)
        raise DataError(f"not valid JSON ({first_line(exc, 120)})", table=str(p)) from None


#: Suffix of the checksum file written beside each checkpoint (``model.pt.sha256``).
CHECKSUM_SUFFIX = ".sha256"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte pieces (large files never sit in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def checksum_path(path: str | os.PathLike) -> Path:
    """Where the checksum of ``path`` is kept: ``<path>.sha256`` (``sha256sum`` format)."""
    p = Path(path)
    return p.with_name(p.name + CHECKSUM_SUFFIX)


def save_torch_file(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically, then write its ``<path>.sha256`` sidecar.

    The old sidecar is removed before the new file takes the name, so a crash in between
    leaves a file without a sidecar (loaded unverified, as files from older versions are),
    never a file beside another file's checksum.

    Example:
        >>> save_torch_file({"state_dict": model.state_dict()}, "runs/rk/model.pt")
    """
    import torch

    final = Path(path)
    side = checksum_path(final)
    with atomic_path(final) as tmp:
        torch.save(obj, tmp)
        digest = sha256_file(tmp)
        side.unlink(missing_ok=True)
    with atomic_path(side) as tmp:
        tmp.write_text(f"{digest}  {final.name}\n")
    return final


def verify_checksum(path: str | os.PathLike) -> bool:
    """Check ``path`` against its ``<path>.sha256`` sidecar; False when there is none.

    Raises:
        DataError: the sidecar is malformed or the file's SHA-256 differs from it.
    """
    from fluidrec.errors import DataError

    p = Path(path)
    side = checksum_path(p)
    if not side.is_file():
        return False
    recorded = (side.read_text(errors="replace").split() or [""])[0].lower()
    if len(recorded) != 64 or any(c not in "0123456789abcdef" for c in recorded):
        raise DataError(f"malformed checksum file {side.name} (expected a hex SHA-256)", table=str(p))
    actual = sha256_file(p)
    if actual != recorded:
        raise DataError(
            f"checksum mismatch: SHA-256 {actual[:12]}... differs from {side.name}'s {recorded[:12]}... "
            "(the file was corrupted or changed after it was written)",
            table=str(p),
        )
    return True


def load_torch_file(path: str | os.PathLike) -> Any:
    """Read a file written by ``torch.save`` without running any code it may carry.

    Every checkpoint fluidrec reads goes through here: ``weights_only=True`` lets the
    unpickler build tensors, numbers, strings and containers only, so a planted pickle
    fails to load instead of executing. When a ``<path>.sha256`` sidecar exists
    (``save_torch_file`` writes one) the file is verified against it first; files
    without one (older versions, other tools) load unverified.

    Raises:
        DataError: missing, unreadable, corrupt (checksum mismatch), or holding anything but plain data.

    Example:
        >>> state = load_torch_file("runs/enc/checkpoint.pt")
    """
    import torch

    from fluidrec.errors import DataError, first_line

    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", table=str(p))
    verify_checksum(p)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types: UnpicklingError, RuntimeError, EOFError, ...
        raise DataError(f"unreadable or unsafe torch file ({type(exc).__name__}: {first_line(exc)})", table=str(p)) from None


def to_jsonable(obj: Any) -> Any:
    """Public form of the converter used by write_json (``strict_jsonable`` for --json printing)."""
    return _to_jsonable(obj)
