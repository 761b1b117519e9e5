"""The closed-loop simulated A/B test: over the test period, in event time, each arm ranks
the rooms live at its users' requests, the world's ground truth answers, and the arm keeps
training online on the impressions it served (and only on those), as arms in a production
A/B do.

Time runs in windows of ``window_minutes``: every arm scores its requests of a window with
the model as it was when the window opened, then trains on what it served there and adds
its users' clicks to their histories (a production ranker's online-training and feature
pipelines also lag by minutes). The world's click and watch model does not depend on what a
user saw before (docs/world.md), so the feedback an arm causes runs through its own model:
its weights, its users' histories and its rooms' exposure counts.

Assignments:
- ``user`` (the production design): users are split between arms by a seeded hash of the
  user id, so arms get disjoint users; per-user means are compared between groups, with
  CUPED regression adjustment on covariates that no arm can move.
- ``mirror``: every arm serves every user in its own copy of the world (a simulator can),
  so users pair across arms and common random numbers cancel most of the noise.

Common random numbers: the candidate rooms of a request, and the uniforms that decide a
(request, room)'s click, watch time and engagement labels, are drawn once for all arms.

Example:
    >>> res = run_closed_loop(world, (users, ts), {"baseline": a0, "fluid": a1, "oracle": OracleArm(world)},
    ...                       context, ClosedLoopConfig())
    >>> res["arms"]["fluid"]["quality_watch_duration"]["half_width"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from fluidrec.errors import check
from fluidrec.simulate.ab import MINUTE_MS, Candidates, OutcomeConfig, WorldContext, build_candidates, candidate_facts, rank_slates, user_metrics
from fluidrec.simulate.metrics import paired_bootstrap, regression_adjust, unpaired_bootstrap

ASSIGNMENTS = ("user", "mirror")
N_DRAWS = 5  # uniforms per (request, room): click, watch, like, follow, gift


@dataclasses.dataclass(frozen=True)
class ClosedLoopConfig(OutcomeConfig):
    """Settings of the closed-loop A/B test (``OutcomeConfig`` plus the loop's own).

    Args:
        window_minutes: how often arms train on what they served and update user state.
        assignment: ``user`` (hash split, disjoint users) or ``mirror`` (every arm serves everyone).
    """

    window_minutes: float = 10.0
    assignment: str = "user"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.window_minutes > 0, f"window_minutes must be > 0, got {self.window_minutes}")
        check(self.assignment in ASSIGNMENTS, f"assignment must be one of {ASSIGNMENTS}, got {self.assignment!r}")


@dataclasses.dataclass(frozen=True)
class Served:
    """The impressions an arm showed in one window and what the world answered."""

    cands: Candidates  # (n,) the shown candidates, in request order
    position: np.ndarray  # (n,) slate position
    labels: dict[str, np.ndarray]  # click, long_view, like, follow, gift (int8), watch_s (float32)


class OnlineArm(Protocol):
    """An arm of the closed loop: scores candidates, then learns from what it served."""

    def score(self, cands: Candidates) -> np.ndarray: ...

    def learn(self, served: Served) -> None: ...


class OracleArm:
    """Upper bound: ranks by the world's true click probability (at the top position)."""

    def __init__(self, world) -> None:
        self.world = world

    def score(self, cands: Candidates) -> np.ndarray:
        return self.world.click_prob(cands.user_id, cands.room_id, cands.ts, 0)

    def learn(self, served: Served) -> None:
        pass


class RandomArm:
    """Lower bound: a seeded random order (a hash of request time, user and room)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def score(self, cands: Candidates) -> np.ndarray:
        from fluidrec.codes.ngram import hash_ids

        key = (cands.ts * 1_000_003 + cands.user_id) * 1_000_033 + cands.room_id + self.seed * 7_919
        return hash_ids(key, 1 << 30).astype(np.float64)

    def learn(self, served: Served) -> None:
        pass


def assign_users(user_ids: np.ndarray, n_arms: int, seed: int) -> np.ndarray:
    """Arm index of each user: a seeded hash of the user id mod ``n_arms`` (stable, disjoint)."""
    from fluidrec.codes.ngram import hash_ids

    return hash_ids(np.asarray(user_ids, np.int64) * 31 + seed, n_arms)


def window_rows(ts: np.ndarray, window_minutes: float) -> list[np.ndarray]:
    """Candidate rows of each time window, in time order (empty windows dropped)."""
    w = (ts - ts.min()) // int(window_minutes * MINUTE_MS)
    order = np.argsort(w, kind="stable")
    cuts = np.flatnonzero(np.diff(w[order])) + 1
    return np.split(order, cuts)


@dataclasses.dataclass
class ArmLog:
    """What one arm showed and what its users did, one entry per candidate row of the run."""

    click: np.ndarray  # (C,) bool
    watch: np.ndarray  # (C,) float seconds
    served: np.ndarray  # (C,) bool: the row's request was this arm's
    expected_qwd: np.ndarray  # (C,) float: E[quality watch seconds] of the rows shown
    qwd_by_window: list[float] = dataclasses.field(default_factory=list)

    @classmethod
    def empty(cls, n: int) -> ArmLog:
        return cls(np.zeros(n, bool), np.zeros(n), np.zeros(n, bool), np.zeros(n))


def serve_window(world, arm: OnlineArm, cands: Candidates, rows: np.ndarray, draws: np.ndarray, cfg: ClosedLoopConfig, log: ArmLog) -> None:
    """One arm, one window: score ``rows``, show the slates, draw the outcomes, learn from them."""
    sub = cands.take(rows)
    position = rank_slates(np.asarray(arm.score(sub), np.float64), sub.request, cfg.slate)
    shown = position >= 0
    rows_shown, pos_shown = rows[shown], position[shown]
    shown_cands = cands.take(rows_shown)
    labels = world.labels_from_uniforms(shown_cands.user_id, shown_cands.room_id, shown_cands.ts, pos_shown, draws[rows_shown])
    log.served[rows] = True
    log.click[rows_shown] = labels["click"].astype(bool)
    log.watch[rows_shown] = labels["watch_s"]
    log.expected_qwd[rows_shown] = world.expected_quality_watch(shown_cands.user_id, shown_cands.room_id, shown_cands.ts, pos_shown, cfg.quality_watch_s)
    quality = log.click[rows_shown] & (log.watch[rows_shown] >= cfg.quality_watch_s)
    log.qwd_by_window.append(float(np.where(quality, log.watch[rows_shown], 0.0).sum()))
    arm.learn(Served(shown_cands, pos_shown, labels))


def run_closed_loop(
    world,
    requests: tuple[np.ndarray, np.ndarray],
    arms: Mapping[str, OnlineArm],
    context: WorldContext,
    cfg: ClosedLoopConfig,
    control: str = "baseline",
    covariates: np.ndarray | None = None,
    progress: bool = True,
) -> dict:
    """Run every arm over the requests in event time and compare each with ``control``.

    Args:
        world: the ground truth (``fluidrec.data.world.World``).
        requests: (user_ids, ts) of the requests of the test period (any order).
        arms: arm name -> ``OnlineArm`` (bounds: ``OracleArm``, ``RandomArm``).
        context: room/author/slice facts for the metrics.
        cfg: settings (``cfg.assignment`` picks the split).
        covariates: (U, k) per-user covariates no arm can move, rows in ``np.unique(user_ids)``
            order, for CUPED under the ``user`` assignment (None: unadjusted).

    Returns:
        ``{"config", "n_requests", "n_users", "users_per_arm", "totals", "timeline",
        "arms": {arm: {metric: {delta, ci_low, ci_high, significant, half_width, se, mde}}}}``.
    """
    check(control in arms, f"control arm {control!r} is not among the arms {sorted(arms)}")
    rng = np.random.default_rng(cfg.seed)
    user_ids, ts = (np.asarray(a, np.int64) for a in requests)
    order = np.argsort(ts, kind="stable")
    cands = build_candidates(world, user_ids[order], ts[order], cfg.max_candidates, rng)
    draws = rng.random((len(cands), N_DRAWS))  # (C, 5), shared by every arm
    users, user_index = np.unique(cands.user_id, return_inverse=True)
    names = list(arms)
    home = assign_users(users, len(names), cfg.seed) if cfg.assignment == "user" else None
    logs = {name: ArmLog.empty(len(cands)) for name in names}
    windows = window_rows(cands.ts, cfg.window_minutes)
    for rows in tqdm(windows, desc="closed-loop A/B", unit="window", disable=not progress):
        for a, name in enumerate(names):
            mine = rows if home is None else rows[home[user_index[rows]] == a]
            if len(mine):
                serve_window(world, arms[name], cands, mine, draws, cfg, logs[name])
            else:
                logs[name].qwd_by_window.append(0.0)
    facts = candidate_facts(cands, context, cfg.cold_minutes)  # once: they do not depend on the arm
    per_user = {name: arm_user_metrics(logs[name], facts, user_index, len(users), cfg) for name in names}
    members = {name: (np.ones(len(users), bool) if home is None else home == a) for a, name in enumerate(names)}
    return {
        "config": dataclasses.asdict(cfg),
        "n_requests": int(len(np.unique(cands.request))),
        "n_candidates": int(len(cands)),
        "n_users": int(len(users)),
        "users_per_arm": {name: int(m.sum()) for name, m in members.items()},
        "totals": {name: {m: float(v[members[name]].sum()) for m, v in d.items()} for name, d in per_user.items()},
        "timeline": timeline(logs, members, windows, cands.ts),
        "arms": compare_arms(per_user, members, control, cfg, covariates),
    }


def arm_user_metrics(log: ArmLog, facts: tuple[np.ndarray, np.ndarray, np.ndarray], user_index: np.ndarray, n_users: int, cfg: OutcomeConfig) -> dict:
    """Every A/B metric per user from one arm's log and the candidates' (cold, niche, tag); unserved users get zeros."""
    cold, niche, tags = facts
    return user_metrics(user_index, n_users, log.click, log.watch, cold, niche, tags, cfg.quality_watch_s, log.expected_qwd)


def timeline(logs: dict[str, ArmLog], members: dict[str, np.ndarray], windows: list[np.ndarray], ts: np.ndarray) -> dict:
    """Cumulative quality watch seconds per user of each arm at the end of every window."""
    ends = [int(ts[rows].max()) for rows in windows]
    return {
        "window_end_ts": ends,
        "qwd_per_user": {name: (np.cumsum(log.qwd_by_window) / max(int(members[name].sum()), 1)).tolist() for name, log in logs.items()},
    }


def compare_arms(per_user: dict, members: dict, control: str, cfg: ClosedLoopConfig, covariates: np.ndarray | None) -> dict:
    """Each arm vs ``control`` on every metric: paired (mirror) or between groups (user split, CUPED)."""
    out: dict[str, dict] = {}
    for name in per_user:
        if name == control:
            continue
        out[name] = {}
        for m in per_user[name]:
            t, c = per_user[name][m], per_user[control][m]
            if cfg.assignment == "mirror":
                out[name][m] = paired_bootstrap(t, c, n_boot=cfg.n_boot, seed=cfg.seed)
                continue
            raw = unpaired_bootstrap(t[members[name]], c[members[control]], n_boot=cfg.n_boot, seed=cfg.seed)
            if covariates is None:
                out[name][m] = raw
                continue
            y = adjusted(per_user, members, m, covariates)
            res = unpaired_bootstrap(y[members[name]], y[members[control]], n_boot=cfg.n_boot, seed=cfg.seed)
            out[name][m] = {**res, "adjusted": True, "unadjusted": raw}
    return out


def adjusted(per_user: dict, members: dict, metric: str, covariates: np.ndarray) -> np.ndarray:
    """One metric per user, read from each user's own arm, CUPED-adjusted over all users at once."""
    y = np.zeros(len(covariates))
    for name, m in members.items():
        y[m] = per_user[name][metric][m]
    return regression_adjust(y, covariates)
