"""Reading and writing canonical datasets (Parquet tables + manifest.json).

Every writer writes to a temporary name and renames, so a crash never leaves a
half-written table. ``TableWriter`` streams row groups (e.g. one per day) so large
tables never sit in memory whole. ``DatasetWriter`` does the same for a whole
dataset: everything is written into ``<out>.tmp-<pid>/`` and swapped into place at
the end, so ``out`` holds the old dataset or the new one, never tables of two runs.
``write_manifest`` (called last) records each table's row count, size and SHA-256.

Example:
    >>> with DatasetWriter(out) as tmp:
    ...     write_table(tmp, "rooms", {"room_id": ids, "author_id": a, "start_ts": s, "end_ts": e})
    ...     write_manifest(tmp, source="mine", seed=0)
    >>> ds = Dataset(out)
    >>> rooms = ds.table("rooms")          # pyarrow.Table
    >>> for batch in ds.iter_batches("impressions", batch_size=65536): ...
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluidrec.data.schema import SCHEMA_VERSION, TABLES, TableSpec, check_column_kinds
from fluidrec.errors import DataError, UsageError, first_line
from fluidrec.utils.io import clean_stale_temps, pid_alive, read_json, sha256_file, temp_path, write_json

MANIFEST = "manifest.json"


#: Every Parquet file fluidrec writes carries a CRC32 per data page, and every read verifies
#: it: a flipped byte inside a page then fails to read instead of loading altered values
#: (Parquet has no checksum otherwise; files without page CRCs are read unverified).
PARQUET_WRITE = {"write_page_checksum": True}

#: What pyarrow raises on a damaged file: bad footer, corrupt or truncated data pages,
#: failed decompression, a value that does not decode (OSError covers ArrowIOError).
PARQUET_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)


def open_parquet(path: str | os.PathLike, *, missing: str = "table file not found") -> pq.ParquetFile:
    """Open a Parquet file, raising a DataError naming it when it is missing or unreadable.

    Args:
        missing: the reason given when the file does not exist (e.g. "code file not found").
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(missing, table=str(p))
    try:
        return pq.ParquetFile(p, page_checksum_verification=True)
    except PARQUET_ERRORS as exc:
        raise DataError(f"unreadable Parquet: {first_line(exc)}", table=str(p)) from None


def _check_columns(pf: pq.ParquetFile, columns: list[str] | None, p: Path) -> None:
    if columns is None:
        return
    for c in columns:
        if c not in pf.schema_arrow.names:
            raise DataError("required column is missing", table=str(p), column=c)


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None, *, missing: str = "table file not found") -> pa.Table:
    """Read a whole Parquet file (or ``columns`` of it); every failure is a DataError naming the file.

    The boundary for Parquet inputs: a missing column, a corrupt data page or a failed
    decompression (found only when the pages are read, after ``open_parquet`` succeeded)
    give one line naming the file instead of a pyarrow traceback.
    """
    p = Path(path)
    pf = open_parquet(p, missing=missing)
    _check_columns(pf, columns, p)
    try:
        return pf.read(columns=columns)
    except PARQUET_ERRORS as exc:
        raise DataError(f"corrupt Parquet data ({type(exc).__name__}: {first_line(exc)})", table=str(p)) from None


def iter_parquet(path: str | os.PathLike, batch_size: int = 65536, columns: list[str] | None = None, *, missing: str = "table file not found") -> Iterator[pa.RecordBatch]:
    """Stream a Parquet file in record batches; like ``read_parquet``, failures are DataErrors.

    A corrupt page deep in a large file fails when its batch is decoded; the error then
    names the file and the row at which the bad batch starts.
    """
    p = Path(path)
    pf = open_parquet(p, missing=missing)
    _check_columns(pf, columns, p)
    batches = pf.iter_batches(batch_size=batch_size, columns=columns)
    offset = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except PARQUET_ERRORS as exc:
            raise DataError(f"corrupt Parquet data at or after row {offset} ({type(exc).__name__}: {first_line(exc)})", table=str(p)) from None
        yield batch
        offset += batch.num_rows


