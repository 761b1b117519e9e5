"""Reading and writing canonical datasets (Parquet tables + manifest.json).

Every writer writes to a temporary name and renames, so a crash never leaves a
half-written table. ``TableWriter`` streams row groups (e.g. one per day) so large
tables never sit in memory whole.

Example:
    >>> write_table(out, "rooms", {"room_id": ids, "author_id": a, "start_ts": s, "end_ts": e})
    >>> ds = Dataset(out)
    >>> rooms = ds.table("rooms")          # pyarrow.Table
    >>> for batch in ds.iter_batches("impressions", batch_size=65536): ...
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluidrec.data.schema import SCHEMA_VERSION, TABLES, TableSpec
from fluidrec.errors import DataError
from fluidrec.utils.io import read_json, write_json

MANIFEST = "manifest.json"


def open_parquet(path: str | os.PathLike, *, missing: str = "table file not found") -> pq.ParquetFile:
    """Open a Parquet file, raising a DataError naming it when it is missing or unreadable.

    Args:
        missing: the reason given when the file does not exist (e.g. "code file not found").
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(missing, table=str(p))
    try:
        return pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"unreadable Parquet: {exc}", table=str(p)) from None


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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd")
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
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, columns: Mapping[str, Any] | pa.Table) -> None:
        table = to_arrow(self.spec, columns)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> Path:
        if self._writer is None:  # no rows: still write an empty, typed table
            self._writer = pq.ParquetWriter(self._tmp, self.spec.arrow_schema(list(self.spec.required)))
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


def write_manifest(root: str | os.PathLike, *, source: str, seed: int | None, extra: Mapping[str, Any] | None = None) -> dict:
    """Write manifest.json with schema version, source, seed, row counts and creation time."""
    root = Path(root)
    counts = {}
    for name in TABLES:
        p = table_path(root, name)
        if p.exists():
            counts[name] = pq.ParquetFile(p).metadata.num_rows
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "seed": seed,
        "row_counts": counts,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(dict(extra) if extra else {}),
    }
    write_json(root / MANIFEST, manifest)
    return manifest


class Dataset:
    """A canonical dataset directory. Tables load lazily and are cached.

    Args:
        root: the dataset directory (holds manifest.json and <table>.parquet).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("dataset directory not found", table=str(self.root))
        self.manifest: dict = read_json(self.root / MANIFEST) if (self.root / MANIFEST).exists() else {}
        if not self.manifest:
            raise DataError("missing manifest.json (is this a fluidrec dataset?)", table=str(self.root))
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
            self._cache[key] = open_parquet(self.path(name)).read(columns=columns)
        return self._cache[key]

    def numpy(self, name: str, column: str) -> np.ndarray:
        """One column as a numpy array (zero-copy where Arrow allows)."""
        return self.table(name, [column]).column(column).to_numpy()

    def num_rows(self, name: str) -> int:
        return pq.ParquetFile(self.path(name)).metadata.num_rows

    def iter_batches(self, name: str, batch_size: int = 65536, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream a table in row batches (in file order: time order for impressions)."""
        yield from pq.ParquetFile(self.path(name)).iter_batches(batch_size=batch_size, columns=columns)

    @property
    def frame_size(self) -> int | None:
        return self.manifest.get("frame_size")
