"""Foresight inputs from an imported dataset (KuaiLive-M3): segments, their vectors, impressions.

Shape letters: G segments, A authors, D embedding width.

What the run needs and where it comes from on an imported dataset (``fluidrec data import
kuailive-m3``; docs/real_data.md):

- **segments**: the ``live`` slices (one per published 30-s segment of ``live_emb_128_ts``,
  spanning previous end -> its timestamp) that have a vector in ``slice_embeddings.parquet``;
  the vectors *are* the segment embeddings (no LSA). Live slices without a vector (the
  importer's ``--keep-rooms-without-segments`` whole-room slices) are dropped and counted.
- **impressions** with the four task labels (click, follow, long_view, gift; like for
  Figure 3), ids made dense (users, authors), a missing ``position`` read as 0; the
  segment on air is the impression's ``slice_id``.
- **split**: the last UTC day with impressions is the test day when the impressions cover
  at least two days (the world's rule); otherwise the last ``TEST_FRACTION`` of the
  impressions in time order (the importer fixture covers 35 minutes).
- **author topics** for Figure 4: the most frequent level-1 tag of each author's short
  videos (``video`` slices' ``topic_l1``); -1 for an author without one.

Not in the data, so not in an imported run: segment moment kinds (the world's truth:
Figure 3's colouring and per-moment rates) and a truth model (Table 2's replay A/B).

Example:
    >>> data = load_imported("runs/klm3")
    >>> seqs = AuthorSequences.build(data.seg["author_id"], data.seg["end_ts"], sids, data.n_authors)
    >>> imp = data.impressions(seqs)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fluidrec.errors import DataError
from fluidrec.foresight.config import DAY_MS, TASKS
from fluidrec.foresight.ranker import Impressions
from fluidrec.foresight.segments import SegmentLog
from fluidrec.foresight.sequences import AuthorSequences

EMBEDDINGS_FILE = "slice_embeddings.parquet"  # what the KuaiLive-M3 importer writes
TEST_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class ImportedData:
    """Segments (G rows, slice_id order) with their vectors, impressions, ids and split.

    Attributes:
        seg: segment log (``segment_id`` = slice_id, dense ``author_id``; no text, no moment).
        emb: (G, D) float32 published segment vectors.
        imp: raw impression columns in time order (dense ``user`` / ``author``).
        n_users, n_authors: sizes of the dense id spaces.
        split_ts: impressions and segments ending after it are the test part.
        author_topic: (A,) home topic of each author from their videos, -1 unknown.
        notes: counts of what was dropped, and how the split was chosen.
    """

    seg: SegmentLog
    emb: np.ndarray
    imp: dict[str, np.ndarray]
    n_users: int
    n_authors: int
    split_ts: int
    author_topic: np.ndarray
    notes: dict

    def impressions(self, seqs: AuthorSequences) -> Impressions:
        """The ranker's impressions, each joined with its author's causal state."""
        c = self.imp
        state = seqs.state_at(c["author"], c["ts"])
        return Impressions(c["ts"], c["user"], c["room"], c["author"], c["position"], state, {k: c[k] for k in (*TASKS, "like")})

    def segment_on_air(self) -> np.ndarray:
        """(n,) segment row on air at each impression (its slice), -1 when that slice is not a segment."""
        ids = self.seg["segment_id"]
        k = np.minimum(np.searchsorted(ids, self.imp["slice"]), max(len(ids) - 1, 0))
        return np.where((len(ids) > 0) & (ids[k] == self.imp["slice"]), k, -1)


def _dense(ids: np.ndarray, universe: np.ndarray) -> np.ndarray:
    return np.searchsorted(universe, ids).astype(np.int64)


def split_time(ts: np.ndarray) -> tuple[int, str]:
    """(split_ts, how): the start of the last UTC day, or the ``TEST_FRACTION`` time quantile."""
    if len(ts) == 0:
        raise DataError("no impressions: the foresight tables need labelled impressions", table="impressions")
    days = np.unique(ts // DAY_MS)
    if len(days) >= 2:
        return int(days[-1] * DAY_MS), "last day"
    order = np.sort(ts)
    return int(order[max(int(np.ceil((1 - TEST_FRACTION) * len(order))) - 1, 0)]), f"last {TEST_FRACTION:.0%} of impressions"


def _segments(ds, root: Path, author_ids: np.ndarray, notes: dict) -> tuple[SegmentLog, np.ndarray]:
    from fluidrec.data.embeddings import read_embeddings

    path = root / EMBEDDINGS_FILE
    if not path.exists():
        raise DataError("no segment embeddings: foresight on an imported dataset reads the segment vectors the "
                        "KuaiLive-M3 importer writes (fluidrec data import kuailive-m3)", table=str(path))
    ids, vec = read_embeddings(path)
    cols = ["slice_id", "room_id", "author_id", "start_ts", "end_ts", "domain"]
    t = ds.table("slices", cols)
    s = {c: t.column(c).to_numpy(zero_copy_only=False) for c in cols}
    live = s["domain"] == "live"
    has = np.isin(s["slice_id"], ids)
    notes["live_slices_without_embedding"] = int((live & ~has).sum())
    rows = np.flatnonzero(live & has)
    rows = rows[np.argsort(s["slice_id"][rows], kind="stable")]
    if len(rows) == 0:
        raise DataError("no live slice has a segment embedding (nothing to quantise into Sids)", table=str(path))
    by_id = np.argsort(ids)
    emb = vec[by_id[np.searchsorted(ids[by_id], s["slice_id"][rows])]].astype(np.float32)  # (G, D)
    seg = {"segment_id": s["slice_id"][rows].astype(np.int64), "slice_id": s["slice_id"][rows].astype(np.int64),
           "room_id": s["room_id"][rows].astype(np.int64), "author_id": _dense(s["author_id"][rows], author_ids),
           "start_ts": s["start_ts"][rows].astype(np.int64), "end_ts": s["end_ts"][rows].astype(np.int64)}
    return SegmentLog(seg, {}), emb


def _author_topics(ds, author_ids: np.ndarray) -> np.ndarray:
    t = ds.table("slices", ["author_id", "domain", "topic_l1"])
    video = (t.column("domain").to_numpy(zero_copy_only=False) == "video")
    topic = t.column("topic_l1").to_numpy().astype(np.int64)
    author = t.column("author_id").to_numpy().astype(np.int64)
    keep = video & (topic >= 0) & np.isin(author, author_ids)
    out = np.full(len(author_ids), -1, np.int64)
    if keep.any():
        a, k = _dense(author[keep], author_ids), topic[keep]
        counts = np.zeros((len(author_ids), int(k.max()) + 1), np.int64)  # (A, topics)
        np.add.at(counts, (a, k), 1)
        has = counts.sum(1) > 0
        out[has] = counts[has].argmax(1)  # ties to the lowest topic id
    return out


def load_imported(dataset_dir: str | os.PathLike) -> ImportedData:
    """Read an imported dataset (``fluidrec data import kuailive-m3``) for the foresight run."""
    from fluidrec.data.io import Dataset

    root = Path(dataset_dir)
    ds = Dataset(root)
    notes: dict = {}
    rooms = ds.table("rooms", ["room_id", "author_id"])
    room_ids, room_author = rooms.column("room_id").to_numpy().astype(np.int64), rooms.column("author_id").to_numpy().astype(np.int64)
    cols = ["ts", "user_id", "room_id", *TASKS, "like"]
    names = ds.table("impressions").column_names
    t = ds.table("impressions", cols + (["position"] if "position" in names else []))
    ts = t.column("ts").to_numpy().astype(np.int64)
    order = np.argsort(ts, kind="stable")  # event time
    c = {k: t.column(k).to_numpy().astype(np.int64)[order] for k in t.column_names}
    by_room = np.argsort(room_ids)
    r = np.minimum(np.searchsorted(room_ids[by_room], c["room_id"]), len(room_ids) - 1)
    bad = room_ids[by_room][r] != c["room_id"]
    if bad.any():
        raise DataError("impression on a room missing from rooms", table="impressions", column="room_id", value=int(c["room_id"][bad][0]))
    imp_author = room_author[by_room][r]
    author_ids = np.unique(np.r_[ds.numpy("authors", "author_id").astype(np.int64), room_author])
    user_ids = np.unique(np.r_[ds.numpy("users", "user_id").astype(np.int64), c["user_id"]])
    seg, emb = _segments(ds, root, author_ids, notes)
    split_ts, notes["split"] = split_time(c["ts"])
    slices = ds.table("impressions", ["slice_id"]).column("slice_id").to_numpy().astype(np.int64)[order]
    imp = {"ts": c["ts"], "user": _dense(c["user_id"], user_ids), "room": c["room_id"], "author": _dense(imp_author, author_ids),
           "position": c.get("position", np.zeros(len(order), np.int64)), "slice": slices,
           **{k: c[k].astype(np.float32) for k in (*TASKS, "like")}}
    return ImportedData(seg, emb, imp, len(user_ids), len(author_ids), split_ts, _author_topics(ds, author_ids), notes)
