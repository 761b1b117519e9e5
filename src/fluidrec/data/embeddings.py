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

from fluidrec.errors import DataError
from fluidrec.utils.io import atomic_path

ID_COLUMN = "id"
VECTOR_COLUMN = "embedding"


def first_non_finite_row(x: np.ndarray) -> int | None:
    """Index of the first row of an (n, D) array with a NaN or inf, or None."""
    # one cheap pass: a row sum is non-finite if any entry is NaN/inf (or, rarely, on
    # overflow of huge finite values, which the exact check then clears)
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
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    col = pa.FixedSizeListArray.from_arrays(flat, d)
    table = pa.table({id_column: pa.array(ids), VECTOR_COLUMN: col})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_embeddings(path: str | os.PathLike, *, id_column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an embedding file; returns (ids (n,) int64, vectors (n, D) float32).

    Raises DataError naming the file and column on a missing file, a missing or
    mistyped column, an empty table, or non-finite values (with the first bad row).
    """
    from fluidrec.data.io import open_parquet

    p = Path(path)
    table = open_parquet(p, missing="embedding file not found").read()
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
    vec = table.column(VECTOR_COLUMN).combine_chunks()
    if not pa.types.is_fixed_size_list(vec.type) and not pa.types.is_list(vec.type):
        raise DataError(f"expected a list of floats, got {vec.type}", table=str(p), column=VECTOR_COLUMN)
    if pa.types.is_fixed_size_list(vec.type):
        d = vec.type.list_size
    else:
        lengths = vec.value_lengths().to_numpy()
        d = int(lengths[0])
        bad = np.flatnonzero(lengths != d)
        if len(bad):
            raise DataError(f"vectors have different lengths ({d} and {lengths[bad[0]]})", table=str(p), column=VECTOR_COLUMN, row=int(bad[0]))
    values = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    vectors = values.reshape(-1, d)
    row = first_non_finite_row(vectors)
    if row is not None:
        raise non_finite_error(str(p), row)
    ids = table.column(id_column).to_numpy().astype(np.int64, copy=False)
    return ids, vectors
