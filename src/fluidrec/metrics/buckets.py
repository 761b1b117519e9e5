"""Cold-start buckets: room age at impression and new vs seen rooms.

Room age buckets follow the paper's concern (median room life ~40 min): under 10
minutes, 10 to 30, and 30 or more. A room is "seen" when it appeared in training.

Example:
    >>> m = bucket_masks(np.array([5.0, 12.0, 45.0]), np.array([False, True, True]))
    >>> {k: v.tolist() for k, v in m.items()}["age_10_30"]
    [False, True, False]
"""

from __future__ import annotations

import numpy as np

# name -> [low, high) room age in minutes
AGE_BUCKETS: dict[str, tuple[float, float]] = {
    "age_lt10": (0.0, 10.0),
    "age_10_30": (10.0, 30.0),
    "age_ge30": (30.0, float("inf")),
}
BUCKET_NAMES = (*AGE_BUCKETS, "new_room", "seen_room")


def bucket_masks(age_min: np.ndarray, seen: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean row masks per bucket.

    Args:
        age_min: (n,) room age at impression in minutes (negative ages count as < 10).
        seen: (n,) bool, the impression's room appeared in the training period.

    Returns:
        dict keyed by ``BUCKET_NAMES``.
    """
    age = np.asarray(age_min, dtype=np.float64)
    seen = np.asarray(seen, dtype=bool)
    out = {}
    for name, (lo, hi) in AGE_BUCKETS.items():
        low_ok = age >= lo if lo > 0 else np.ones_like(age, dtype=bool)
        out[name] = low_ok & (age < hi)
    out["new_room"] = ~seen
    out["seen_room"] = seen
    return out
