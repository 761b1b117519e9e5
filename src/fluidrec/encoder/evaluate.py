"""Encoder evaluation: Q2I / I2Q Recall@10/50 per domain and linear-probe taxonomy accuracy.

Shape letters: Q queries, G gallery items, M items with held-out queries, D width, C classes.

Retrieval (the paper's keyphrase retrieval, Table 6) runs on the held-out slices - whole slices
with all their queries, never seen in training (``data.heldout_slices`` with the run's seed):

- Q2I: each held-out query ranks a per-domain gallery (its held-out slices plus distractor
  slices of the same domain, at most ``train.eval_gallery`` items); hit@k when its slice is
  in the top k.
- I2Q: each held-out slice ranks the domain's held-out queries; hit@k when any of its own
  queries is in the top k.
- Exactly tied scores are broken at random, in expectation (a zero vector ties with everything).

Linear probe: a multinomial logistic regression (L-BFGS, fixed seed) on frozen embeddings of
up to ``train.probe_items`` slices, for ``topic_l1``, ``topic_l2`` and ``topic_l3``. The
features are standardised with the training rows' mean and deviation, and the 70/30 split is
stratified by class. Both matter on small galleries: a barely trained encoder's embeddings
can agree to ~1e-4 (cosine 0.99999), where an L2-penalised probe on the raw features sees no
signal and predicts the training majority class; with an unstratified split of 60 items that
class can be absent from the test rows, and the accuracy came out 0.0, below chance.

Example:
    >>> m = evaluate_encoder("runs/encoder", "data/world")
    >>> m["live"]["q2i_recall@10"], m["probe_acc_level1"]
"""

from __future__ import annotations

import dataclasses

import math
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from fluidrec.data.io import Dataset
from fluidrec.encoder.data import EncoderData, heldout_slices, load_encoder_data
from fluidrec.encoder.embed import encode_items, encode_queries
from fluidrec.encoder.model import MultimodalEncoder, load_encoder

if TYPE_CHECKING:
    from fluidrec.encoder.lsa import LsaEncoder

KS = (10, 50)
DOMAINS = ("live", "video")
PROBE_LEVELS = (1, 2, 3)


