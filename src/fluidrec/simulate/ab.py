"""A simulated online A/B test: every arm ranks the rooms live at each held-out
request, and the world's ground-truth model produces the clicks and watch time.

All arms see the same requests, the same candidate rooms and the same random
draws (common random numbers), so differences come from the ranking alone.

Metrics (per user, summed, then relative change vs the control arm):
- ``quality_watch_duration``: seconds of watches lasting at least ``quality_watch_s``.
- ``quality_watch_sessions``: number of such watches.
- ``cold_start_room_views``: views (clicks) of rooms younger than ``cold_minutes``.
- ``niche_room_views``: views of rooms whose author is in the least-exposed
  ``niche_share`` of authors in the training log.
- ``unique_watched_tags``: distinct level-2 topics among a user's views.
- ``stay_duration``: all seconds watched.

Example:
    >>> result = run_ab(world, requests, {"baseline": f0, "fluid": f1}, context, ABConfig())
    >>> result["arms"]["fluid"]["quality_watch_duration"]["delta"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
from tqdm.auto import tqdm

from fluidrec.errors import check
from fluidrec.simulate.metrics import paired_bootstrap, per_user_sums, per_user_unique

METRICS = (
    "quality_watch_duration",
    "quality_watch_sessions",
    "cold_start_room_views",
    "niche_room_views",
    "unique_watched_tags",
    "stay_duration",
)
# The expectation of quality_watch_duration given the slates shown (the world's own formula,
# ``World.expected_quality_watch``): reported where the world can compute it.
EXPECTED_QWD = "expected_quality_watch_duration"
MINUTE_MS = 60_000


@dataclasses.dataclass(frozen=True)
class OutcomeConfig:
    """What both A/B modes share: the slate, the metric definitions and the bootstrap.

    Args:
        max_candidates: live rooms scored per request (a seeded uniform sample when more are live).
        slate: rooms shown per request (positions 0..slate-1 in score order).
        quality_watch_s: a watch at least this long counts as a quality watch.
        cold_minutes: rooms younger than this are cold-start rooms.
        niche_share: share of authors, least exposed in training, that count as niche.
        n_boot: bootstrap resamples over users.
        seed: seeds request sampling, candidate sampling and outcome draws.
    """

    max_candidates: int = 50
    slate: int = 6
    quality_watch_s: float = 60.0
    cold_minutes: float = 10.0
    niche_share: float = 0.5
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.slate > 0 and self.max_candidates >= self.slate, f"need 0 < slate <= max_candidates, got {self.slate}, {self.max_candidates}")
        check(self.quality_watch_s >= 0 and self.cold_minutes > 0, "quality_watch_s >= 0 and cold_minutes > 0 required")
        check(0 < self.niche_share < 1, f"niche_share must be in (0, 1), got {self.niche_share}")
        check(self.n_boot >= 100, f"n_boot must be >= 100, got {self.n_boot}")


@dataclasses.dataclass(frozen=True)
class ABConfig(OutcomeConfig):
    """Settings of the replay A/B test (``OutcomeConfig`` plus the number of requests replayed).

    Args:
        n_requests: held-out requests replayed (sampled from the test period).
    """

    n_requests: int = 20_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n_requests > 0, f"n_requests must be > 0, got {self.n_requests}")


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Flat arrays, one entry per (request, candidate room); C = total candidates."""

    request: np.ndarray  # (C,) index into the request list
    user_id: np.ndarray  # (C,)
    room_id: np.ndarray  # (C,)
    slice_id: np.ndarray  # (C,) slice on air at ts
    ts: np.ndarray  # (C,) request time, ms

    def __len__(self) -> int:
        return len(self.request)

    def take(self, rows: np.ndarray) -> Candidates:
        """The candidates at ``rows`` (an index array), in that order."""
        return Candidates(self.request[rows], self.user_id[rows], self.room_id[rows], self.slice_id[rows], self.ts[rows])


