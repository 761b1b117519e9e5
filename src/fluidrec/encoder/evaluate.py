"""Encoder evaluation: Q2I / I2Q Recall@10/50 per domain and linear-probe taxonomy accuracy.

Shape letters: Q queries, G gallery items, M items with held-out queries, D width, C classes.

Retrieval (the paper's keyphrase retrieval, Table 6) runs on the held-out slices - whole slices
with all their queries, never seen in training (``data.heldout_slices`` with the run's seed):

- Q2I: each held-out query ranks a per-domain gallery (its held-out slices plus distractor
  slices of the same domain, at most ``train.eval_gallery`` items); hit@k when its slice is
  in the top k.
- I2Q: each held-out slice ranks the domain's held-out queries; hit@k when any of its own
  queries is in the top k.

Linear probe: a multinomial logistic regression (L-BFGS, fixed seed) on frozen embeddings of
up to ``train.probe_items`` slices, 70/30 split, for ``topic_l1`` and ``topic_l2``.

Example:
    >>> m = evaluate_encoder("runs/encoder", "data/world")
    >>> m["live"]["q2i_recall@10"], m["probe_acc_level1"]
"""

from __future__ import annotations

import os

import numpy as np
import torch

from fluidrec.data.io import Dataset
from fluidrec.encoder.data import EncoderData, heldout_slices, load_encoder_data
from fluidrec.encoder.embed import encode_items, encode_queries
from fluidrec.encoder.model import MultimodalEncoder, load_encoder

KS = (10, 50)
DOMAINS = ("live", "video")


def positive_ranks(sim: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """0-based rank of each row's positive column: how many columns score strictly higher.

    Args:
        sim: (R, C) similarities.
        pos: (R,) column of each row's positive.
    """
    s_pos = sim[np.arange(len(sim)), pos]
    return (sim > s_pos[:, None]).sum(axis=1)


def q2i_recall(q: np.ndarray, gallery: np.ndarray, pos: np.ndarray, ks=KS) -> dict[int, float]:
    """Q2I Recall@k: share of queries whose positive item ranks in the top k of the gallery."""
    ranks = positive_ranks(q @ gallery.T, pos)  # (Q,)
    return {k: float((ranks < k).mean()) for k in ks}


def i2q_recall(items: np.ndarray, q: np.ndarray, owner: np.ndarray, ks=KS) -> dict[int, float]:
    """I2Q Recall@k: share of items with at least one own query in the top k of all queries.

    Args:
        items: (M, D) item embeddings.
        q: (Q, D) query embeddings.
        owner: (Q,) row of ``items`` each query belongs to.
    """
    sim = items @ q.T  # (M, Q)
    best = np.full(len(items), np.inf)
    for j in range(len(q)):  # rank of each own query; the best one decides
        m = owner[j]
        rank = (sim[m] > sim[m, j]).sum()
        best[m] = min(best[m], rank)
    has = np.isfinite(best)
    return {k: float((best[has] < k).mean()) for k in ks}


def linear_probe(x: np.ndarray, y: np.ndarray, seed: int, *, train_frac: float = 0.7, l2: float = 1e-3) -> float | None:
    """Test accuracy of a logistic-regression probe on frozen features (None if too few labels)."""
    keep = y >= 0
    x, y = x[keep], y[keep]
    if len(y) < 10 or len(np.unique(y)) < 2:
        return None
    classes, y = np.unique(y, return_inverse=True)
    perm = np.random.default_rng([seed, 0x9B0B]).permutation(len(y))
    n_tr = int(train_frac * len(y))
    tr, te = perm[:n_tr], perm[n_tr:]
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(x.shape[1], len(classes), generator=gen) * 0.01).requires_grad_(True)
    b = torch.zeros(len(classes), requires_grad=True)
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
    return float((pred == yt[te]).float().mean())


def _gallery(data: EncoderData, held: np.ndarray, video: bool, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def evaluate_model(model: MultimodalEncoder, data: EncoderData, *, seed: int, eval_fraction: float, gallery_size: int, probe_items: int, batch_size: int = 256) -> dict:
    """Metrics of an in-memory model on already-loaded data (see ``evaluate_encoder``)."""
    held = heldout_slices(data, eval_fraction, seed)
    out: dict = {"n": {}}
    for name, video in zip(DOMAINS, (False, True)):
        pos_items, gallery = _gallery(data, held, video, gallery_size, seed)
        qidx = np.flatnonzero(np.isin(data.query_item, pos_items))
        if len(qidx) == 0:
            out[name] = {f"{d}_recall@{k}": None for d in ("q2i", "i2q") for k in KS}
            out["n"][name] = {"queries": 0, "gallery": int(len(gallery))}
            continue
        zg = encode_items(model, data, gallery, batch_size=batch_size)  # (G, D)
        zq = encode_queries(model, data, qidx, batch_size=batch_size)  # (Q, D)
        row_of = {int(s): r for r, s in enumerate(gallery)}
        pos = np.array([row_of[int(data.query_item[j])] for j in qidx])  # (Q,) gallery row of each positive
        held_rows = np.arange(len(pos_items))  # positives come first in the gallery
        q2i = q2i_recall(zq, zg, pos)
        i2q = i2q_recall(zg[held_rows], zq, pos)
        out[name] = {**{f"q2i_recall@{k}": v for k, v in q2i.items()}, **{f"i2q_recall@{k}": v for k, v in i2q.items()}}
        out["n"][name] = {"queries": int(len(qidx)), "gallery": int(len(gallery)), "items": int(len(pos_items))}
    for level in (1, 2):
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


def evaluate_encoder(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, *, batch_size: int = 256) -> dict:
    """Evaluate a trained encoder on its held-out pairs.

    Returns ``{"live": {q2i_recall@10, q2i_recall@50, i2q_recall@10, i2q_recall@50}, "video": {...},
    "probe_acc_level1": float, "probe_acc_level2": float, "n": counts}`` (None where a domain
    or label is missing).

    Example:
        >>> evaluate_encoder("runs/encoder", "data/world")["video"]["q2i_recall@10"]
    """
    model, cfg = load_encoder(model_dir)
    torch.set_num_threads(cfg.train.num_threads)
    data = load_encoder_data(Dataset(dataset_dir), model.text, model.frame_size)
    return evaluate_model(
        model, data, seed=cfg.seed, eval_fraction=cfg.train.eval_fraction,
        gallery_size=cfg.train.eval_gallery, probe_items=cfg.train.probe_items, batch_size=batch_size,
    )
