"""Group AUC: per-user AUC averaged with impression weights, single-class users skipped.

A user with only clicks or only non-clicks has no defined AUC, so they carry no weight;
the others weigh by their number of impressions (the usual industrial GAUC).

Example:
    >>> users = np.array([1, 1, 2, 2, 2, 3])
    >>> labels = np.array([0, 1, 1, 0, 0, 1])   # user 3 has one class: skipped
    >>> scores = np.array([.1, .9, .2, .5, .1, .7])
    >>> gauc(users, labels, scores)   # (2 * 1.0 + 3 * 0.5) / 5
    0.7
"""

from __future__ import annotations

import numpy as np


def gauc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Vectorised GAUC: one sort by (group, score), per-group tie-averaged rank sums.

    Args:
        groups: (n,) int group key (user id).
        labels: (n,) 0/1.
        scores: (n,) float.

    Returns:
        impression-weighted mean AUC over groups with both classes; NaN if none.
    """
    g = np.asarray(groups).ravel()
    y = np.asarray(labels).astype(np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(g) == 0:
        return float("nan")
    order = np.lexsort((s, g))
    g, y, s = g[order], y[order], s[order]
    n = len(g)
    group_start = np.r_[True, g[1:] != g[:-1]]
    gid = np.cumsum(group_start) - 1
    # Runs of equal (group, score) share the average within-group rank.
    run_start = group_start | np.r_[True, s[1:] != s[:-1]]
    rid = np.cumsum(run_start) - 1
    starts = np.flatnonzero(run_start)
    ends = np.r_[starts[1:], n]
    first_of_group = np.flatnonzero(group_start)
    run_group_first = first_of_group[gid[starts]]
    run_rank = (starts + ends + 1) / 2.0 - run_group_first  # 1-based within group
    ranks = run_rank[rid]
    n_groups = len(first_of_group)
    size = np.bincount(gid, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(gid, weights=y, minlength=n_groups)
    n_neg = size - n_pos
    pos_rank_sum = np.bincount(gid, weights=ranks * y, minlength=n_groups)
    valid = (n_pos > 0) & (n_neg > 0)
    if not valid.any():
        return float("nan")
    aucs = (pos_rank_sum[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2.0) / (n_pos[valid] * n_neg[valid])
    w = size[valid]
    return float((aucs * w).sum() / w.sum())


def gauc_reference(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Plain loop over groups with the pairwise AUC definition."""
    from fluidrec.metrics.auc import auc_reference

    g = np.asarray(groups).ravel()
    y = np.asarray(labels).ravel()
    s = np.asarray(scores).ravel()
    num = den = 0.0
    for key in np.unique(g):
        m = g == key
        yk = y[m]
        if yk.min() == yk.max():
            continue
        num += auc_reference(yk, s[m]) * m.sum()
        den += m.sum()
    return num / den if den else float("nan")
