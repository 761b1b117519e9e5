"""Online A/B metrics: per-user totals and paired bootstrap relative changes.

Pure numpy functions, tested on hand-checkable examples.
"""

from __future__ import annotations

import numpy as np


def per_user_sums(user_index: np.ndarray, values: np.ndarray, n_users: int) -> np.ndarray:
    """Sum ``values`` per user (``user_index`` in [0, n_users)). Returns (n_users,) float64."""
    return np.bincount(user_index, weights=values.astype(np.float64), minlength=n_users)


def per_user_unique(user_index: np.ndarray, keys: np.ndarray, n_users: int) -> np.ndarray:
    """Number of distinct ``keys`` per user. Returns (n_users,) float64."""
    if len(user_index) == 0:
        return np.zeros(n_users)
    pairs = np.unique(np.stack([user_index.astype(np.int64), keys.astype(np.int64)], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=n_users).astype(np.float64)


def relative_change(treatment: np.ndarray, control: np.ndarray) -> float:
    """sum(treatment) / sum(control) - 1 (nan when the control sums to zero)."""
    base = control.sum()
    return float(treatment.sum() / base - 1.0) if base > 0 else float("nan")


def paired_bootstrap(treatment: np.ndarray, control: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Relative change of per-user totals with a paired bootstrap CI over users.

    Both arrays hold one value per user (the same users, the same order). Users are
    resampled with replacement; the statistic is sum(t)/sum(c) - 1 on each resample.

    Returns:
        dict with ``delta``, ``ci_low``, ``ci_high`` and ``significant`` (CI excludes 0).

    Example:
        >>> paired_bootstrap(np.array([2., 2.]), np.array([1., 1.]))["delta"]
        1.0
    """
    if treatment.shape != control.shape:
        raise ValueError(f"treatment and control must align per user, got {treatment.shape} and {control.shape}")
    rng = np.random.default_rng(seed)
    n = len(control)
    idx = rng.integers(0, n, size=(n_boot, n))
    t = treatment[idx].sum(axis=1)
    c = control[idx].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = np.where(c > 0, t / c - 1.0, np.nan)
    stats = stats[np.isfinite(stats)]
    alpha = (1.0 - level) / 2.0
    low, high = (np.quantile(stats, [alpha, 1 - alpha]) if len(stats) else (float("nan"), float("nan")))
    return {
        "delta": relative_change(treatment, control),
        "ci_low": float(low),
        "ci_high": float(high),
        "significant": bool(low > 0 or high < 0),
    }
