"""Authors, users, rooms (sessions) and the topic chain of every room's slices.

Everything here is plain numpy arrays in dataclasses; text and frames are made later
(``content.py``) so the truth model never depends on them.

Example:
    >>> authors = make_authors(cfg, tax, rng)
    >>> rooms = make_rooms(cfg, authors, rng)          # sorted by start time
    >>> users = make_users(cfg, tax, rng)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fluidrec.data.world.config import WorldConfig
from fluidrec.data.world.taxonomy import Taxonomy

# Share of activity per UTC hour of day (assumption: a typical evening-peaked diurnal
# curve of a consumer video app; trough around 04:00, peak around 21:00).
DIURNAL = np.array(
    [0.030, 0.018, 0.010, 0.007, 0.006, 0.008, 0.015, 0.025, 0.035, 0.040, 0.042, 0.045,
     0.048, 0.046, 0.044, 0.045, 0.048, 0.052, 0.058, 0.065, 0.072, 0.075, 0.068, 0.048]
)
DIURNAL = DIURNAL / DIURNAL.sum()

# Profile categories (assumption): 6 age buckets, 2 genders, 10 regions, 4 activity quartiles.
N_AGE, N_GENDER, N_REGION, N_ACTIVITY = 6, 2, 10, 4
AGE_P = np.array([0.12, 0.26, 0.24, 0.18, 0.12, 0.08])
DAY_MS = 86_400_000


@dataclasses.dataclass
class Authors:
    """Per-author arrays (index = author_id)."""

    home_l1: np.ndarray  # (A,) int
    leaves: np.ndarray  # (A, T) home leaves
    mix: np.ndarray  # (A, T) home mix weights, rows sum to 1
    quality: np.ndarray  # (A,) float32, log-normal
    broadcast_prob: np.ndarray  # (A,) daily probability of going live
    start_hour: np.ndarray  # (A,) preferred start hour (float)

    def __len__(self) -> int:
        return len(self.quality)


@dataclasses.dataclass
class Rooms:
    """Per-room arrays (index = room_id, sorted by start) and the flat slice arrays."""

    author: np.ndarray  # (R,) int64
    start_ms: np.ndarray  # (R,) int64
    end_ms: np.ndarray  # (R,) int64
    first_slice: np.ndarray  # (R,) int64 slice_id of the room's first slice
    n_slices: np.ndarray  # (R,) int64
    slice_leaf: np.ndarray  # (n_live_slices,) leaf topic of each live slice

    def __len__(self) -> int:
        return len(self.author)


@dataclasses.dataclass
class Users:
    """Per-user arrays (index = user_id)."""

    age_bucket: np.ndarray
    gender: np.ndarray
    region: np.ndarray
    activity_level: np.ndarray
    activity: np.ndarray  # (U,) relative request rate
    affinity: np.ndarray  # (U, n_leaves) float32 content affinity, see ``affinity_matrix``
    bias: np.ndarray  # (U,) float32 click propensity

    def __len__(self) -> int:
        return len(self.activity)


def _sample_rows(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn from each row's cumulative distribution ``cum`` (N, T) with uniforms ``u`` (N,)."""
    return np.minimum((u[:, None] > cum).sum(axis=1), cum.shape[1] - 1)


def make_authors(cfg: WorldConfig, tax: Taxonomy, rng: np.random.Generator) -> Authors:
    """Home topic mixes (Dirichlet over a few leaves), quality, broadcast schedule."""
    a, t = cfg.n_authors, cfg.author_topics
    per_l1 = tax.n_leaves // tax.n_nodes[0]
    home_l1 = rng.integers(0, tax.n_nodes[0], size=a)
    in_home = home_l1[:, None] * per_l1 + rng.integers(0, per_l1, size=(a, t))  # (A, T)
    anywhere = rng.integers(0, tax.n_leaves, size=(a, t))
    keep_home = rng.random((a, t)) < cfg.author_same_l1_prob
    keep_home[:, 0] = True  # the main leaf is always under the home L1
    leaves = np.where(keep_home, in_home, anywhere)
    mix = rng.dirichlet(np.full(t, cfg.author_mix_alpha), size=a)
    quality = np.exp(rng.normal(0.0, cfg.quality_sigma, size=a)).astype(np.float32)
    lo, hi = cfg.broadcast_prob_range
    daily = rng.random(a) < cfg.daily_author_share
    bprob = np.where(daily, 1.0, rng.uniform(lo, hi, size=a))
    start_hour = rng.choice(24, size=a, p=DIURNAL) + rng.random(a)
    return Authors(home_l1, leaves.astype(np.int64), mix, quality, bprob, start_hour)


