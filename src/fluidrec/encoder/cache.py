"""On-disk cache of tokenized item and query text, keyed by (dataset, tokenizer, fields, budgets).

Tokenizing every slice's six fields is the slowest part of loading a dataset for the encoder
(~335k strings on the ``small`` world). Training, evaluation, embedding and every ablation run
need exactly the same ids, so they are computed once and stored as flat ``int32`` arrays plus
offsets in an ``.npz``:

    <cache_dir>/items-<key>.npz     item_flat (sum of lengths,) int32, item_offsets (N+1,) int64, ids (N,) int64
    <cache_dir>/queries-<key>.npz   the same for queries

``key`` hashes the dataset's identity (size and mtime of its Parquet files, the manifest text),
the tokenizer's content, the field list and both token budgets, and a format version; any change
gives a new key, so a stale file is never read. A file that fails to load, or whose ids do not
match the dataset's rows, is ignored and rewritten. Writes are atomic, so concurrent runs can
share a cache directory. The default directory is ``<dataset_dir>/.cache``; when it cannot be
written, tokenization simply is not cached.

Example:
    >>> cache = TokenCache.for_dataset(ds, text)          # or TokenCache(dir, ds, text)
    >>> tokens = cache.load("items", slice_ids)            # None on a miss
    >>> cache.save("items", slice_ids, tokens)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from fluidrec.data.io import Dataset
from fluidrec.encoder.text import TextModule
from fluidrec.utils.io import atomic_path

CACHE_VERSION = 1
DEFAULT_SUBDIR = ".cache"
_TABLES = ("slices", "queries", "authors")  # everything the encoder's text is read from


def pack_ragged(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged int arrays -> (flat (sum L,) int32, offsets (N+1,) int64)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(seqs).astype(np.int32, copy=False) if len(seqs) else np.zeros(0, np.int32)
    return flat, offsets


def unpack_ragged(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Inverse of ``pack_ragged``: views into ``flat``, one per row."""
    return np.split(flat, offsets[1:-1]) if len(offsets) > 1 else []


def dataset_identity(ds: Dataset) -> list:
    """Cheap identity of the tables the encoder reads: (name, size, mtime_ns) + the manifest text.

    A copied or rewritten table gets a new mtime and so a new key (a harmless cache miss).
    """
    ident: list = []
    for name in _TABLES:
        if ds.has(name):
            st = ds.path(name).stat()
            ident.append([name, st.st_size, st.st_mtime_ns])
    manifest = ds.root / "manifest.json"
    ident.append(hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None)
    return ident


class TokenCache:
    """Token ids of one (dataset, TextModule) pair in ``cache_dir``.

    Args:
        cache_dir: directory holding the ``.npz`` files (created on first save).
        ds: the dataset.
        text: the model's TextModule (tokenizer, fields, budgets).
    """

    def __init__(self, cache_dir: str | os.PathLike, ds: Dataset, text: TextModule) -> None:
        self.dir = Path(cache_dir)
        payload = json.dumps([CACHE_VERSION, dataset_identity(ds), text.fingerprint()])
        self.key = hashlib.sha256(payload.encode()).hexdigest()[:24]

    @classmethod
    def for_dataset(cls, ds: Dataset, text: TextModule, cache_dir: str | os.PathLike | None = None) -> TokenCache:
        """The cache in ``cache_dir`` (default ``<dataset_dir>/.cache``)."""
        return cls(ds.root / DEFAULT_SUBDIR if cache_dir is None else cache_dir, ds, text)

    def path(self, kind: str) -> Path:
        """File of ``kind`` (``"items"`` or ``"queries"``)."""
        return self.dir / f"{kind}-{self.key}.npz"

    def load(self, kind: str, ids: np.ndarray) -> list[np.ndarray] | None:
        """Cached token lists for rows ``ids`` (in that order), or None on a miss."""
        p = self.path(kind)
        if not p.exists():
            return None
        try:
            with np.load(p) as z:
                stored_ids, flat, offsets = z["ids"], z["flat"], z["offsets"]
        except (OSError, ValueError, KeyError):
            return None  # unreadable: recompute (and overwrite)
        if len(stored_ids) != len(ids) or not np.array_equal(stored_ids, ids) or len(offsets) != len(ids) + 1:
            return None
        return unpack_ragged(flat, offsets)

    def save(self, kind: str, ids: np.ndarray, tokens: list[np.ndarray]) -> Path | None:
        """Store token lists for rows ``ids``; returns the file, or None when it cannot be written."""
        flat, offsets = pack_ragged(tokens)
        try:
            with atomic_path(self.path(kind)) as tmp:
                with open(tmp, "wb") as fh:  # a handle: np.savez would append ".npz" to a path
                    np.savez(fh, ids=np.asarray(ids, dtype=np.int64), flat=flat, offsets=offsets)
        except OSError:
            return None  # read-only dataset directory: run uncached
        return self.path(kind)
