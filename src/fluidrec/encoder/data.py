"""Encoder inputs from a canonical dataset: tokenized items and queries, frames, splits, batches.

Shape letters: N slices, Q queries, B batch, S frame side.

Everything is tokenized once up front (``load_encoder_data``) and the ids are cached on disk
(``cache.TokenCache``), so later runs on the same dataset and tokenizer skip tokenization;
batches are then just index arrays. The cross-domain sampler draws ``round(B * video_ratio)`` pairs from short videos and
the rest from live slices; the batch of step ``s`` depends only on ``(seed, s)``, so a resumed
run sees exactly the batches an uninterrupted one would.

Example:
    >>> data = load_encoder_data(dataset_dir, model.text, model.frame_size)
    >>> held = heldout_slices(data, eval_fraction=0.1, seed=0)
    >>> sampler = PairSampler(train_queries(data, held), data.query_is_video, 32, 0.5, seed=0)
    >>> qidx = sampler.batch(step=0)
    >>> items = item_batch(data, data.query_item[qidx], model.text.pad_id)
    >>> queries = query_batch(data, qidx, model.text.pad_id)
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import torch

from fluidrec.data.io import Dataset
from fluidrec.encoder.cache import TokenCache
from fluidrec.encoder.batches import ItemBatch, TextBatch, pack_text
from fluidrec.encoder.text import TextModule
from fluidrec.errors import DataError
from fluidrec.utils.lookup import sorted_lookup


@dataclasses.dataclass
class EncoderData:
    """Tokenized slices and queries of one dataset."""

    slice_ids: np.ndarray  # (N,) int64
    is_video: np.ndarray  # (N,) bool
    item_tokens: list[np.ndarray]  # N arrays of int32 ids
    frames: np.ndarray | None  # (N, S, S, 3) uint8, None when the dataset has no frames
    has_frame: np.ndarray  # (N,) bool
    topics: dict[str, np.ndarray]  # topic_l1/topic_l2 -> (N,) int, only the columns present
    query_ids: np.ndarray  # (Q,) int64
    query_tokens: list[np.ndarray]  # Q arrays of int32 ids
    query_item: np.ndarray  # (Q,) index into the slices

    @property
    def query_is_video(self) -> np.ndarray:
        return self.is_video[self.query_item]

    @property
    def item_lengths(self) -> np.ndarray:
        return np.fromiter((len(t) for t in self.item_tokens), dtype=np.int64, count=len(self.item_tokens))


def dataset_frame_size(ds: Dataset) -> int | None:
    """Frame side S of a dataset, or None when its slices carry no frames."""
    import pyarrow.parquet as pq

    names = pq.ParquetFile(ds.path("slices")).schema_arrow.names
    if "frame" not in names:
        return None
    col = ds.table("slices", ["frame"]).column("frame")
    if col.null_count == len(col):
        return None
    size = ds.frame_size
    if not isinstance(size, int) or size <= 0:
        raise DataError("slices have frames but manifest.json has no positive integer frame_size", table=str(ds.root / "manifest.json"), column="frame_size", value=size)
    return size


def decode_frames(col: pa.ChunkedArray | pa.Array, frame_size: int, table: str = "slices") -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 frame bytes -> (frames (N, S, S, 3) uint8, has_frame (N,) bool).

    A non-null frame whose byte length is not S*S*3 is a DataError naming the row.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n, nbytes = len(arr), frame_size * frame_size * 3
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32 if arr.type == pa.binary() else np.int64)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    bad = np.flatnonzero(valid & (lengths != nbytes))
    if len(bad):
        r = int(bad[0])
        raise DataError(
            f"frame has {int(lengths[r])} bytes, expected {nbytes} ({frame_size}x{frame_size}x3 uint8; frame_size from manifest)",
            table=table, column="frame", row=r,
        )
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    if valid.all() and offsets[-1] - offsets[0] == n * nbytes:
        frames = data[offsets[0] : offsets[-1]].reshape(n, frame_size, frame_size, 3).copy()  # contiguous: one copy
    else:
        frames = np.zeros((n, frame_size, frame_size, 3), dtype=np.uint8)
        for i in np.flatnonzero(valid):
            frames[i] = data[offsets[i] : offsets[i] + nbytes].reshape(frame_size, frame_size, 3)  # (S, S, 3)
    return frames, valid.astype(bool)


def _author_bios(ds: Dataset, author_ids: np.ndarray) -> list[str | None] | None:
    if not ds.has("authors"):
        return None
    import pyarrow.parquet as pq

    if "bio" not in pq.ParquetFile(ds.path("authors")).schema_arrow.names:
        return None
    t = ds.table("authors", ["author_id", "bio"])
    bio = dict(zip(t.column("author_id").to_pylist(), t.column("bio").to_pylist()))
    return [bio.get(int(a)) for a in author_ids]


def load_encoder_data(
    dataset_dir: str | os.PathLike | Dataset,
    text: TextModule,
    frame_size: int | None,
    *,
    with_queries: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> EncoderData:
    """Read and tokenize a canonical dataset's slices (and queries) once.

    Args:
        dataset_dir: the dataset directory (or an open Dataset).
        text: the model's TextModule (tokenizer, fields, budgets).
        frame_size: the model's frame side (None = ignore frames). Must match the dataset's.
        with_queries: also load ``queries`` (not needed to embed).
        cache: reuse / store the token ids in a ``TokenCache`` (same ids as uncached; the key
            covers the dataset files, tokenizer, fields and budgets).
        cache_dir: where the cache lives (default ``<dataset_dir>/.cache``).
    """
    ds = dataset_dir if isinstance(dataset_dir, Dataset) else Dataset(dataset_dir)
    keys = _read_slice_keys(ds)
    slice_ids = keys.slice_ids
    frames, has_frame = _load_frames(ds, frame_size, len(slice_ids))
    token_cache = TokenCache.for_dataset(ds, text, cache_dir) if cache else None
    item_tokens = _item_tokens(ds, text, keys, has_frame, token_cache)
    topics = {c: keys.table.column(c).to_numpy().astype(np.int64) for c in ("topic_l1", "topic_l2") if c in keys.names}

    query_ids = np.zeros(0, np.int64)
    query_tokens: list[np.ndarray] = []
    query_item = np.zeros(0, np.int64)
    if with_queries:
        query_ids, query_tokens, query_item = _load_queries(ds, text, slice_ids, token_cache)
    return EncoderData(slice_ids, keys.is_video, item_tokens, frames, has_frame, topics, query_ids, query_tokens, query_item)


@dataclasses.dataclass(frozen=True)
class _SliceKeys:
    """The slices table's key columns, read and checked once."""

    names: list[str]  # every column of the slices file
    table: pa.Table  # slice_id, domain and those of author_id, topic_l1, topic_l2 present
    slice_ids: np.ndarray  # (N,) int64
    is_video: np.ndarray  # (N,) bool