def make_rooms(cfg: WorldConfig, tax: Taxonomy, authors: Authors, rng: np.random.Generator) -> Rooms:
    """Sessions for every (author, day) broadcast draw and the topic chain of their slices."""
    a = len(authors)
    goes_live = rng.random((cfg.days, a)) < authors.broadcast_prob[None, :]  # (days, A)
    day, author = np.nonzero(goes_live)
    hour = authors.start_hour[author] + rng.normal(0.0, cfg.start_hour_sigma, size=len(author))
    offset_s = np.clip(hour * 3600.0, 0.0, 86_400.0 - 60.0)
    start_ms = cfg.t0_ms + day.astype(np.int64) * DAY_MS + (offset_s * 1000).astype(np.int64)
    mu = np.log(cfg.room_median_min * 60.0)
    life_s = np.clip(np.rint(np.exp(rng.normal(mu, cfg.room_sigma, size=len(author)))), cfg.room_min_s, cfg.room_max_s)
    end_ms = start_ms + life_s.astype(np.int64) * 1000
    order = np.lexsort((author, start_ms))  # by start, ties by author: stable ids
    author, start_ms, end_ms = author[order].astype(np.int64), start_ms[order], end_ms[order]

    slice_ms = cfg.slice_s * 1000
    n_slices = -(-(end_ms - start_ms) // slice_ms)  # ceil: the last slice may be shorter
    first = np.concatenate([[0], np.cumsum(n_slices)[:-1]]).astype(np.int64)
    leaf = np.empty(int(n_slices.sum()), dtype=np.int64)

    # Topic chain: start from the author's mix; each later slice switches within the mix
    # (e.g. chatting -> singing) or, rarely, goes off-topic, else stays.
    cum = np.cumsum(authors.mix, axis=1)[author]  # (R, T)
    home = authors.leaves[author]  # (R, T)
    r_idx = np.arange(len(author))
    current = home[r_idx, _sample_rows(cum, rng.random(len(author)))]
    leaf[first] = current
    for k in range(1, int(n_slices.max(initial=0))):
        alive = np.nonzero(n_slices > k)[0]
        u = rng.random(len(alive))
        in_mix = home[alive, _sample_rows(cum[alive], rng.random(len(alive)))]
        off = rng.integers(0, tax.n_leaves, size=len(alive))
        cur = current[alive]
        cur = np.where(u < cfg.topic_switch_prob, in_mix, cur)
        cur = np.where((u >= cfg.topic_switch_prob) & (u < cfg.topic_switch_prob + cfg.topic_offmix_prob), off, cur)
        current[alive] = cur
        leaf[first[alive] + k] = cur
    return Rooms(author, start_ms, end_ms, first, n_slices.astype(np.int64), leaf)


def slice_times(cfg: WorldConfig, rooms: Rooms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(room_id, start_ms, end_ms) of every live slice, in slice_id order."""
    room = np.repeat(np.arange(len(rooms), dtype=np.int64), rooms.n_slices)
    k = np.arange(len(room), dtype=np.int64) - rooms.first_slice[room]
    start = rooms.start_ms[room] + k * cfg.slice_s * 1000
    end = np.minimum(start + cfg.slice_s * 1000, rooms.end_ms[room])
    return room, start, end


def affinity_matrix(cfg: WorldConfig, tax: Taxonomy, marg: list[np.ndarray]) -> np.ndarray:
    """Content affinity (U, n_leaves): sum over levels of w_l * m_l(ancestor) / max m_l.

    ``marg[l]`` is (U, n_nodes[l]) the user's preference mass on each level-l node. Each
    level contributes its weight times how close that ancestor is to the user's favourite
    node of the level, so a leaf next to a liked one still scores (hierarchical sharing).
    """
    aff = np.zeros((marg[0].shape[0], tax.n_leaves), dtype=np.float64)
    for lv in range(4):
        m = marg[lv] / np.maximum(marg[lv].max(axis=1, keepdims=True), 1e-12)
        aff += cfg.level_weights[lv] * m[:, tax.ancestors[:, lv]]
    return (cfg.content_weight * aff).astype(np.float32)


def make_users(cfg: WorldConfig, tax: Taxonomy, rng: np.random.Generator, chunk: int = 50_000) -> Users:
    """Profiles, activity, and hierarchical preferences (liked L1s, then Dirichlet within)."""
    u = cfg.n_users
    age = rng.choice(N_AGE, size=u, p=AGE_P)
    gender = rng.integers(0, N_GENDER, size=u)
    region = rng.integers(0, N_REGION, size=u)
    activity = np.exp(rng.normal(0.0, cfg.activity_sigma, size=u))
    cuts = np.quantile(activity, [0.25, 0.5, 0.75])
    activity_level = np.searchsorted(cuts, activity)
    bias = rng.normal(0.0, cfg.user_bias_sigma, size=u).astype(np.float32)

    n1 = tax.n_nodes[0]
    # Weak profile -> taste correlation: random tilts per age bucket, gender and region.
    tilt = cfg.profile_tilt * (
        rng.normal(size=(N_AGE, n1))[age] + rng.normal(size=(N_GENDER, n1))[gender] + rng.normal(size=(N_REGION, n1))[region]
    ) / np.sqrt(3.0)  # (U, n1)
    n_liked = np.minimum(1 + rng.poisson(1.0, size=u), cfg.user_l1_max)
    keys = tilt + rng.gumbel(size=(u, n1))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)  # 0 = most liked
    liked = rank < n_liked[:, None]  # (U, n1)
    w1 = np.where(liked, rng.gamma(1.0, size=(u, n1)), 0.0)
    p1 = w1 / w1.sum(axis=1, keepdims=True)

    aff = np.empty((u, tax.n_leaves), dtype=np.float32)
    for s in range(0, u, chunk):
        e = min(u, s + chunk)
        marg = [p1[s:e]]
        for lv in range(1, 4):
            g = rng.gamma(cfg.user_pref_alpha, size=(e - s, tax.n_nodes[lv])) + 1e-12
            groups = g.reshape(e - s, -1, tax.branching[lv])  # (u, n_parents, b)
            cond = (groups / groups.sum(axis=2, keepdims=True)).reshape(e - s, -1)  # (u, n_parents, b) -> (u, n_nodes)
            marg.append(marg[-1][:, tax.parent[lv]] * cond)
        aff[s:e] = affinity_matrix(cfg, tax, marg)
    i32 = np.int32
    return Users(age.astype(i32), gender.astype(i32), region.astype(i32), activity_level.astype(i32), activity, aff, bias)


# Moment kinds of a segment (``Segments.moment``).
MOMENT_NONE, MOMENT_PERFORMANCE, MOMENT_INTERACTION = 0, 1, 2


@dataclasses.dataclass
class Segments:
    """30-second sub-slices of every live slice (index = segment_id, in room then time order)."""

    room: np.ndarray  # (G,) int64
    slice: np.ndarray  # (G,) int64 the slice the segment belongs to
    start_ms: np.ndarray  # (G,) int64
    end_ms: np.ndarray  # (G,) int64 (the last segment of a room may be shorter)
    leaf: np.ndarray  # (G,) int64 topic shown in the segment
    moment: np.ndarray  # (G,) int8 MOMENT_NONE / MOMENT_PERFORMANCE / MOMENT_INTERACTION
    room_first: np.ndarray  # (R,) int64 segment_id of each room's first segment

    def __len__(self) -> int:
        return len(self.room)


def room_segment_counts(cfg: WorldConfig, rooms: Rooms) -> np.ndarray:
    """(R,) segments per room: ceil(life / segment_s)."""
    seg_ms = cfg.segment_s * 1000
    return -(-(rooms.end_ms - rooms.start_ms) // seg_ms)


def make_segments(cfg: WorldConfig, tax: Taxonomy, rooms: Rooms, rng: np.random.Generator) -> Segments:
    """Segments of every room: topic from the slice (with drift) and highlight moments.

    Topic: a segment shows its slice's leaf; with ``segment_sibling_prob`` a sibling leaf
    (content wanders around the topic), and the last segment of a slice before a topic
    switch shows the next slice's leaf with ``segment_lead_prob`` (switches are gradual).
    Highlights: each room alternates ordinary runs (1 + Poisson(gap - 1) segments, the gap
    divided by the author's log-normal propensity) and highlight runs (1 + Poisson(len - 1));
    a highlight is a performance under a ``performance_l1`` topic, else an interaction.
    """
    n_seg = room_segment_counts(cfg, rooms)  # (R,)
    room = np.repeat(np.arange(len(rooms), dtype=np.int64), n_seg)
    room_first = np.concatenate([[0], np.cumsum(n_seg)[:-1]]).astype(np.int64)
    k = np.arange(len(room), dtype=np.int64) - room_first[room]
    seg_ms = cfg.segment_s * 1000
    start = rooms.start_ms[room] + k * seg_ms
    end = np.minimum(start + seg_ms, rooms.end_ms[room])
    per_slice = cfg.slice_s // cfg.segment_s
    slice_id = rooms.first_slice[room] + k // per_slice
    leaf = rooms.slice_leaf[slice_id].copy()
    last_slice = rooms.first_slice[room] + rooms.n_slices[room] - 1
    nxt = np.minimum(slice_id + 1, last_slice)
    lead = (k % per_slice == per_slice - 1) & (slice_id < last_slice) & (rng.random(len(room)) < cfg.segment_lead_prob)
    leaf = np.where(lead, rooms.slice_leaf[nxt], leaf)
    wander = rng.random(len(room)) < cfg.segment_sibling_prob
    leaf = np.where(wander, tax.siblings_of_leaf(leaf, rng), leaf)

    n_authors = int(rooms.author.max(initial=-1)) + 1
    propensity = np.exp(rng.normal(0.0, cfg.highlight_propensity_sigma, size=n_authors))[rooms.author]  # (R,)
    gap_mean = np.maximum(cfg.highlight_gap_mean / propensity, 1.0)
    on = np.zeros(len(rooms), dtype=bool)
    left = 1 + rng.poisson(gap_mean - 1.0)  # (R,) segments left in the current run
    high = np.zeros(len(room), dtype=bool)
    for j in range(int(n_seg.max(initial=0))):
        alive = np.nonzero(n_seg > j)[0]
        flip = alive[left[alive] == 0]
        on[flip] = ~on[flip]
        left[flip] = 1 + np.where(on[flip], rng.poisson(cfg.highlight_len_mean - 1.0, size=len(flip)),
                                  rng.poisson(gap_mean[flip] - 1.0))
        high[room_first[alive] + j] = on[alive]
        left[alive] -= 1
    perf = np.isin(tax.ancestors[leaf, 0], np.asarray(cfg.performance_l1, dtype=np.int64))
    moment = np.where(high, np.where(perf, MOMENT_PERFORMANCE, MOMENT_INTERACTION), MOMENT_NONE).astype(np.int8)
    return Segments(room, slice_id, start, end, leaf, moment, room_first)
