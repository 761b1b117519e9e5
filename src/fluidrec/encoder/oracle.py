"""The retrieval ceiling of a synthetic world: rank the gallery by the true likelihood of the query.

Shape letters: L leaves, W words, Q queries, G gallery items.

The world draws a query's words from a mixture around its slice's leaf topic
(``data.world.content``: leaf, ancestors, a sibling leaf, a random leaf, generic words), and
nothing else about the slice. So the best any encoder can do is to rank gallery items by
``P(query words | item's leaf)``; items of one leaf tie, and ties count as a random order
(``evaluate.recall_from_scores``). That ranking, on the very held-out queries and galleries
``evaluate.evaluate_model`` uses, is the ``oracle`` row of Table 6: an encoder near it has
nothing left to learn from the text, and two encoders near it cannot be told apart.

Example:
    >>> oracle_retrieval("runs/world_small", encoder_demo(0).eval_settings())["live"]["q2i_recall@10"]
"""

from __future__ import annotations

import os

import numpy as np

from fluidrec.data.io import Dataset
from fluidrec.data.world import content
from fluidrec.data.world.taxonomy import Taxonomy
from fluidrec.encoder.config import EvalSettings
from fluidrec.encoder.data import heldout_slices
from fluidrec.encoder.evaluate import DOMAINS, KS, heldout_pairs, recall_from_scores


def _uniform_rows(tax: Taxonomy, level: int, nodes: np.ndarray) -> np.ndarray:
    """(len(nodes), W): each node's vocabulary as a uniform distribution over word ids."""
    voc = tax.vocab[level][nodes]  # (n, V_l) word ids, drawn uniformly by column
    out = np.zeros((len(nodes), len(tax.words)))
    np.add.at(out, (np.repeat(np.arange(len(nodes)), voc.shape[1]), voc.ravel()), 1.0 / voc.shape[1])
    return out


def leaf_word_probs(tax: Taxonomy, mix: tuple[float, ...]) -> np.ndarray:
    """(L, W) P(word | leaf) of one word of a text drawn with ``mix`` (``content.SOURCES`` order)."""
    p = np.asarray(mix, dtype=np.float64) / np.sum(mix)
    anc = tax.ancestors  # (L, 4) node id per level
    leaf = _uniform_rows(tax, 3, anc[:, 3])  # (L, W)
    probs = p[0] * leaf + sum(p[4 - lv] * _uniform_rows(tax, lv - 1, anc[:, lv - 1]) for lv in (1, 2, 3))
    b4 = tax.branching[3]
    ids = np.arange(tax.n_leaves)
    base = (ids // b4) * b4
    siblings = sum(leaf[base + (ids - base + o) % b4] for o in range(1, b4)) / max(b4 - 1, 1)  # a uniform other child
    probs += p[4] * siblings + p[5] * leaf.mean(0, keepdims=True)
    for share, words in ((p[6], tax.generic), (p[7], tax.noise)):
        np.add.at(probs, (slice(None), words), share / len(words))
    return probs


def query_log_likelihood(tax: Taxonomy, texts: list[str]) -> np.ndarray:
    """(Q, L) log P(query words | leaf) under the world's query mixture."""
    logp = np.log(leaf_word_probs(tax, content.MIXES["query"]["query"]).T + 1e-300)  # (W, L)
    index = {str(w): i for i, w in enumerate(tax.words)}
    out = np.zeros((len(texts), tax.n_leaves))
    for r, text in enumerate(texts):
        ids = [index[w] for w in text.split() if w in index]
        if ids:
            out[r] = logp[ids].sum(0)
    return out


def oracle_retrieval(dataset_dir: str | os.PathLike, settings: EvalSettings) -> dict:
    """Q2I Recall@k of the true-likelihood ranking per domain, on ``settings``' held-out split and galleries."""
    from fluidrec.data.world.generate import world_taxonomy
    from fluidrec.encoder.lsa import untokenized_data

    ds = Dataset(dataset_dir)
    tax = world_taxonomy(ds.root)
    data, _ = untokenized_data(ds, ("title",), require_text=False)
    leaf = ds.table("slices", ["topic_l4"]).column("topic_l4").to_numpy().astype(np.int64)  # (N,)
    texts = [str(t) for t in ds.table("queries", ["query_text"]).column("query_text").to_pylist()]
    held = heldout_slices(data, settings.eval_fraction, settings.seed)
    out: dict = {}
    for name, video in zip(DOMAINS, (False, True)):
        pairs = heldout_pairs(data, held, video, settings.eval_gallery, settings.seed)
        if len(pairs.qidx) == 0:
            out[name] = {f"q2i_recall@{k}": None for k in KS}
            continue
        scores = query_log_likelihood(tax, [texts[j] for j in pairs.qidx])[:, leaf[pairs.gallery]]  # (Q, G)
        out[name] = {f"q2i_recall@{k}": v for k, v in recall_from_scores(scores, pairs.pos).items()}
    return out