def table_path(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / f"{name}.parquet"


def to_arrow(spec: TableSpec, columns: Mapping[str, Any] | pa.Table) -> pa.Table:
    """Build an Arrow table with the spec's declared types from a dict of arrays.

    Unknown columns are rejected so typos do not silently vanish.
    """
    if isinstance(columns, pa.Table):
        columns = {n: columns.column(n) for n in columns.column_names}
    names = list(columns)
    declared = {c.name for c in spec.columns}
    for n in names:
        if n not in declared:
            raise DataError("column is not in the canonical schema", table=spec.name, column=n)
    arrays = []
    for n in names:
        col = spec.column(n)
        values = columns[n]
        try:
            arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, from_pandas=True)
            arrays.append(arr.cast(col.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"cannot convert to {col.type}: {exc}", table=spec.name, column=n) from None
    return pa.Table.from_arrays(arrays, schema=spec.arrow_schema(names))


def write_table(root: str | os.PathLike, name: str, columns: Mapping[str, Any] | pa.Table) -> Path:
    """Write one canonical table atomically; returns its path."""
    table = to_arrow(TABLES[name], columns)
    path = table_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)  # what a killed writer of this table left
    tmp = temp_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd", **PARQUET_WRITE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class TableWriter:
    """Stream row groups into one table file; the file appears only on ``close()``.

    Use as a context manager; on an exception the temporary file is removed.
    """

    def __init__(self, root: str | os.PathLike, name: str) -> None:
        self.spec = TABLES[name]
        self.path = table_path(root, name)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.path)  # what a killed writer of this table left
        self._tmp = temp_path(self.path)
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, columns: Mapping[str, Any] | pa.Table) -> None:
        table = to_arrow(self.spec, columns)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression="zstd", **PARQUET_WRITE)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> Path:
        if self._writer is None:  # no rows: still write an empty, typed table
            self._writer = pq.ParquetWriter(self._tmp, self.spec.arrow_schema(list(self.spec.required)), **PARQUET_WRITE)
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(root: str | os.PathLike, *, source: str, seed: int | None, extra: Mapping[str, Any] | None = None) -> dict:
    """Write manifest.json; call it last, once every table and side file is written.

    Fields: ``schema_version``, ``source``, ``seed``, ``frame_size`` (None unless ``extra``
    gives it), ``row_counts`` (rows per table), ``tables`` (per table: ``rows``, ``bytes``,
    ``sha256`` of the file), ``files`` (``bytes`` and ``sha256`` of every other file under
    ``root``, e.g. ``world/truth.npz``), ``created_at``, then ``extra``.
    ``validate_dataset`` checks the row counts and checksums against the files.
    """
    root = Path(root)
    counts: dict[str, int] = {}
    tables: dict[str, dict[str, Any]] = {}
    for name in TABLES:
        p = table_path(root, name)
        if p.exists():
            counts[name] = pq.ParquetFile(p).metadata.num_rows
            tables[name] = {"rows": counts[name], **_file_entry(p)}
    skip = {table_path(root, name) for name in TABLES} | {root / MANIFEST}
    files = {
        p.relative_to(root).as_posix(): _file_entry(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p not in skip and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "seed": seed,
        "frame_size": None,
        "row_counts": counts,
        "tables": tables,
        "files": files,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(dict(extra) if extra else {}),
    }
    write_json(root / MANIFEST, manifest)
    return manifest


# ---------------------------------------------------------------- whole-dataset swap

_TMP, _OLD = ".tmp-", ".old-"


def _pid_alive(pid: int) -> bool:
    return pid_alive(pid)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the platform or file system has no such call (the caller falls
    back to two renames).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # glibc < 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def clean_leftovers(out: str | os.PathLike) -> list[Path]:
    """Remove what killed ``DatasetWriter``s left beside ``out``; returns the paths removed.

    ``<out>.tmp-<pid>`` directories of dead processes are deleted. An ``<out>.old-<pid>``
    (the old dataset, moved aside by the two-rename fallback) is moved back when ``out`` is
    missing, else deleted. Directories of live processes are left alone.
    """
    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    for p in sorted(out.parent.iterdir()):
        rest = p.name[len(out.name) :]
        if not p.name.startswith(out.name) or not rest.startswith((_TMP, _OLD)):
            continue
        pid = rest[len(_TMP) :]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if rest.startswith(_OLD) and not out.exists():
            os.rename(p, out)
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


class DatasetWriter:
    """Write a whole dataset into a temporary directory, then swap it into place.

    Use as a context manager: it yields ``<out>.tmp-<pid>/``; write every table, side file
    and, last, the manifest there. On a clean exit the directory is exchanged with ``out``
    in one atomic step (Linux ``renameat2``; elsewhere ``out`` is moved aside, the new
    directory moved in, and the old deleted) and the old dataset is removed. On an
    exception the temporary directory is deleted and ``out`` is untouched (a ``DataError``
    naming a file in it is re-raised naming the file under ``out``). A process killed at
    any moment leaves ``out`` holding the old dataset or the new one, whole, plus a
    temporary directory that the next writer for ``out`` removes (``clean_leftovers``).

    Whatever else was in ``out`` is replaced with it: the dataset is the directory.

    Args:
        out: the dataset directory (may exist: an empty directory or an older dataset).

    Example:
        >>> with DatasetWriter("runs/world") as tmp:
        ...     write_table(tmp, "rooms", rooms)
        ...     write_manifest(tmp, source="mine", seed=0)
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.shown = str(out)  # errors name files the way the caller spelled the path
        self.out = Path(os.path.realpath(out) if Path(out).is_symlink() else os.path.abspath(out))
        self.tmp = self.out.with_name(f"{self.out.name}{_TMP}{os.getpid()}")

    def __enter__(self) -> Path:
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"output path {self.shown} exists and is not a directory")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            clean_leftovers(self.out)
            if self.tmp.exists():  # this process's own, from a writer that could not clean up
                shutil.rmtree(self.tmp)
            self.tmp.mkdir()
        except OSError as exc:
            raise UsageError(f"cannot create {self.tmp} (a dataset is built beside its directory, then swapped in): {exc.strerror}") from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._commit()
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        shutil.rmtree(self.tmp, ignore_errors=True)
        if isinstance(exc, DataError) and exc.table and exc.table.startswith(str(self.tmp)):
            table = self.shown.rstrip(os.sep) + exc.table[len(str(self.tmp)) :]
            raise DataError(exc.reason, table=table, column=exc.column, row=exc.row, value=exc.value) from None
        return False

    def _commit(self) -> None:
        if not (self.tmp / MANIFEST).is_file():
            raise DataError("dataset written without a manifest.json (write_manifest comes last)", table=str(self.tmp))
        if not self.out.exists():
            os.rename(self.tmp, self.out)
            return
        if _exchange(self.tmp, self.out):
            return  # self.tmp now holds the old dataset; __exit__ deletes it
        old = self.out.with_name(f"{self.out.name}{_OLD}{os.getpid()}")
        os.rename(self.out, old)  # a kill between these two renames: the next writer moves `old` back
        os.rename(self.tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)


class Dataset:
    """A canonical dataset directory. Tables load lazily and are cached.

    Args:
        root: the dataset directory (holds manifest.json and <table>.parquet).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("dataset directory not found", table=str(self.root))
        mpath = self.root / MANIFEST
        if not mpath.exists():
            raise DataError("missing manifest.json (is this a fluidrec dataset?)", table=str(self.root))
        manifest = read_json(mpath)
        if not isinstance(manifest, dict) or not manifest:
            raise DataError("manifest is not a non-empty JSON object (is this a fluidrec dataset?)", table=str(mpath), value=type(manifest).__name__)
        self.manifest: dict = manifest
        self._cache: dict[str, pa.Table] = {}

    def has(self, name: str) -> bool:
        return table_path(self.root, name).exists()

    def path(self, name: str) -> Path:
        p = table_path(self.root, name)
        if not p.exists():
            raise DataError("table file not found", table=str(p))
        return p

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        key = name if columns is None else f"{name}:{','.join(columns)}"
        if key not in self._cache:
            path = self.path(name)
            table = read_parquet(path, columns)
            _check_kinds(name, table.schema, path)
            _check_no_nulls(name, table, path)
            self._cache[key] = table
        return self._cache[key]

    def numpy(self, name: str, column: str) -> np.ndarray:
        """One column as a numpy array (zero-copy where Arrow allows)."""
        return self.table(name, [column]).column(column).to_numpy()

    def num_rows(self, name: str) -> int:
        return open_parquet(self.path(name)).metadata.num_rows

    def iter_batches(self, name: str, batch_size: int = 65536, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream a table in row batches (in file order: time order for impressions)."""
        path = self.path(name)
        _check_kinds(name, open_parquet(path).schema_arrow, path)
        yield from iter_parquet(path, batch_size, columns)

    @property
    def frame_size(self) -> int | None:
        size = self.manifest.get("frame_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise DataError("frame_size must be a positive integer or null", table=str(self.root / MANIFEST), column="frame_size", value=size)
        return size


def _check_kinds(name: str, schema: pa.Schema, path: Path) -> None:
    """Declared columns present in ``schema`` must have their declared kind (int, float, string, binary).

    Readers call ``.to_numpy().astype(np.int64)`` on id and time columns; a string column
    there would fail with a numpy traceback (or parse silently), so it fails here, naming
    the file and column. Full checks (nulls, ranges, references) are ``validate_dataset``'s.
    """
    if name in TABLES:
        check_column_kinds(TABLES[name], schema, path)


def _check_no_nulls(name: str, table: pa.Table, path: Path) -> None:
    """Non-nullable declared columns hold no null (``to_numpy`` would turn one into NaN, then INT64_MIN)."""
    spec = TABLES.get(name)
    if spec is None:
        return
    for field in table.schema:
        declared = next((c for c in spec.columns if c.name == field.name), None)
        col = table.column(field.name)
        if declared is not None and not declared.nullable and col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError("null value in a non-nullable column", table=str(path), column=field.name, row=row)
