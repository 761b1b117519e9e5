"""Causal hand-made features for the peer arms (``lr``, ``gbdt``), from ``Features`` arrays.

Causality rule: every statistic of impression i counts only impressions j with
``ts[j] < ts[i]`` (strictly). Impressions with equal ts (the positions of one request)
never see each other's labels. Statistics run online over the whole stream, test days
included, exactly like the user history the neural arms read (``Features.hist_rows``);
only the model weights are frozen after training.

Features (F columns, in this order):
    pos_0 .. pos_{P-2}, pos_{P-1}+   position one-hot (positions >= P-1 share the last slot)
    author_ctr, author_log_imps      smoothed click rate of the room's author, log1p(impressions)
    user_ctr, user_log_imps, user_log_clicks
    user_l1_share, user_l12_share    share of the user's earlier clicks on the candidate slice's
                                     level-1 code / level-1+2 prefix, smoothed toward the
                                     share of all earlier clicks (every user) on that code
    hour, hour_sin, hour_cos         hour of day (UTC)
    log_age, log_exposure            log1p room age in minutes, log1p earlier impressions of the room

Smoothing: ``(k + m * prior) / (n + m)``. CTRs: m = ``prior_strength`` pseudo-impressions,
prior = the global click rate of earlier impressions, Laplace-smoothed ``(C + 1) / (N + 2)``.
Shares: m = ``share_prior_strength`` pseudo-clicks, prior = ``(clicks on the code + 1) /
(all clicks + V)`` over earlier clicks of every user, V = codebook size (its square for the
two-level prefix). Labels used: click only (for every task's model).

Shape letters: N impressions, F features, L code levels.

Example:
    >>> x, names = peer_features(feats)          # x: (N, F) float32
    >>> names[:3]
    ('pos_0', 'pos_1', 'pos_2')
"""

from __future__ import annotations

import numpy as np

from fluidrec.errors import check
from fluidrec.ranker.features import Features


def feature_names(position_slots: int = 8) -> tuple[str, ...]:
    """Column names of ``peer_features`` for ``position_slots`` position columns."""
    pos = tuple(f"pos_{p}" for p in range(position_slots - 1)) + (f"pos_{position_slots - 1}+",)
    return pos + (
        "author_ctr", "author_log_imps", "user_ctr", "user_log_imps", "user_log_clicks",
        "user_l1_share", "user_l12_share", "hour", "hour_sin", "hour_cos", "log_age", "log_exposure",
    )  # fmt: skip


