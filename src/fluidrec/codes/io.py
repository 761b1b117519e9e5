"""Code files (Parquet), see docs/CONTRACTS.md.

- Slice codes: ``slice_id`` int64, ``c1..cL`` int32 (one row per embedded item).
- Room codes: one row per impression in impression order: ``row`` int64 (impression
  index), ``room_id`` int64, ``r1..rL`` int32 (``UNKNOWN_CODE`` = -1 where unknown).
- Both may record the codebook size K in their Parquet metadata
  (``fluidrec.codebook_size``; ``codes assign`` and ``codes rooms`` write it). Readers
  check every code against it: slice codes in [0, K), room codes in [-1, K). Files
  without it are checked against the ``<stem>.config.json`` beside them (its
  ``config.codebook_size`` or ``num_codes``) and, failing that, against
  ``MAX_CODEBOOK_SIZE``, so a stray code never silently grows a ranker's tables.

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

from fluidrec.data.io import PARQUET_WRITE
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


#: Codes at or above this are refused when a file does not say its codebook size
#: (the flat codebook, the largest fluidrec fits, has N up to 20,000).
MAX_CODEBOOK_SIZE = 1 << 20
#: Parquet metadata key holding the codebook size K.
CODEBOOK_KEY = b"fluidrec.codebook_size"
UNKNOWN = -1  # fluidrec.codes.rooms.UNKNOWN_CODE (not imported: rooms imports this module's users)


def _read(path: str | os.PathLike) -> tuple[Path, pa.Table]:
    from fluidrec.data.io import read_parquet

    p = Path(path)
    return p, read_parquet(p, missing="code file not found")


def codebook_size_of(path: str | os.PathLike, table: pa.Table | None = None) -> int | None:
    """The codebook size K a code file declares (Parquet metadata, else its config sidecar), or None."""
    p = Path(path)
    if table is None:
        from fluidrec.data.io import open_parquet

        schema = open_parquet(p, missing="code file not found").schema_arrow
    else:
        schema = table.schema
    meta = schema.metadata or {}
    if CODEBOOK_KEY in meta:
        try:
            k = int(meta[CODEBOOK_KEY])
        except ValueError:
            raise DataError("malformed codebook size in the file's metadata", table=str(p), value=meta[CODEBOOK_KEY][:40]) from None
        if k < 1:
            raise DataError("codebook size in the file's metadata must be >= 1", table=str(p), value=k)
        return k
    side = p.with_name(f"{p.stem}.config.json")
    if side.is_file():
        from fluidrec.utils.io import read_json

        cfg = read_json(side)
        if isinstance(cfg, dict):
            k = cfg.get("num_codes")  # `codes oracle` sidecars
            if k is None and isinstance(cfg.get("config"), dict):
                k = cfg["config"].get("codebook_size")  # `codes assign` sidecars: the model's settings
            if isinstance(k, int) and not isinstance(k, bool) and k >= 1:
                return k
    return None


def _ids(table: pa.Table, name: str, p: Path) -> np.ndarray:
    """An id column as int64: integer typed, no nulls (a null would become INT64_MIN)."""
    col = table.column(name)
    if not pa.types.is_integer(col.type):
        raise DataError(f"expected integer ids, got {col.type}", table=str(p), column=name)
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("null id", table=str(p), column=name, row=row)
    values = col.to_numpy()
    if values.dtype == np.uint64 and (values > np.iinfo(np.int64).max).any():
        row = int(np.flatnonzero(values > np.iinfo(np.int64).max)[0])
        raise DataError("id does not fit int64", table=str(p), column=name, row=row, value=int(values[row]))
    return values.astype(np.int64)


def _codes_matrix(table: pa.Table, cols: list[str], p: Path, low: int) -> np.ndarray:
    """(n, L) int32 codes, each in [low, K) where K is the file's codebook size (or the cap)."""
    k = codebook_size_of(p, table)
    high = k if k is not None else MAX_CODEBOOK_SIZE
    where = f"the codebook size {k} the file declares" if k is not None else f"MAX_CODEBOOK_SIZE {MAX_CODEBOOK_SIZE} (the file declares no codebook size)"
    out = np.empty((table.num_rows, len(cols)), dtype=np.int32)
    for j, name in enumerate(cols):
        col = table.column(name)
        if not pa.types.is_integer(col.type):
            raise DataError(f"expected integer codes, got {col.type}", table=str(p), column=name)
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError("null code", table=str(p), column=name, row=row)
        values = col.to_numpy()
        bad = (values < low) | (values >= high)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            reason = f"code below {low}" if values[row] < low else f"code outside the codebook: >= {where}"
            raise DataError(reason, table=str(p), column=name, row=row, value=int(values[row]))
        out[:, j] = values
    return out