def _read_slice_keys(ds: Dataset) -> _SliceKeys:
    """Read slice_id, domain (which must be 'live' or 'video') and the optional author and topic columns."""
    import pyarrow.parquet as pq

    names = pq.ParquetFile(ds.path("slices")).schema_arrow.names
    for col in ("slice_id", "domain"):
        if col not in names:
            raise DataError("missing column", table=str(ds.path("slices")), column=col)
    want = ["slice_id", "domain"] + [c for c in ("author_id", "topic_l1", "topic_l2") if c in names]
    t = ds.table("slices", want)
    slice_ids = t.column("slice_id").to_numpy().astype(np.int64)
    domain = np.asarray(t.column("domain").to_pylist(), dtype=object)
    bad = np.flatnonzero((domain != "live") & (domain != "video"))
    if len(bad):
        raise DataError("domain must be 'live' or 'video'", table=str(ds.path("slices")), column="domain", row=int(bad[0]), value=domain[bad[0]])
    return _SliceKeys(names, t, slice_ids, domain == "video")


def _load_frames(ds: Dataset, frame_size: int | None, n: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(frames (N, S, S, 3) or None, has_frame (N,)); the dataset's frame side must be ``frame_size``."""
    if frame_size is None:
        return None, np.zeros(n, dtype=bool)
    slices_table = str(ds.path("slices"))
    ds_size = dataset_frame_size(ds)
    if ds_size is None:
        raise DataError(f"the encoder expects {frame_size}x{frame_size} frames but this dataset has none", table=slices_table, column="frame")
    if ds_size != frame_size:
        raise DataError(
            f"dataset frames are {ds_size}x{ds_size} but the encoder was trained on {frame_size}x{frame_size}",
            table=str(ds.root / "manifest.json"), column="frame_size", value=ds_size,
        )
    return decode_frames(ds.table("slices", ["frame"]).column("frame"), frame_size, slices_table)


def _item_tokens(ds: Dataset, text: TextModule, keys: _SliceKeys, has_frame: np.ndarray, token_cache: TokenCache | None) -> list[np.ndarray]:
    """Token ids of every slice's text fields, from the cache or tokenized (and then cached)."""
    slices_table = str(ds.path("slices"))
    item_tokens = token_cache.load("items", keys.slice_ids) if token_cache is not None else None
    if item_tokens is None:
        fields = [f for f in text.fields if f in keys.names]
        tt = ds.table("slices", fields) if fields else None
        texts: dict[str, list] = {f: tt.column(f).to_pylist() for f in fields}
        if "bio" in text.fields and "author_id" in keys.names:
            bios = _author_bios(ds, keys.table.column("author_id").to_numpy())
            if bios is not None:
                texts["bio"] = bios
        item_tokens = text.item_tokens(texts, has_frame=has_frame, table=slices_table)
        if token_cache is not None:
            token_cache.save("items", keys.slice_ids, item_tokens)
    else:
        # Cached ids were checked against the frames of the run that wrote them; this run may
        # load without frames, so the "nothing to embed" rule is applied again.
        empty = np.flatnonzero((np.fromiter(map(len, item_tokens), np.int64, len(item_tokens)) == 0) & ~has_frame)
        if len(empty):
            raise DataError(
                f"item has no text in any of the fields {list(text.fields)} and no frame; nothing to embed",
                table=slices_table, column=text.fields[0], row=int(empty[0]),
            )
    return item_tokens


def _load_queries(
    ds: Dataset, text: TextModule, slice_ids: np.ndarray, token_cache: TokenCache | None
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(query_ids (Q,), query token ids, query_item (Q,) index into the slices); a query's slice must exist."""
    qpath = str(ds.path("queries"))
    q = ds.table("queries", ["query_id", "query_text", "slice_id"])
    query_ids = q.column("query_id").to_numpy().astype(np.int64)
    qslice = q.column("slice_id").to_numpy().astype(np.int64)
    order = np.argsort(slice_ids, kind="stable")
    pos, found = sorted_lookup(slice_ids[order], qslice)
    if not found.all():
        r = int(np.flatnonzero(~found)[0])
        raise DataError("query points to a slice_id not in slices", table=qpath, column="slice_id", row=r, value=int(qslice[r]))
    query_item = order[pos]
    cached = token_cache.load("queries", query_ids) if token_cache is not None else None
    if cached is None:
        query_tokens = text.query_tokens(q.column("query_text").to_pylist(), table=qpath)
        if token_cache is not None:
            token_cache.save("queries", query_ids, query_tokens)
    else:
        query_tokens = cached
    return query_ids, query_tokens, query_item


def heldout_slices(data: EncoderData, eval_fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: slices (with all their queries) held out for evaluation, per domain.

    Holding out whole slices (not single pairs) means evaluated items were never trained on.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    held = np.zeros(len(data.slice_ids), dtype=bool)
    with_q = np.unique(data.query_item)
    for video in (False, True):
        pool = with_q[data.is_video[with_q] == video]
        if len(pool) < 2:
            continue
        k = max(1, int(round(eval_fraction * len(pool))))
        held[rng.permutation(pool)[:k]] = True
    return held


def train_queries(data: EncoderData, held: np.ndarray) -> np.ndarray:
    """Indices of queries whose slice is not held out."""
    return np.flatnonzero(~held[data.query_item])


class PairSampler:
    """Cross-domain batches of (query, item) pairs; batch ``s`` depends only on (seed, s).

    Args:
        query_index: indices of the training queries.
        query_is_video: (Q,) bool over all queries.
        batch_size: B.
        video_ratio: share of each batch from short videos (falls back to the other domain
            when one has no training pairs).
        seed: run seed.
    """

    def __init__(self, query_index: np.ndarray, query_is_video: np.ndarray, batch_size: int, video_ratio: float, seed: int) -> None:
        idx = np.asarray(query_index, dtype=np.int64)
        self.video = idx[query_is_video[idx]]
        self.live = idx[~query_is_video[idx]]
        if len(self.video) + len(self.live) == 0:
            raise DataError("no training query-item pairs (the queries table is empty or all held out)", table="queries")
        self.batch_size = batch_size
        n_video = int(round(batch_size * video_ratio))
        if len(self.video) == 0:
            n_video = 0
        if len(self.live) == 0:
            n_video = batch_size
        self.n_video = n_video
        self.seed = seed

    def batch(self, step: int) -> np.ndarray:
        """Query indices of batch ``step`` (B,), videos first."""
        rng = np.random.default_rng([self.seed, 0xBA7C, step])
        parts = []
        for pool, k in ((self.video, self.n_video), (self.live, self.batch_size - self.n_video)):
            if k:
                parts.append(rng.choice(pool, size=k, replace=k > len(pool)))
        return np.concatenate(parts)


def item_batch(data: EncoderData, idx: np.ndarray, pad_id: int) -> ItemBatch:
    """Slices ``idx`` as an ItemBatch (text right-padded to the longest in the batch)."""
    text = pack_text([data.item_tokens[i] for i in idx], pad_id)
    frames = None if data.frames is None else torch.from_numpy(data.frames[idx])  # (B, S, S, 3)
    return ItemBatch(text, frames, torch.from_numpy(data.has_frame[idx]))


def query_batch(data: EncoderData, qidx: np.ndarray, pad_id: int) -> TextBatch:
    return pack_text([data.query_tokens[i] for i in qidx], pad_id)
