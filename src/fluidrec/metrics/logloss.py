"""Binary cross-entropy of predicted probabilities (natural log, mean over rows)."""

from __future__ import annotations

import numpy as np


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary log loss; probabilities are clipped to [eps, 1 - eps].

    Args:
        labels: (n,) 0/1.
        probs: (n,) predicted P(label = 1).

    Example:
        >>> round(logloss(np.array([1, 0]), np.array([0.5, 0.5])), 4)
        0.6931
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1.0 - eps)
    if len(y) == 0:
        return float("nan")
    return float(-(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)).mean())
