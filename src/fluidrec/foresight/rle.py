"""Run-length compression of Sid sequences (paper 3.1.1: distinct Sids L' plus run lengths W).

Example:
    >>> values, runs = rle_encode(np.array([5, 5, 5, 2, 2, 5]))
    >>> values.tolist(), runs.tolist()
    ([5, 2, 5], [3, 2, 1])
    >>> rle_decode(values, runs).tolist()
    [5, 5, 5, 2, 2, 5]
"""

from __future__ import annotations

import numpy as np


def rle_encode(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, runs): each maximal run of equal consecutive Sids as one value and its length."""
    seq = np.asarray(seq, dtype=np.int64)
    if len(seq) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    runs = np.diff(np.r_[starts, len(seq)])
    return seq[starts], runs.astype(np.int64)


def rle_decode(values: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """The raw sequence back from ``rle_encode``'s output."""
    return np.repeat(np.asarray(values, dtype=np.int64), np.asarray(runs, dtype=np.int64))