def _write(path: str | os.PathLike, cols: dict[str, pa.Array], codebook_size: int | None) -> Path:
    table = pa.table(cols)
    if codebook_size is not None:
        table = table.replace_schema_metadata({CODEBOOK_KEY: str(int(codebook_size)).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_WRITE)
    return Path(path)


def write_codes(path: str | os.PathLike, ids: np.ndarray, codes: np.ndarray, *, id_column: str = SLICE_ID, codebook_size: int | None = None) -> Path:
    """Write (n,) ids and (n, L) codes as ``slice_id, c1..cL``, atomically.

    ``codebook_size`` (K) is recorded in the file's metadata; readers then refuse codes outside [0, K).
    """
    ids = np.asarray(ids, dtype=np.int64)
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(ids):
        raise DataError(f"expected ids (n,) and codes (n, L), got {ids.shape} and {codes.shape}", table=str(path))
    cols = {id_column: pa.array(ids)}
    cols.update({f"c{j + 1}": pa.array(codes[:, j].astype(np.int32)) for j in range(codes.shape[1])})
    return _write(path, cols, codebook_size)


def read_codes(path: str | os.PathLike, *, id_column: str = SLICE_ID) -> tuple[np.ndarray, np.ndarray]:
    """Read a slice codes file; returns (ids (n,) int64, codes (n, L) int32).

    Raises:
        DataError: naming file, column, row and value: missing or corrupt file, missing
            or mistyped columns, a null id or code, a code outside [0, K).
    """
    p, table = _read(path)
    if id_column not in table.column_names:
        raise DataError("missing column", table=str(p), column=id_column)
    cols = _code_columns(table.column_names, "c", p)
    ids = _ids(table, id_column, p)
    return ids, _codes_matrix(table, cols, p, low=0)


def write_room_codes(path: str | os.PathLike, room_ids: np.ndarray, codes: np.ndarray, *, codebook_size: int | None = None) -> Path:
    """Write per-impression room codes (``row, room_id, r1..rL``, row = impression index), atomically."""
    room_ids = np.asarray(room_ids, dtype=np.int64)
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(room_ids):
        raise DataError(f"expected room ids (n,) and codes (n, L), got {room_ids.shape} and {codes.shape}", table=str(path))
    cols = {"row": pa.array(np.arange(len(room_ids), dtype=np.int64)), "room_id": pa.array(room_ids)}
    cols.update({f"r{j + 1}": pa.array(codes[:, j].astype(np.int32)) for j in range(codes.shape[1])})
    return _write(path, cols, codebook_size)


def read_room_codes(path: str | os.PathLike) -> np.ndarray:
    """Read a room codes file; returns codes (n_impressions, L) int32 in impression order.

    Codes are in [-1, K) (-1 = ``UNKNOWN_CODE``); see ``read_codes`` for what is refused.
    """
    p, table = _read(path)
    if "row" not in table.column_names:
        raise DataError("missing column", table=str(p), column="row")
    rows = _ids(table, "row", p)
    if not np.array_equal(rows, np.arange(len(rows))):
        bad = int(np.flatnonzero(rows != np.arange(len(rows)))[0])
        raise DataError("rows must be 0..n-1 in impression order", table=str(p), column="row", row=bad, value=int(rows[bad]))
    return _codes_matrix(table, _code_columns(table.column_names, "r", p), p, low=UNKNOWN)
