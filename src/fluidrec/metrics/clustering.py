"""Agreement of a clustering with true classes: purity and normalised mutual information.

Args (both functions):
    labels_true: (n,) integer class of each item.
    labels_pred: (n,) integer cluster of each item (any ids; only equality matters).

- ``purity``: every cluster is credited with its most common true class;
  ``purity = sum_k max_c n_kc / n``. 1 when every cluster is pure. It never falls when a
  cluster is split, so n singleton clusters score 1: read it beside NMI.
- ``nmi``: ``I(true; pred) / ((H(true) + H(pred)) / 2)`` (natural log; the arithmetic mean
  of the entropies, sklearn's default ``normalized_mutual_info_score``). 1 when the two
  partitions are the same up to renaming, 0 when they are independent; splitting clusters
  lowers it (H(pred) grows). Both partitions a single group -> 1.0, as in sklearn.

Both return NaN for empty input.

Example:
    >>> purity(np.array([0, 0, 1, 1, 1]), np.array([5, 5, 5, 7, 7]))   # (2 + 2) / 5
    0.8
    >>> nmi(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))           # same partition, renamed
    1.0
"""

from __future__ import annotations

import numpy as np


def _contingency(labels_true: np.ndarray, labels_pred: np.ndarray) -> np.ndarray:
    """(C, K) counts of items per (true class, predicted cluster), dense over the values present."""
    t = np.asarray(labels_true).reshape(-1)  # (n,)
    p = np.asarray(labels_pred).reshape(-1)  # (n,)
    if len(t) != len(p):
        raise ValueError(f"labels_true has {len(t)} items, labels_pred {len(p)}")
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    c, k = (int(ti.max()) + 1, int(pi.max()) + 1) if len(t) else (0, 0)
    return np.bincount(ti.reshape(-1) * k + pi.reshape(-1), minlength=c * k).reshape(c, k)  # (n,) index pairs -> (C, K)


def purity(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Share of items in the majority true class of their cluster (see the module docstring)."""
    table = _contingency(labels_true, labels_pred)  # (C, K)
    n = table.sum()
    return float(table.max(axis=0).sum() / n) if n else float("nan")


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Normalised mutual information, arithmetic normalisation (see the module docstring)."""
    table = _contingency(labels_true, labels_pred).astype(np.float64)  # (C, K)
    n = table.sum()
    if not n:
        return float("nan")
    h_true, h_pred = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    if h_true == 0.0 and h_pred == 0.0:
        return 1.0  # one group on both sides: the partitions agree
    nz = table > 0
    outer = np.outer(table.sum(axis=1), table.sum(axis=0))  # (C, K) n_c * n_k
    mi = float((table[nz] / n * np.log(table[nz] * n / outer[nz])).sum())
    # MI can come out a hair below 0 (or above the mean entropy) by float rounding.
    return float(np.clip(mi / ((h_true + h_pred) / 2.0), 0.0, 1.0))


def prefix_labels(paths: np.ndarray, depth: int) -> np.ndarray:
    """One integer label per row for the prefix of its first ``depth`` columns.

    Args:
        paths: (n, L) integer codes or topic path.
        depth: 1..L.

    Example:
        >>> prefix_labels(np.array([[0, 1], [0, 2], [0, 1]]), 2).tolist()   # rows 0 and 2 share (0, 1)
        [0, 1, 0]
    """
    paths = np.asarray(paths)
    if paths.ndim != 2 or not 1 <= depth <= paths.shape[1]:
        raise ValueError(f"need (n, L) paths with 1 <= depth <= L, got shape {paths.shape} and depth {depth}")
    if len(paths) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(paths[:, :depth], axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)  # (n,)
