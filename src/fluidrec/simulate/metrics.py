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


# z(0.975) + z(0.80): a two-sided 5% test detects an effect of this many standard errors 80% of the time.
MDE_Z = 1.959964 + 0.841621


def _interval(delta: float, stats: np.ndarray, level: float) -> dict:
    """CI, significance, half-width, bootstrap standard error and minimum detectable effect of ``delta``."""
    stats = stats[np.isfinite(stats)]
    alpha = (1.0 - level) / 2.0
    low, high = (np.quantile(stats, [alpha, 1 - alpha]) if len(stats) else (float("nan"), float("nan")))
    se = float(np.std(stats, ddof=1)) if len(stats) > 1 else float("nan")
    return {
        "delta": delta,
        "ci_low": float(low),
        "ci_high": float(high),
        "significant": bool(low > 0 or high < 0),
        "half_width": float(high - low) / 2.0,
        "se": se,
        "mde": MDE_Z * se,
    }


def paired_bootstrap(treatment: np.ndarray, control: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Relative change of per-user totals with a paired bootstrap CI over users.

    Both arrays hold one value per user (the same users, the same order). Users are
    resampled with replacement; the statistic is sum(t)/sum(c) - 1 on each resample.

    Returns:
        dict with ``delta``, ``ci_low``, ``ci_high``, ``significant`` (CI excludes 0),
        ``half_width`` (of the CI), ``se`` (bootstrap sd) and ``mde`` (minimum detectable
        relative effect at 5% two-sided and 80% power: ``MDE_Z * se``).

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
    return _interval(relative_change(treatment, control), stats, level)


def unpaired_bootstrap(treatment: np.ndarray, control: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Relative change of per-user *means* between two disjoint groups of users.

    Each group is resampled with replacement on its own (the groups share no user, so
    nothing pairs them); the statistic is mean(t)/mean(c) - 1. Means, not sums: a hash
    split gives groups of unequal size. Same keys as ``paired_bootstrap``.

    Example:
        >>> unpaired_bootstrap(np.array([2., 2., 2.]), np.array([1., 1.]))["delta"]
        1.0
    """
    if len(treatment) == 0 or len(control) == 0:
        raise ValueError(f"both groups need users, got {len(treatment)} and {len(control)}")
    rng = np.random.default_rng(seed)
    t = treatment[rng.integers(0, len(treatment), size=(n_boot, len(treatment)))].mean(axis=1)
    c = control[rng.integers(0, len(control), size=(n_boot, len(control)))].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = np.where(c > 0, t / c - 1.0, np.nan)
    base = control.mean()
    delta = float(treatment.mean() / base - 1.0) if base > 0 else float("nan")
    return _interval(delta, stats, level)


def regression_adjust(values: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """CUPED: ``y - (x - mean(x)) @ theta`` with ``theta`` the pooled least-squares fit of y on x.

    ``values`` (n,) and ``covariates`` (n, k) cover the users of every arm together. The
    covariates must not depend on the arm (measured before the test, or exogenous like the
    number of requests a user makes), so the adjustment removes variance, not effect.

    Example:
        >>> x = np.array([[1.], [2.], [3.]]); regression_adjust(2 * x[:, 0] + 1, x)
        array([5., 5., 5.])
    """
    x = np.asarray(covariates, np.float64)
    xc = x - x.mean(axis=0)  # (n, k)
    y = np.asarray(values, np.float64)
    theta, *_ = np.linalg.lstsq(xc, y - y.mean(), rcond=None)  # (k,)
    return y - xc @ theta