def causal_sums(keys: list[np.ndarray], ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(N, V) sums of ``values`` (N, V) over rows with the same keys and strictly smaller ts.

    Vectorised: sort by (keys..., ts); within a key group, the rows before row i's run of
    equal ts are exactly the earlier ones, so the answer is a difference of cumulative sums
    taken at the start of i's run and at the start of its group. ``keys=[]``: one group.
    """
    n = len(ts)
    order = np.lexsort((ts, *keys[::-1]))  # primary key first, ts last; stable
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    for k in keys:
        ks = k[order]
        new_group[1:] |= ks[1:] != ks[:-1]
    t = ts[order]
    new_run = new_group.copy()
    new_run[1:] |= t[1:] != t[:-1]
    idx = np.arange(n)
    first_of_run = np.maximum.accumulate(np.where(new_run, idx, 0))
    first_of_group = np.maximum.accumulate(np.where(new_group, idx, 0))
    cum = np.zeros((n + 1, values.shape[1]), dtype=np.int64)
    np.cumsum(values[order], axis=0, out=cum[1:])  # cum[j] = sum over sorted rows [0, j)
    out = np.empty((n, values.shape[1]), dtype=np.int64)
    out[order] = cum[first_of_run] - cum[first_of_group]
    return out


def _smooth(k: np.ndarray, n: np.ndarray, prior: np.ndarray, m: float) -> np.ndarray:
    return (k + m * prior) / (n + m)


def peer_features(
    feats: Features, *, prior_strength: float = 20.0, share_prior_strength: float = 2.0, position_slots: int = 8
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The peer arms' causal feature matrix of every impression.

    Args:
        feats: per-impression arrays (``fluidrec.ranker.features.build_features``).
        prior_strength: pseudo-impressions of the CTR smoothing prior.
        share_prior_strength: pseudo-clicks of the code-share smoothing prior.
        position_slots: P, columns of the position one-hot.

    Returns:
        ``(x, names)``: x (N, F) float32 in ``feature_names(P)`` order.
    """
    check(prior_strength > 0, f"prior_strength must be > 0, got {prior_strength}")
    check(share_prior_strength > 0, f"share_prior_strength must be > 0, got {share_prior_strength}")
    check(position_slots >= 1, f"position_slots must be >= 1, got {position_slots}")
    ts = feats.ts
    click = feats.labels[:, 0].astype(np.int64)
    imp_click = np.stack([np.ones_like(click), click], axis=1)  # (N, 2)
    c1, c2 = feats.slice_codes[:, 0], feats.slice_codes[:, min(1, feats.levels - 1)]
    v = float(feats.num_codes)
    glob = causal_sums([], ts, imp_click)  # (N, 2) all earlier impressions, clicks
    author = causal_sums([feats.author], ts, imp_click)
    user = causal_sums([feats.user_id], ts, imp_click)
    user_c1 = causal_sums([feats.user_id, c1], ts, click[:, None])[:, 0]
    user_c12 = causal_sums([feats.user_id, c1, c2], ts, click[:, None])[:, 0]
    all_c1 = causal_sums([c1], ts, click[:, None])[:, 0]
    all_c12 = causal_sums([c1, c2], ts, click[:, None])[:, 0]
    ctr_prior = (glob[:, 1] + 1.0) / (glob[:, 0] + 2.0)
    m, ms = prior_strength, share_prior_strength

    n = len(feats)
    x = np.zeros((n, position_slots + 12), dtype=np.float64)  # (N, F)
    x[np.arange(n), np.minimum(feats.position.astype(np.int64), position_slots - 1)] = 1.0
    hour = feats.hour.astype(np.float64)
    cols = (
        _smooth(author[:, 1], author[:, 0], ctr_prior, m),
        np.log1p(author[:, 0]),
        _smooth(user[:, 1], user[:, 0], ctr_prior, m),
        np.log1p(user[:, 0]),
        np.log1p(user[:, 1]),
        _smooth(user_c1, user[:, 1], (all_c1 + 1.0) / (glob[:, 1] + v), ms),
        _smooth(user_c12, user[:, 1], (all_c12 + 1.0) / (glob[:, 1] + v * v), ms),
        hour,
        np.sin(2 * np.pi * hour / 24),
        np.cos(2 * np.pi * hour / 24),
        np.log1p(np.maximum(feats.age_min.astype(np.float64), 0.0)),
        np.log1p(feats.exposure.astype(np.float64)),
    )
    for j, col in enumerate(cols):
        x[:, position_slots + j] = col
    return x.astype(np.float32), feature_names(position_slots)


def peer_features_reference(
    feats: Features, *, prior_strength: float = 20.0, share_prior_strength: float = 2.0, position_slots: int = 8
) -> np.ndarray:
    """Plain O(N^2) loop version of ``peer_features`` (for tests on a few hundred rows)."""
    n, m, ms, v = len(feats), prior_strength, share_prior_strength, float(feats.num_codes)
    lv2 = min(1, feats.levels - 1)
    out = np.zeros((n, position_slots + 12), dtype=np.float64)
    for i in range(n):
        g_n = g_c = a_n = a_c = u_n = u_c = u1 = u12 = all1 = all12 = 0
        for j in range(n):
            if feats.ts[j] >= feats.ts[i]:
                continue  # strictly earlier only: ties do not see each other
            y = int(feats.labels[j, 0])
            same1 = feats.slice_codes[j, 0] == feats.slice_codes[i, 0]
            same12 = same1 and feats.slice_codes[j, lv2] == feats.slice_codes[i, lv2]
            g_n, g_c = g_n + 1, g_c + y
            all1, all12 = all1 + y * same1, all12 + y * same12
            if feats.author[j] == feats.author[i]:
                a_n, a_c = a_n + 1, a_c + y
            if feats.user_id[j] == feats.user_id[i]:
                u_n, u_c = u_n + 1, u_c + y
                u1, u12 = u1 + y * same1, u12 + y * same12
        prior = (g_c + 1) / (g_n + 2)
        hour = float(feats.hour[i])
        out[i, min(int(feats.position[i]), position_slots - 1)] = 1.0
        out[i, position_slots:] = [
            (a_c + m * prior) / (a_n + m), np.log1p(a_n),
            (u_c + m * prior) / (u_n + m), np.log1p(u_n), np.log1p(u_c),
            (u1 + ms * (all1 + 1) / (g_c + v)) / (u_c + ms),
            (u12 + ms * (all12 + 1) / (g_c + v * v)) / (u_c + ms),
            hour, np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
            np.log1p(max(float(feats.age_min[i]), 0.0)), np.log1p(float(feats.exposure[i])),
        ]  # fmt: skip
    return out.astype(np.float32)
