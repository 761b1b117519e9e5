"""Rule baselines for the next Sid (paper Table 3 and its footnotes).

- ``last``: the last Sid of the raw sequence, L_c[-1].
- ``max_freq``: the most frequent Sid among the last l raw segments.
- ``max_weight``: the Sid with the largest summed run length over the last l RLE entries
  (the compressed context reaches further back than l raw segments).

Ties go to the Sid seen most recently (a stated choice; the paper does not say). The
batched functions take the padded context arrays of ``sequences.Contexts``; the
``*_one`` forms take plain lists and are the hand-checkable reference.

Example:
    >>> last_one([3, 3, 7]), max_freq_one([3, 3, 7]), max_weight_one([3, 7], [2, 1])
    (7, 3, 3)
"""

from __future__ import annotations

import numpy as np


def last_one(raw: list[int]) -> int:
    return int(raw[-1])


def _argmax_recent(weights: dict[int, float], last_seen: dict[int, int]) -> int:
    return max(weights, key=lambda s: (weights[s], last_seen[s]))


def max_freq_one(raw: list[int]) -> int:
    counts: dict[int, float] = {}
    seen: dict[int, int] = {}
    for i, s in enumerate(raw):
        counts[int(s)] = counts.get(int(s), 0) + 1
        seen[int(s)] = i
    return _argmax_recent(counts, seen)


def max_weight_one(values: list[int], runs: list[int]) -> int:
    weights: dict[int, float] = {}
    seen: dict[int, int] = {}
    for i, (s, w) in enumerate(zip(values, runs)):
        weights[int(s)] = weights.get(int(s), 0) + int(w)
        seen[int(s)] = i
    return _argmax_recent(weights, seen)


def _weighted_mode(ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of (B, S) ``ids`` the id with the largest summed weight; ties: latest column.

    Padding carries weight 0. Vectorised: sort each row's (id, column) pairs, sum runs of
    equal ids, take the best (sum, last column) per row.
    """
    b, s = ids.shape
    rows = np.repeat(np.arange(b), s)
    col = np.tile(np.arange(s), b)
    flat_ids, flat_w = ids.reshape(-1), weights.reshape(-1)  # (B*S,)
    keep = flat_w > 0
    rows, col, flat_ids, flat_w = rows[keep], col[keep], flat_ids[keep], flat_w[keep]
    order = np.lexsort((col, flat_ids, rows))
    rows, col, flat_ids, flat_w = rows[order], col[order], flat_ids[order], flat_w[order]
    start = np.r_[True, (rows[1:] != rows[:-1]) | (flat_ids[1:] != flat_ids[:-1])]
    gid = np.cumsum(start) - 1
    total = np.bincount(gid, weights=flat_w)
    g_last = np.r_[np.flatnonzero(start)[1:], len(rows)] - 1  # last (latest) member of each group
    g_row, g_id, g_col = rows[g_last], flat_ids[g_last], col[g_last]
    best = np.lexsort((g_col, total, g_row))  # within a row: ascending (total, col) -> last is best
    out = np.full(b, -1, dtype=np.int64)
    out[g_row[best]] = g_id[best]  # later writes (better groups) win
    return out


def predict_last(raw: np.ndarray, raw_mask: np.ndarray) -> np.ndarray:
    """(B,) the last valid Sid of each right-aligned raw context (B, l)."""
    return np.where(raw_mask[:, -1], raw[:, -1], -1)


def predict_max_freq(raw: np.ndarray, raw_mask: np.ndarray) -> np.ndarray:
    """(B,) the most frequent Sid of each raw context (B, l)."""
    return _weighted_mode(raw, raw_mask.astype(np.float64))


def predict_max_weight(values: np.ndarray, runs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B,) the Sid with the largest summed run length over each RLE context (B, l)."""
    return _weighted_mode(values, np.where(mask, runs, 0).astype(np.float64))
