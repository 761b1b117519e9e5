"""Segments to Sids: read the world's 30-s segments, embed their text, quantise (paper 3.1.1).

Steps: ``load_segments`` (the ``segments.parquet`` side table of a foresight world) ->
``embed_segments`` (the main job's default content encoder, ``encoder.lsa``, fitted on a
seeded sample of training-day segments through ``train_lsa`` unchanged, then applied to
every segment) -> ``fit_sids`` (a flat faiss K-Means codebook, ``codes.flat``, fitted on
training-day segments only; Sid = nearest centroid for every segment).

Example:
    >>> seg = load_segments("runs/foresight/world")
    >>> emb = embed_segments(seg, "runs/foresight/lsa", fit_rows, seed=0)     # (G, 128)
    >>> sids = fit_sids(emb, fit_rows, n_codes=512, seed=0, out_dir="runs/foresight/sid")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fluidrec.data.world.content import SEGMENT_FIELDS
from fluidrec.data.world.generate import SEGMENTS_FILE
from fluidrec.errors import DataError

_COLUMNS = ("segment_id", "room_id", "author_id", "slice_id", "start_ts", "end_ts", "topic_l1", "topic_l2", "topic_l4", "moment")


@dataclasses.dataclass(frozen=True)
class SegmentLog:
    """The segment table as arrays (G rows, segment_id order); ``text`` holds the text fields."""

    cols: dict[str, np.ndarray]
    text: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.cols["segment_id"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]


def load_segments(dataset_dir: str | os.PathLike, *, with_text: bool = True) -> SegmentLog:
    """Read ``<dataset_dir>/segments.parquet`` (written by a world with ``segments=True``)."""
    import pyarrow.parquet as pq

    path = Path(dataset_dir) / SEGMENTS_FILE
    if not path.exists():
        raise DataError("no segments table: generate the world with segments=True (foresight world)", table=str(path))
    t = pq.read_table(path)
    missing = [c for c in _COLUMNS if c not in t.column_names]
    if missing:
        raise DataError("missing column", table=str(path), column=missing[0])
    cols = {c: t.column(c).to_numpy() for c in _COLUMNS}
    text = {f: t.column(f).to_pylist() for f in SEGMENT_FIELDS} if with_text else {}
    return SegmentLog(cols, text)


def _corpus_dataset(seg: SegmentLog, rows: np.ndarray, out: Path) -> Path:
    """A canonical dataset whose ``slices`` are the given segments (what ``train_lsa`` reads)."""
    from fluidrec.data.io import DatasetWriter, write_manifest, write_table

    with DatasetWriter(out) as tmp:
        write_table(tmp, "slices", {
            "slice_id": seg["segment_id"][rows], "room_id": seg["room_id"][rows], "author_id": seg["author_id"][rows],
            "start_ts": seg["start_ts"][rows], "end_ts": seg["end_ts"][rows], "domain": ["live"] * len(rows),
            **{f: [seg.text[f][i] for i in rows] for f in SEGMENT_FIELDS},
        })
        write_manifest(tmp, source="foresight-segments", seed=None)
    return out


def embed_segments(seg: SegmentLog, out_dir: str | os.PathLike, fit_rows: np.ndarray, *, seed: int, fit_max: int, dim: int = 128) -> np.ndarray:
    """(G, D) float32 LSA embeddings of every segment; the encoder is fitted on ``fit_rows`` only.

    Args:
        seg: the segment log (with text).
        out_dir: where the fitted LSA model and its corpus go.
        fit_rows: rows the encoder may see (training days); a seeded sample of ``fit_max``.
        seed: sample and SVD seed.
    """
    from fluidrec.encoder.config import LsaConfig
    from fluidrec.encoder.lsa import item_documents, load_lsa, train_lsa

    out = Path(out_dir)
    rng = np.random.default_rng([seed, 0x5E6])
    rows = np.sort(rng.permutation(fit_rows)[:fit_max]) if len(fit_rows) > fit_max else np.asarray(fit_rows)
    corpus = _corpus_dataset(seg, rows, out / "corpus")
    model_dir = train_lsa(LsaConfig(out_dim=dim, fields=SEGMENT_FIELDS, seed=seed), corpus, out / "model")
    model, _ = load_lsa(model_dir)
    docs = item_documents(seg.text, SEGMENT_FIELDS, len(seg), table=SEGMENTS_FILE)
    parts = [model.encode_texts(docs[s:s + 8192]) for s in range(0, len(docs), 8192)]
    return np.concatenate(parts).astype(np.float32)


def fit_sids(emb: np.ndarray, fit_rows: np.ndarray, *, n_codes: int, seed: int, niter: int, out_dir: str | os.PathLike) -> np.ndarray:
    """(G,) int64 Sids: flat K-Means (``codes.flat``) on ``fit_rows``, nearest centroid for all rows."""
    from fluidrec.codes.flat import flat_codebook

    k = int(min(n_codes, max(2, len(fit_rows) // 4)))  # faiss needs several points per centroid
    codebook = flat_codebook(size=k, niter=niter, seed=seed).fit(emb[fit_rows], source="segment embeddings")
    codebook.save(out_dir)
    return codebook.encode(emb, source="segment embeddings")[:, 0].astype(np.int64)