@dataclasses.dataclass(frozen=True)
class WorldContext:
    """What the metrics need to know about rooms, authors and slices.

    Args:
        room_ids / room_start / room_author: rooms table columns.
        niche_authors: author ids that count as niche.
        slice_ids / slice_tag: slice id -> level-2 topic (or any tag id).
    """

    room_ids: np.ndarray
    room_start: np.ndarray
    room_author: np.ndarray
    niche_authors: np.ndarray
    slice_ids: np.ndarray
    slice_tag: np.ndarray

    def _room_index(self, room_id: np.ndarray) -> np.ndarray:
        order = np.argsort(self.room_ids)
        return order[np.searchsorted(self.room_ids[order], room_id)]

    def room_age_ms(self, room_id: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return ts - self.room_start[self._room_index(room_id)]

    def is_niche(self, room_id: np.ndarray) -> np.ndarray:
        return np.isin(self.room_author[self._room_index(room_id)], self.niche_authors)

    def tag(self, slice_id: np.ndarray) -> np.ndarray:
        order = np.argsort(self.slice_ids)
        return self.slice_tag[order[np.searchsorted(self.slice_ids[order], slice_id)]]


# an arm as the A/B test sees it: candidates -> one score per candidate (higher is shown first)
ScoreFn = Callable[[Candidates], np.ndarray]


def build_candidates(world, user_ids: np.ndarray, ts: np.ndarray, max_candidates: int, rng: np.random.Generator) -> Candidates:
    """The rooms live at each request (a uniform sample of ``max_candidates`` when more are live)."""
    req, users, rooms, times = [], [], [], []
    for i, (u, t) in enumerate(zip(user_ids, ts)):
        live = np.asarray(world.live_rooms(int(t)))
        if len(live) == 0:
            continue
        if len(live) > max_candidates:
            live = rng.choice(live, size=max_candidates, replace=False)
        req.append(np.full(len(live), i))
        users.append(np.full(len(live), u))
        rooms.append(live)
        times.append(np.full(len(live), t))
    if not req:
        raise ValueError("no live rooms at any of the requests")
    request = np.concatenate(req)
    room = np.concatenate(rooms).astype(np.int64)
    when = np.concatenate(times).astype(np.int64)
    return Candidates(request, np.concatenate(users).astype(np.int64), room, np.asarray(world.slice_on_air(room, when), np.int64), when)


def rank_slates(scores: np.ndarray, request: np.ndarray, slate: int) -> np.ndarray:
    """Position of each candidate in its request's slate by descending score; -1 if not shown.

    Ties break by candidate order, so the result is deterministic.
    """
    order = np.lexsort((np.arange(len(scores)), -scores, request))  # by request, then score desc
    sorted_req = request[order]
    starts = np.flatnonzero(np.r_[True, sorted_req[1:] != sorted_req[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.arange(len(order)) - run_start
    position = np.full(len(scores), -1, np.int64)
    shown = rank < slate
    position[order[shown]] = rank[shown]
    return position


def candidate_facts(cands: Candidates, context: WorldContext, cold_minutes: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cold, niche, tag) per candidate: the facts the metrics count, whatever an arm shows."""
    age_min = context.room_age_ms(cands.room_id, cands.ts) / MINUTE_MS
    return age_min < cold_minutes, context.is_niche(cands.room_id), context.tag(cands.slice_id)


def user_metrics(
    user_index: np.ndarray, n_users: int, click: np.ndarray, watch: np.ndarray, cold: np.ndarray, niche: np.ndarray,
    tags: np.ndarray, quality_watch_s: float, expected_qwd: np.ndarray | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Every A/B metric per user, (n_users,) each, from one row per candidate (unshown rows: no click).

    ``expected_qwd`` (one value per row, 0 where not shown) adds ``EXPECTED_QWD``.
    """
    quality = click & (watch >= quality_watch_s)
    extra = {} if expected_qwd is None else {EXPECTED_QWD: per_user_sums(user_index, expected_qwd, n_users)}
    return {
        "quality_watch_duration": per_user_sums(user_index, np.where(quality, watch, 0.0), n_users),
        "quality_watch_sessions": per_user_sums(user_index, quality.astype(float), n_users),
        "cold_start_room_views": per_user_sums(user_index, (click & cold).astype(float), n_users),
        "niche_room_views": per_user_sums(user_index, (click & niche).astype(float), n_users),
        "unique_watched_tags": per_user_unique(user_index[click], tags[click], n_users),
        "stay_duration": per_user_sums(user_index, watch, n_users),
        **extra,
    }


def run_ab(
    world,
    requests: tuple[np.ndarray, np.ndarray],
    scorers: Mapping[str, ScoreFn],
    context: WorldContext,
    cfg: ABConfig,
    control: str = "baseline",
    progress: bool = True,
) -> dict:
    """Replay held-out requests under every arm and compare each arm with ``control``.

    Args:
        world: the ground truth (``fluidrec.data.world.World``).
        requests: (user_ids, ts) of the held-out requests to replay.
        scorers: arm name -> function scoring a ``Candidates`` set (higher = shown first).
        context: room/author/slice facts for the metrics.
        cfg: settings.
        control: the arm every other arm is compared with.

    Returns:
        ``{"config", "n_requests", "n_users", "totals": {arm: {metric: total}},
        "arms": {arm: {metric: {delta, ci_low, ci_high, significant}}}}``.
    """
    if control not in scorers:
        raise ValueError(f"control arm {control!r} has no scorer")
    rng = np.random.default_rng(cfg.seed)
    user_ids, ts = requests
    cands = build_candidates(world, user_ids, ts, cfg.max_candidates, rng)
    # Arm-independent draws: a uniform per candidate decides the click, and the watch
    # time a click would give is fixed in advance, so arms differ only in what they show.
    u_click = rng.random(len(cands))
    watch_if_click = np.asarray(world.watch_seconds(cands.user_id, cands.room_id, cands.ts, np.random.default_rng(cfg.seed + 1)), float)
    users, user_index = np.unique(cands.user_id, return_inverse=True)
    cold, niche, tags = candidate_facts(cands, context, cfg.cold_minutes)

    per_user: dict[str, dict[str, np.ndarray]] = {}
    for arm, scorer in tqdm(scorers.items(), desc="A/B arms", disable=not progress):
        scores = np.asarray(scorer(cands), float)
        position = rank_slates(scores, cands.request, cfg.slate)
        shown = position >= 0
        p = np.zeros(len(cands))
        p[shown] = world.click_prob(cands.user_id[shown], cands.room_id[shown], cands.ts[shown], position[shown])
        click = shown & (u_click < p)
        watch = np.where(click, watch_if_click, 0.0)
        expected = None
        if hasattr(world, "expected_quality_watch"):
            expected = np.zeros(len(cands))
            expected[shown] = world.expected_quality_watch(cands.user_id[shown], cands.room_id[shown], cands.ts[shown], position[shown], cfg.quality_watch_s)
        per_user[arm] = user_metrics(user_index, len(users), click, watch, cold, niche, tags, cfg.quality_watch_s, expected)
    arms = {
        arm: {m: paired_bootstrap(per_user[arm][m], per_user[control][m], n_boot=cfg.n_boot, seed=cfg.seed) for m in per_user[arm]}
        for arm in scorers
        if arm != control
    }
    totals = {arm: {m: float(v.sum()) for m, v in d.items()} for arm, d in per_user.items()}
    return {
        "config": dataclasses.asdict(cfg),
        "n_requests": int(len(np.unique(cands.request))),
        "n_candidates": int(len(cands)),
        "n_users": int(len(users)),
        "totals": totals,
        "arms": arms,
    }
