"""Embedding files: Parquet with an id column and a fixed-size float32 list column.

This is what ``fluidrec encoder embed`` writes and ``fluidrec codes`` reads.

Example:
    >>> write_embeddings("emb.parquet", ids, z)       # ids (n,), z (n, D) float32
    >>> ids, z = read_embeddings("emb.parquet")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluidrec.data.io import PARQUET_WRITE
from fluidrec.errors import DataError
from fluidrec.utils.io import atomic_path

ID_COLUMN = "id"
VECTOR_COLUMN = "embedding"


def first_non_finite_row(x: np.ndarray) -> int | None:
    """Index of the first row of an (n, D) array with a NaN or inf, or None."""
    # one cheap pass: a row sum is non-finite if any entry is NaN/inf (or, rarely, on
    # overflow of huge finite values, which the exact check then clears)
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is expected and cleared below: no RuntimeWarning
        suspect = np.flatnonzero(~np.isfinite(x.sum(axis=1)))
    if len(suspect):
        bad = suspect[~np.isfinite(x[suspect]).all(axis=1)]
        if len(bad):
            return int(bad[0])
    return None


def non_finite_error(source: str, row: int) -> DataError:
    """The error for a NaN/inf in row ``row`` of the embeddings read from ``source``."""
    return DataError("non-finite value (NaN or inf) in embedding", table=source, column=VECTOR_COLUMN, row=row)


def write_embeddings(path: str | os.PathLike, ids: np.ndarray, vectors: np.ndarray, *, id_column: str = ID_COLUMN) -> None:
    """Write (n,) int64 ids and (n, D) float32 vectors atomically."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise DataError(f"expected ids (n,) and vectors (n, D); got {ids.shape} and {vectors.shape}", table=str(path))
    d = vectors.shape[1]
    flat = pa.array(vectors.reshape(-1), type=pa.float32())  # (N, D) -> (N*D,)
    col = pa.FixedSizeListArray.from_arrays(flat, d)
    table = pa.table({id_column: pa.array(ids), VECTOR_COLUMN: col})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_WRITE)


#: Largest magnitude allowed in an embedding. Larger finite float32 values (up to 3.4e38)
#: overflow to inf in the squared distances of k-means and encoding; real embeddings are
#: many orders of magnitude smaller.
MAX_ABS_VALUE = 1e15


def read_embeddings(path: str | os.PathLike, *, id_column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an embedding file; returns (ids (n,) int64, vectors (n, D) float32).

    The boundary for embedding files: every way the file can be wrong is a DataError
    naming the file, the column and (where there is one) the first bad row and its value:
    missing or unreadable file, corrupt pages, a missing column, an empty table; ids that
    are not integers, null, negative or duplicated; vectors that are not lists of numbers,
    null, of length 0 or of different lengths, with a null, NaN, inf or a value beyond
    +-1e15 (``MAX_ABS_VALUE``).
    """
    from fluidrec.data.io import read_parquet

    p = Path(path)
    table = read_parquet(p, missing="embedding file not found")
    if VECTOR_COLUMN not in table.column_names:
        raise DataError("missing column", table=str(p), column=VECTOR_COLUMN)
    if id_column is None:
        others = [c for c in table.column_names if c != VECTOR_COLUMN]
        if not others:
            raise DataError("no id column", table=str(p))
        id_column = others[0]
    if id_column not in table.column_names:
        raise DataError("missing column", table=str(p), column=id_column)
    if table.num_rows == 0:
        raise DataError("embedding file is empty", table=str(p))
    vectors = _read_vectors(table.column(VECTOR_COLUMN).combine_chunks(), str(p))
    ids = _read_ids(table.column(id_column).combine_chunks(), str(p), id_column)
    return ids, vectors


def _read_ids(col: pa.Array, source: str, column: str) -> np.ndarray:
    """(n,) int64 ids: integers >= 0, no nulls, no duplicates."""
    if not pa.types.is_integer(col.type):
        raise DataError(f"ids must be integers, got {col.type}", table=source, column=column, row=0, value=col[0].as_py())
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("null id", table=source, column=column, row=row)
    if pa.types.is_unsigned_integer(col.type):
        too_big = np.asarray(col.to_numpy(zero_copy_only=False)) > np.iinfo(np.int64).max
        if too_big.any():
            row = int(np.flatnonzero(too_big)[0])
            raise DataError("id does not fit int64", table=source, column=column, row=row, value=col[row].as_py())
    ids = col.to_numpy(zero_copy_only=False).astype(np.int64)
    if (ids < 0).any():
        row = int(np.flatnonzero(ids < 0)[0])
        raise DataError("negative id (ids are slice ids, >= 0)", table=source, column=column, row=row, value=int(ids[row]))
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(dup):
        row = int(order[dup[0] + 1])
        raise DataError("duplicate id", table=source, column=column, row=row, value=int(ids[row]))
    return ids


def _read_vectors(vec: pa.Array, source: str) -> np.ndarray:
    """(n, D) float32 from a list column of numbers; see ``read_embeddings`` for what is refused."""
    is_list = pa.types.is_fixed_size_list(vec.type) or pa.types.is_list(vec.type) or pa.types.is_large_list(vec.type)
    if not is_list or not (pa.types.is_floating(vec.type.value_type) or pa.types.is_integer(vec.type.value_type)):
        raise DataError(f"expected a list of floats, got {vec.type}", table=source, column=VECTOR_COLUMN)
    if vec.null_count:
        row = int(np.flatnonzero(vec.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("null vector", table=source, column=VECTOR_COLUMN, row=row)
    if pa.types.is_fixed_size_list(vec.type):
        d = vec.type.list_size
    else:
        lengths = vec.value_lengths().to_numpy(zero_copy_only=False)
        d = int(lengths[0])
        bad = np.flatnonzero(lengths != d)
        if len(bad):
            raise DataError(f"vectors have different lengths ({d} and {lengths[bad[0]]})", table=source, column=VECTOR_COLUMN, row=int(bad[0]))
    if d == 0:
        raise DataError("vectors have length 0", table=source, column=VECTOR_COLUMN, row=0)
    flat = vec.flatten()  # the values of the (non-null) rows, in row order
    if flat.null_count:
        at = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"null value inside a vector (position {at % d})", table=source, column=VECTOR_COLUMN, row=at // d)
    values = flat.to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: reported just below
        vectors = values.astype(np.float32, copy=False).reshape(-1, d)  # (N*D,) -> (N, D)
    row = first_non_finite_row(vectors)
    if row is not None:
        raise non_finite_error(source, row)
    if vectors.max() > MAX_ABS_VALUE or vectors.min() < -MAX_ABS_VALUE:  # two reductions, no (n, D) temporary
        big = np.abs(vectors) > MAX_ABS_VALUE
        row, col = (int(v[0]) for v in np.nonzero(big))
        raise DataError(f"value beyond +-{MAX_ABS_VALUE:g} (distances would overflow float32)", table=source, column=VECTOR_COLUMN, row=row, value=float(vectors[row, col]))
    return vectors
