"""ROC AUC via the Mann-Whitney rank statistic (ties get average ranks).

Args (all functions):
    labels: (n,) 0/1 array.
    scores: (n,) float array; higher means more likely positive.

Returns NaN when only one class is present (AUC is undefined there).

Example:
    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
"""

from __future__ import annotations

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Boundaries of runs of equal values in sorted order.
    new_run = np.r_[True, xs[1:] != xs[:-1]]
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC in O(n log n): (sum of positive ranks - n_pos(n_pos+1)/2) / (n_pos n_neg)."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc_reference(labels: np.ndarray, scores: np.ndarray) -> float:
    """Plain O(n_pos * n_neg) definition: P(score_pos > score_neg) + 0.5 P(tie)."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    total = 0.0
    for p in pos:
        total += float((p > neg).sum()) + 0.5 * float((p == neg).sum())
    return total / (len(pos) * len(neg))