def positive_ranks(sim: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """0-based rank of each row's positive column: how many columns score strictly higher.

    Args:
        sim: (R, C) similarities.
        pos: (R,) column of each row's positive.
    """
    s_pos = sim[np.arange(len(sim)), pos]
    return (sim > s_pos[:, None]).sum(axis=1)


# Ties are broken at random, in expectation. Counting only strictly higher scores would rank a
# zero vector's positive first: an LSA query without one vocabulary word scores 0 against every
# item and would be a hit. Without ties both formulas give the plain 0/1 hit.


def q2i_recall(q: np.ndarray, gallery: np.ndarray, pos: np.ndarray, ks=KS) -> dict[int, float]:
    """Q2I Recall@k: share of queries whose positive item ranks in the top k of the gallery.

    With ``a`` items scoring higher than the positive and ``t`` others tied with it, the expected
    hit under a random order of the tied items is ``clip((k - a) / (t + 1), 0, 1)``.
    """
    return recall_from_scores(q @ gallery.T, pos, ks)  # (Q, G) similarities


def recall_from_scores(sim: np.ndarray, pos: np.ndarray, ks=KS) -> dict[int, float]:
    """Recall@k of (Q, G) scores whose row q has its positive in column ``pos[q]`` (ties as in ``q2i_recall``)."""
    s_pos = sim[np.arange(len(sim)), pos][:, None]  # (Q, 1)
    above = (sim > s_pos).sum(axis=1)
    tied = (sim == s_pos).sum(axis=1) - 1
    return {k: float(np.clip((k - above) / (tied + 1), 0.0, 1.0).mean()) for k in ks}


def _hit_any(above: int, tied: int, own: int, k: int) -> float:
    """P(one of ``own`` of the ``tied`` best-scoring queries lands in the top k), ``above`` ahead of them."""
    j = k - above  # places in the top k left for the tied block
    if j <= 0:
        return 0.0
    if j > tied - own:
        return 1.0
    return 1.0 - math.comb(tied - own, j) / math.comb(tied, j)  # all j places taken by other queries


def i2q_recall(items: np.ndarray, q: np.ndarray, owner: np.ndarray, ks=KS) -> dict[int, float]:
    """I2Q Recall@k: share of items with at least one own query in the top k of all queries.

    The best-scoring own query decides; ties at its score are broken at random, in expectation.

    Args:
        items: (M, D) item embeddings.
        q: (Q, D) query embeddings.
        owner: (Q,) row of ``items`` each query belongs to.
    """
    sim = items @ q.T  # (M, Q)
    hits = {k: [] for k in ks}
    for m in np.unique(owner):
        own = owner == m
        best = sim[m, own].max()
        above = int((sim[m] > best).sum())
        tied = sim[m] == best
        n_tied, n_own = int(tied.sum()), int((tied & own).sum())
        for k in ks:
            hits[k].append(_hit_any(above, n_tied, n_own, k))
    return {k: float(np.mean(v)) for k, v in hits.items()}


def stratified_split(y: np.ndarray, train_frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test): each class split ``train_frac`` / rest, at least one row on each
    side for a class of two or more (a class of one goes to train).

    Example:
        >>> tr, te = stratified_split(np.array([0] * 10 + [1] * 5), 0.7, np.random.default_rng(0))
        >>> len(tr), len(te)   # class 0: 7 / 3, class 1: round(3.5) = 4 / 1
        (11, 4)
    """
    tr, te = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        k = len(rows) if len(rows) < 2 else min(max(int(round(train_frac * len(rows))), 1), len(rows) - 1)
        tr.append(rows[:k])
        te.append(rows[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


def linear_probe(x: np.ndarray, y: np.ndarray, seed: int, *, train_frac: float = 0.7, l2: float = 1e-3) -> float | None:
    """Test accuracy of a logistic-regression probe on frozen features (None if too few labels).

    Stratified split, features standardised on the training rows (see the module docstring),
    float64 throughout.
    """
    keep = y >= 0
    x, y = x[keep], y[keep]
    if len(y) < 10 or len(np.unique(y)) < 2:
        return None
    classes, y = np.unique(y, return_inverse=True)
    tr, te = stratified_split(y, train_frac, np.random.default_rng([seed, 0x9B0B]))
    if len(te) == 0:
        return None
    x = np.asarray(x, dtype=np.float64)
    mu, sd = x[tr].mean(0), x[tr].std(0)
    sd[sd < 1e-12 * max(float(np.abs(mu).max()), 1.0)] = 1.0  # a constant feature stays 0, not inf
    xt = torch.from_numpy((x - mu) / sd)  # (n, D) standardised
    yt = torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(x.shape[1], len(classes), generator=gen, dtype=torch.float64) * 0.01).requires_grad_(True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = xt[tr] @ w + b  # (n_tr, C)
        loss = torch.nn.functional.cross_entropy(logits, yt[tr]) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xt[te] @ w + b).argmax(1)
    return float((pred == yt[te]).double().mean())


def gallery_rows(data: EncoderData, held: np.ndarray, video: bool, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out slices of one domain (at most ``size``) plus distractors of the same domain."""
    rng = np.random.default_rng([seed, 0x6A11, int(video)])
    dom = data.is_video == video
    pos = np.flatnonzero(held & dom)
    if len(pos) > size:
        pos = np.sort(rng.choice(pos, size=size, replace=False))
    others = np.flatnonzero(dom & ~held)
    n_fill = min(len(others), size - len(pos))
    fill = np.sort(rng.choice(others, size=n_fill, replace=False)) if n_fill > 0 else np.zeros(0, np.int64)
    return pos, np.concatenate([pos, fill])


@dataclasses.dataclass(frozen=True)
class HeldOutPairs:
    """One domain's retrieval task: its gallery and the held-out queries with their positives."""

    pos_items: np.ndarray  # (P,) held-out slices; they open the gallery
    gallery: np.ndarray  # (G,) slice rows: pos_items, then distractors
    qidx: np.ndarray  # (Q,) queries of the held-out slices
    pos: np.ndarray  # (Q,) gallery row of each query's positive


def heldout_pairs(data: EncoderData, held: np.ndarray, video: bool, size: int, seed: int) -> HeldOutPairs:
    """The gallery (``gallery_rows``) and its queries, as every Q2I evaluation here scores them."""
    pos_items, gallery = gallery_rows(data, held, video, size, seed)
    qidx = np.flatnonzero(np.isin(data.query_item, pos_items))
    row_of = {int(s): r for r, s in enumerate(gallery)}
    pos = np.array([row_of[int(data.query_item[j])] for j in qidx], dtype=np.int64)  # (Q,)
    return HeldOutPairs(pos_items, gallery, qidx, pos)


def evaluate_model(model: MultimodalEncoder | LsaEncoder, data: EncoderData, *, seed: int, eval_fraction: float, gallery_size: int, probe_items: int, batch_size: int = 256) -> dict:
    """Metrics of an in-memory model on already-loaded data (see ``evaluate_encoder``)."""
    held = heldout_slices(data, eval_fraction, seed)
    out: dict = {"n": {}}
    for name, video in zip(DOMAINS, (False, True)):
        pairs = heldout_pairs(data, held, video, gallery_size, seed)
        pos_items, gallery, qidx, pos = pairs.pos_items, pairs.gallery, pairs.qidx, pairs.pos
        if len(qidx) == 0:
            out[name] = {f"{d}_recall@{k}": None for d in ("q2i", "i2q") for k in KS}
            out["n"][name] = {"queries": 0, "gallery": int(len(gallery))}
            continue
        zg = encode_items(model, data, gallery, batch_size=batch_size)  # (G, D)
        zq = encode_queries(model, data, qidx, batch_size=batch_size)  # (Q, D)
        held_rows = np.arange(len(pos_items))  # positives come first in the gallery
        q2i = q2i_recall(zq, zg, pos)
        i2q = i2q_recall(zg[held_rows], zq, pos)
        out[name] = {**{f"q2i_recall@{k}": v for k, v in q2i.items()}, **{f"i2q_recall@{k}": v for k, v in i2q.items()}}
        out["n"][name] = {"queries": int(len(qidx)), "gallery": int(len(gallery)), "items": int(len(pos_items))}
    for level in PROBE_LEVELS:
        col = f"topic_l{level}"
        acc = None
        if col in data.topics:
            labelled = np.flatnonzero(data.topics[col] >= 0)
            if len(labelled):
                rng = np.random.default_rng([seed, 0x9808])
                pick = np.sort(rng.choice(labelled, size=min(probe_items, len(labelled)), replace=False))
                z = encode_items(model, data, pick, batch_size=batch_size)
                acc = linear_probe(z, data.topics[col][pick], seed)
        out[f"probe_acc_level{level}"] = acc
    return out


def _add_topic_levels(ds: Dataset, data: EncoderData) -> None:
    """Put the probe's deeper topic columns (``topic_l3``) into ``data.topics`` when the dataset has them.

    ``load_encoder_data`` reads ``topic_l1``/``topic_l2`` only; its rows are the slices table's rows.
    """
    import pyarrow.parquet as pq

    names = pq.ParquetFile(ds.path("slices")).schema_arrow.names
    want = [f"topic_l{lv}" for lv in PROBE_LEVELS if f"topic_l{lv}" in names and f"topic_l{lv}" not in data.topics]
    if want:
        t = ds.table("slices", want)
        data.topics.update({c: t.column(c).to_numpy().astype(np.int64) for c in want})


def evaluate_encoder(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, *, batch_size: int = 256) -> dict:
    """Evaluate a trained encoder (or a fitted LSA reference) on its held-out pairs.

    Returns ``{"live": {q2i_recall@10, q2i_recall@50, i2q_recall@10, i2q_recall@50}, "video": {...},
    "probe_acc_level1": float, "probe_acc_level2": float, "probe_acc_level3": float, "n": counts}``
    (None where a domain or label is missing).

    Example:
        >>> evaluate_encoder("runs/encoder", "data/world")["video"]["q2i_recall@10"]
    """
    model, cfg = load_encoder(model_dir)
    ev = cfg.eval_settings()
    torch.set_num_threads(ev.num_threads)
    ds = Dataset(dataset_dir)
    data = load_encoder_data(ds, model.text, model.frame_size)
    _add_topic_levels(ds, data)
    return evaluate_model(
        model, data, seed=ev.seed, eval_fraction=ev.eval_fraction,
        gallery_size=ev.eval_gallery, probe_items=ev.probe_items, batch_size=batch_size,
    )
