"""Exact-match lookup of keys in a sorted array.

The one home of the ``np.clip(np.searchsorted(...))`` idiom: find each query in a sorted key
array, clip the insertion point into range (so it can index the array) and say which queries
were found.

Example:
    >>> pos, found = sorted_lookup(np.array([2, 5, 9]), np.array([5, 7, 9]))
    >>> pos, found
    (array([1, 2, 2]), array([ True, False,  True]))
"""

from __future__ import annotations

import numpy as np


def sorted_lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``queries`` in ``sorted_keys`` and which of them are there.

    Args:
        sorted_keys: (M,) keys in ascending order.
        queries: (N,) keys to find.

    Returns:
        ``(pos, found)``: pos (N,) int index into ``sorted_keys`` (the insertion point clipped to
        [0, M - 1]; meaningful only where found; 0 everywhere when M == 0), found (N,) bool,
        ``sorted_keys[pos] == queries``.
    """
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), dtype=np.intp), np.zeros(len(queries), dtype=bool)
    pos = np.clip(np.searchsorted(sorted_keys, queries), 0, len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == queries
