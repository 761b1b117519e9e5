"""Code files (Parquet), see docs/CONTRACTS.md.

- Slice codes: ``slice_id`` int64, ``c1..cL`` int32 (one row per embedded item).
- Room codes: one row per impression in impression order: ``row`` int64 (impression
  index), ``room_id`` int64, ``r1..rL`` int32 (``UNKNOWN_CODE`` = -1 where unknown).

Example:
    >>> write_codes("codes.parquet", ids, codes)
    >>> ids, codes = read_codes("codes.parquet")          # (n,), (n, L)
    >>> room = read_room_codes("room_codes.parquet")      # (n_impressions, L)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluidrec.errors import DataError
from fluidrec.utils.io import atomic_path

SLICE_ID = "slice_id"


def _code_columns(names: list[str], prefix: str, path: Path) -> list[str]:
    cols = sorted((n for n in names if re.fullmatch(rf"{prefix}\d+", n)), key=lambda n: int(n[len(prefix):]))
    if not cols:
        raise DataError(f"no code columns ({prefix}1..{prefix}L)", table=str(path))
    expected = [f"{prefix}{i + 1}" for i in range(len(cols))]
    if cols != expected:
        raise DataError(f"code columns must be {prefix}1..{prefix}{len(cols)} without gaps, got {cols}", table=str(path))
    return cols


def _read(path: str | os.PathLike) -> tuple[Path, pa.Table]:
    from fluidrec.data.io import open_parquet

    p = Path(path)
    return p, open_parquet(p, missing="code file not found").read()


def _codes_matrix(table: pa.Table, cols: list[str], p: Path) -> np.ndarray:
    out = np.empty((table.num_rows, len(cols)), dtype=np.int32)
    for j, name in enumerate(cols):
        col = table.column(name)
        if col.null_count:
            raise DataError("null code", table=str(p), column=name)
        if not pa.types.is_integer(col.type):
            raise DataError(f"expected integer codes, got {col.type}", table=str(p), column=name)
        out[:, j] = col.to_numpy()
    return out


def write_codes(path: str | os.PathLike, ids: np.ndarray, codes: np.ndarray, *, id_column: str = SLICE_ID) -> Path:
    """Write (n,) ids and (n, L) codes as ``slice_id, c1..cL``, atomically."""
    ids = np.asarray(ids, dtype=np.int64)
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(ids):
        raise DataError(f"expected ids (n,) and codes (n, L), got {ids.shape} and {codes.shape}", table=str(path))
    cols = {id_column: pa.array(ids)}
    cols.update({f"c{j + 1}": pa.array(codes[:, j].astype(np.int32)) for j in range(codes.shape[1])})
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp)
    return Path(path)


def read_codes(path: str | os.PathLike, *, id_column: str = SLICE_ID) -> tuple[np.ndarray, np.ndarray]:
    """Read a slice codes file; returns (ids (n,) int64, codes (n, L) int32)."""
    p, table = _read(path)
    if id_column not in table.column_names:
        raise DataError("missing column", table=str(p), column=id_column)
    cols = _code_columns(table.column_names, "c", p)
    ids = table.column(id_column).to_numpy().astype(np.int64)
    return ids, _codes_matrix(table, cols, p)


def write_room_codes(path: str | os.PathLike, room_ids: np.ndarray, codes: np.ndarray) -> Path:
    """Write per-impression room codes (``row, room_id, r1..rL``, row = impression index), atomically."""
    room_ids = np.asarray(room_ids, dtype=np.int64)
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(room_ids):
        raise DataError(f"expected room ids (n,) and codes (n, L), got {room_ids.shape} and {codes.shape}", table=str(path))
    cols = {"row": pa.array(np.arange(len(room_ids), dtype=np.int64)), "room_id": pa.array(room_ids)}
    cols.update({f"r{j + 1}": pa.array(codes[:, j].astype(np.int32)) for j in range(codes.shape[1])})
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp)
    return Path(path)


def read_room_codes(path: str | os.PathLike) -> np.ndarray:
    """Read a room codes file; returns codes (n_impressions, L) int32 in impression order."""
    p, table = _read(path)
    if "row" not in table.column_names:
        raise DataError("missing column", table=str(p), column="row")
    rows = table.column("row").to_numpy()
    if not np.array_equal(rows, np.arange(len(rows))):
        bad = int(np.flatnonzero(rows != np.arange(len(rows)))[0])
        raise DataError("rows must be 0..n-1 in impression order", table=str(p), column="row", row=bad, value=int(rows[bad]))
    return _codes_matrix(table, _code_columns(table.column_names, "r", p), p)
