"""The short-video feed of the synthetic world: long per-user watch histories (``video_impressions``).

Written only when ``WorldConfig.video_feed`` is True (docs/world.md, "Video feed", lists the
source of every parameter). It reads the world's users, authors, taxonomy and short videos
and draws from two random streams of its own, so switching it on changes no other table.

Model, per user u, video v (leaf l(v), author a(v), duration d(v)) at request time t:

- **Requests**: each day u makes Poisson(min(views_per_day * activity_u / mean activity,
  ``video_max_views_per_day``) / K) feed requests (K = ``slate_size``), grouped into sessions (about ``video_session_requests``
  requests each) that start at a diurnal hour; consecutive requests of a session are
  Exp(``video_request_gap_s``) apart. Every video of one request shares its ts.
- **Exposure** (the incumbent feed): ``video_pool`` candidates drawn from the videos already
  published, with weight exp(-age / ``video_fresh_days``); the top K by Gumbel-perturbed
  ``exposure_quality_pow * log q(a) + exposure_affinity * aff_u(l)`` (the long-term affinity
  only: the incumbent does not know the current interest), position 0 = top.
- **Interest drift**: u has a current interest leaf c_u(t) that changes at Poisson times
  (mean gap ``video_phase_days``); a new one is, with ``video_phase_in_taste``, drawn from
  softmax(``video_phase_sharpness`` * aff_u) (a return to a known taste), else uniformly (a
  new taste). interest = aff_u(l) + ``video_phase_weight`` * content_weight * sum_k w_k [anc_k(l) == anc_k(c_u(t))].
- **Engagement**::

      mu = video_watch_bias + interest + quality_weight * log q(a) + effect(v) + user_bias(u) + pair(u, v)
      log watch_ratio ~ N(mu, video_watch_sigma),  watch_ratio capped at video_watch_cap
      long_view = watch_ratio >= video_long_view_ratio;   watch_s = watch_ratio * d(v)
      like ~ Bernoulli(sigmoid(video_like_bias + mu - video_watch_bias))

  effect(v) ~ N(0, room_effect_sigma) is what only an item ID can memorise; pair(u, v) is a
  hashed N(0, pair_noise_sigma) taste nobody can learn.

Truth beside the table (``world/video_truth.parquet``, one row per event in table order):
``p_long_view`` (the oracle) and ``p_long_view_no_id`` (without effect(v) and pair(u, v),
integrated out: the ceiling of a model without an item ID).

Example:
    >>> cfg = WorldConfig.for_scale("small", seed=0, video_feed=True)
    >>> generate_world(cfg, "runs/world_feed")           # writes video_impressions.parquet
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluidrec.data.io import PARQUET_WRITE, TableWriter
from fluidrec.data.world.config import WorldConfig
from fluidrec.data.world.population import DAY_MS, DIURNAL, Users
from fluidrec.data.world.taxonomy import Taxonomy
from fluidrec.data.world.truth import WORLD_DIR, _splitmix64
from fluidrec.utils.io import atomic_path

TABLE = "video_impressions"
TRUTH_FILE = "video_truth.parquet"  # under world/: per-event oracle probabilities
STATE_FILE = "video_feed.npz"  # under world/: video effects and interest phases
HOUR_MS = 3_600_000


@dataclasses.dataclass
class Videos:
    """The world's short videos (index = position in the catalogue, sorted by publish time)."""

    ids: np.ndarray  # (V,) int64 slice_id
    leaf: np.ndarray  # (V,) int64 topic leaf
    author: np.ndarray  # (V,) int64
    start_ms: np.ndarray  # (V,) int64 publish time, non-decreasing
    duration_s: np.ndarray  # (V,) float64

    def __len__(self) -> int:
        return len(self.ids)


@dataclasses.dataclass
class FeedTruth:
    """The feed's hidden state: per-video effects and every user's interest phases."""

    effect: np.ndarray  # (V,) float64
    phase_user: np.ndarray  # (P,) int64, sorted with phase_ms
    phase_ms: np.ndarray  # (P,) int64 start of the phase (t0 - 1 for the first)
    phase_leaf: np.ndarray  # (P,) int64 current-interest leaf
    noise_key: np.uint64


def _new_interests(cfg: WorldConfig, aff: np.ndarray, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new current-interest leaf for each user in ``users``: from the taste or anywhere."""
    n, n_leaves = len(users), aff.shape[1]
    from_taste = np.argmax(cfg.video_phase_sharpness * aff[users] + rng.gumbel(size=(n, n_leaves)), axis=1)  # (n,)
    anywhere = rng.integers(0, n_leaves, size=n)
    return np.where(rng.random(n) < cfg.video_phase_in_taste, from_taste, anywhere).astype(np.int64)


def make_feed_truth(cfg: WorldConfig, users: Users, n_videos: int, rng: np.random.Generator) -> FeedTruth:
    """Video effects and interest phases (a first phase per user, then Poisson switches)."""
    effect = rng.normal(0.0, cfg.room_effect_sigma, size=n_videos)
    n_users, span = len(users), cfg.days * DAY_MS
    n_switch = rng.poisson(cfg.days / cfg.video_phase_days, size=n_users)
    phase_user = np.concatenate([np.arange(n_users, dtype=np.int64), np.repeat(np.arange(n_users, dtype=np.int64), n_switch)])
    phase_ms = np.concatenate([np.full(n_users, cfg.t0_ms - 1, np.int64), cfg.t0_ms + rng.integers(0, span, size=int(n_switch.sum()))])
    order = np.lexsort((phase_ms, phase_user))
    phase_user, phase_ms = phase_user[order], phase_ms[order]
    phase_leaf = _new_interests(cfg, users.affinity, phase_user, rng)
    key = _splitmix64(np.array([cfg.seed ^ 0xFEED], dtype=np.uint64))[0]
    return FeedTruth(effect, phase_user, phase_ms, phase_leaf, key)


def current_interest_leaf(cfg: WorldConfig, truth: FeedTruth, user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """(n,) the current-interest leaf of each (user, ts): the last phase started at or before ts."""
    width = np.int64(cfg.days * DAY_MS + 2 * DAY_MS)  # phases and events fit in [t0 - 1, t0 + width)
    key_phase = truth.phase_user * width + (truth.phase_ms - cfg.t0_ms + 1)
    key_event = user.astype(np.int64) * width + (ts - cfg.t0_ms + 1)
    return truth.phase_leaf[np.searchsorted(key_phase, key_event, side="right") - 1]


def _pair_noise(cfg: WorldConfig, key: np.uint64, user: np.ndarray, video: np.ndarray) -> np.ndarray:
    """Deterministic N(0, pair_noise_sigma) per (user, video), hashed like ``World._pair_noise``."""
    h = _splitmix64(user.astype(np.uint64) * np.uint64(0x100000001B3) ^ _splitmix64(video.astype(np.uint64) ^ key))
    h2 = _splitmix64(h)
    u1 = ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = (h2 >> np.uint64(11)).astype(np.float64) / 2.0**53
    return cfg.pair_noise_sigma * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26 erf, |error| < 1.5e-7; no scipy dependency)."""
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _sessions(cfg: WorldConfig, users: Users, day: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(user (B,), ts (B,)) of one day's feed requests, sorted by (ts, user)."""
    views = np.minimum(cfg.video_views_per_day * users.activity / users.activity.mean(), cfg.video_max_views_per_day)  # (U,)
    rate = views / cfg.slate_size  # (U,) requests a day
    n_req = rng.poisson(rate)
    n_sess = np.maximum(np.rint(n_req / cfg.video_session_requests), 1).astype(np.int64) * (n_req > 0)
    req_user = np.repeat(np.arange(len(users), dtype=np.int64), n_req)
    first_sess = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
    sess = first_sess[req_user] + (rng.random(len(req_user)) * n_sess[req_user]).astype(np.int64)  # (B,) global session
    hour = rng.choice(24, size=int(n_sess.sum()), p=DIURNAL)
    sess_start = cfg.t0_ms + day * DAY_MS + hour * HOUR_MS + rng.integers(0, HOUR_MS, size=len(hour))
    order = np.argsort(sess, kind="stable")
    sess, req_user = sess[order], req_user[order]
    gap = rng.exponential(cfg.video_request_gap_s * 1000.0, size=len(sess))
    gap[np.r_[True, sess[1:] != sess[:-1]]] = 0.0  # a session's first request starts it
    cum = np.cumsum(gap)
    first = np.maximum.accumulate(np.where(np.r_[True, sess[1:] != sess[:-1]], np.arange(len(sess)), 0))
    ts = sess_start[sess] + (cum - cum[first]).astype(np.int64)
    ts = np.minimum(ts, cfg.t0_ms + (day + 1) * DAY_MS - 1)  # a late session ends at midnight (day = one row group)
    o = np.lexsort((req_user, ts))
    return req_user[o], ts[o]


def _retrieve(cfg: WorldConfig, videos: Videos, log_q: np.ndarray, aff: np.ndarray, user: np.ndarray, ts: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """(B, K) catalogue indices shown to each request, in display order; -1 where fewer were published."""
    k = cfg.slate_size
    slate = np.full((len(user), k), -1, dtype=np.int64)
    hour_start = ts // HOUR_MS * HOUR_MS
    for h in np.unique(hour_start):  # the published set and the freshness weights change by the hour
        rows = np.flatnonzero(hour_start == h)
        n_pub = int(np.searchsorted(videos.start_ms, h, side="right"))
        if n_pub == 0:
            continue
        w = np.cumsum(np.exp(-(h - videos.start_ms[:n_pub]) / (cfg.video_fresh_days * DAY_MS)))  # (n_pub,)
        m = min(cfg.video_pool, n_pub)
        cand = np.searchsorted(w, rng.random((len(rows), m)) * w[-1], side="right")  # (b, M)
        cand = np.sort(np.minimum(cand, n_pub - 1), axis=1)
        score = cfg.exposure_quality_pow * log_q[videos.author[cand]] + cfg.exposure_affinity * aff[user[rows, None], videos.leaf[cand]]
        score = score + rng.gumbel(size=score.shape)
        score[:, 1:][cand[:, 1:] == cand[:, :-1]] = -np.inf  # a video at most once per slate
        kk = min(k, m)
        top = np.argsort(-score, axis=1, kind="stable")[:, :kk]  # (b, kk) by score: position 0 = top
        picked = np.take_along_axis(cand, top, axis=1)
        ok = np.isfinite(np.take_along_axis(score, top, axis=1))
        slate[rows, :kk] = np.where(ok, picked, -1)
    return slate


def _engagement(cfg: WorldConfig, tax: Taxonomy, users: Users, author_q: np.ndarray, videos: Videos, truth: FeedTruth,
                user: np.ndarray, vid: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Labels and truth of the views (user, catalogue index, ts) (module docstring)."""
    leaf = videos.leaf[vid]
    cur = current_interest_leaf(cfg, truth, user, ts)
    same = tax.ancestors[leaf] == tax.ancestors[cur]  # (n, 4) shares the level-k ancestor
    phase = cfg.content_weight * (same * np.asarray(cfg.level_weights)).sum(axis=1)
    interest = users.affinity[user, leaf].astype(np.float64) + cfg.video_phase_weight * phase
    content = interest + cfg.quality_weight * np.log(author_q[videos.author[vid]]) + users.bias[user]
    mu_no_id = cfg.video_watch_bias + content
    mu = mu_no_id + truth.effect[vid] + _pair_noise(cfg, truth.noise_key, user, videos.ids[vid])
    log_ratio = mu + cfg.video_watch_sigma * rng.standard_normal(len(mu))
    ratio = np.minimum(np.exp(log_ratio), cfg.video_watch_cap)
    thr = np.log(cfg.video_long_view_ratio)
    like_p = 1.0 / (1.0 + np.exp(-(cfg.video_like_bias + mu - cfg.video_watch_bias)))
    sd_no_id = np.sqrt(cfg.video_watch_sigma**2 + cfg.room_effect_sigma**2 + cfg.pair_noise_sigma**2)
    return {
        "watch_ratio": ratio.astype(np.float32),
        "watch_s": (ratio * videos.duration_s[vid]).astype(np.float32),
        "long_view": (ratio >= cfg.video_long_view_ratio).astype(np.int8),
        "like": (rng.random(len(mu)) < like_p).astype(np.int8),
        "p_long_view": _norm_cdf((mu - thr) / cfg.video_watch_sigma).astype(np.float32),
        "p_long_view_no_id": _norm_cdf((mu_no_id - thr) / sd_no_id).astype(np.float32),
    }


def simulate_feed_day(cfg: WorldConfig, tax: Taxonomy, users: Users, author_q: np.ndarray, videos: Videos,
                      truth: FeedTruth, day: int, request_base: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All views of one day in (ts, user, position) order: the table's columns plus the two truth columns."""
    req_user, req_ts = _sessions(cfg, users, day, rng)
    slate = _retrieve(cfg, videos, np.log(author_q), users.affinity, req_user, req_ts, rng)  # (B, K)
    k = slate.shape[1]
    shown = (slate >= 0).reshape(-1)  # (B*K,)
    vid = slate.reshape(-1)[shown]  # (B, K) -> (B*K,), then the shown ones
    user = np.repeat(req_user, k)[shown]
    ts = np.repeat(req_ts, k)[shown]
    cols = {
        "ts": ts,
        "user_id": user,
        "slice_id": videos.ids[vid],
        "request_id": np.repeat(request_base + np.arange(len(req_user), dtype=np.int64), k)[shown],
        "position": np.tile(np.arange(k, dtype=np.int32), len(req_user))[shown],
    }
    cols.update(_engagement(cfg, tax, users, author_q, videos, truth, user, vid, ts, rng))
    cols["_n_requests"] = np.array([len(req_user)])
    return cols


TRUTH_COLUMNS = ("p_long_view", "p_long_view_no_id")


def write_video_feed(out: Path, cfg: WorldConfig, tax: Taxonomy, users: Users, author_q: np.ndarray, videos: Videos,
                     rngs: tuple[np.random.Generator, np.random.Generator], progress: bool) -> dict[str, float]:
    """Write ``video_impressions.parquet`` (one row group a day) and ``world/video_truth.parquet``; return stats.

    Args:
        out: the dataset directory being written.
        rngs: (truth stream, feed stream), the feed's own (``generate._video_feed_streams``).
    """
    from tqdm.auto import tqdm

    truth = make_feed_truth(cfg, users, len(videos), rngs[0])
    per_user = np.zeros(len(users), dtype=np.int64)
    first_seen = np.full(len(videos), np.iinfo(np.int64).max)
    totals = {"long_view": 0, "like": 0, "rows": 0}
    last_day: dict[str, np.ndarray] = {}
    n_req = 0
    truth_path = out / WORLD_DIR / TRUTH_FILE
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    with TableWriter(out, TABLE) as w, atomic_path(truth_path) as tmp:
        tw = pq.ParquetWriter(tmp, pa.schema([(c, pa.float32()) for c in TRUTH_COLUMNS]), compression="zstd", **PARQUET_WRITE)
        for day in tqdm(range(cfg.days), desc="video feed", unit="day", disable=not progress, leave=False):
            cols = simulate_feed_day(cfg, tax, users, author_q, videos, truth, day, n_req, rngs[1])
            n_req += int(cols.pop("_n_requests")[0])
            tw.write_table(pa.table({c: cols.pop(c) for c in TRUTH_COLUMNS}))
            w.write(cols)
            per_user += np.bincount(cols["user_id"], minlength=len(users))
            pos = np.searchsorted(videos.ids, cols["slice_id"])
            np.minimum.at(first_seen, pos, cols["ts"])
            totals["long_view"] += int(cols["long_view"].sum())
            totals["like"] += int(cols["like"].sum())
            totals["rows"] += len(cols["ts"])
            last_day = {"pos": pos, "ts": cols["ts"]}
        tw.close()
    with atomic_path(out / WORLD_DIR / STATE_FILE) as tmp, open(tmp, "wb") as fh:  # a handle: np.savez would add ".npz"
        np.savez(fh, effect=truth.effect, phase_user=truth.phase_user, phase_ms=truth.phase_ms, phase_leaf=truth.phase_leaf)
    return _stats(cfg, per_user, first_seen, totals, last_day, n_req)


def _stats(cfg: WorldConfig, per_user: np.ndarray, first_seen: np.ndarray, totals: dict, last_day: dict, n_req: int) -> dict[str, float]:
    """The figures printed after generation: history lengths, label rates, cold share of the last day."""
    rows = max(totals["rows"], 1)
    day_start = cfg.t0_ms + (cfg.days - 1) * DAY_MS
    cold = float((first_seen[last_day["pos"]] >= day_start).mean()) if last_day and len(last_day["pos"]) else float("nan")
    return {
        "events": int(totals["rows"]),
        "requests": int(n_req),
        "events_per_user_mean": float(per_user.mean()),
        "events_per_user_median": float(np.median(per_user)),
        "events_per_user_min": int(per_user.min()),
        "events_per_user_max": int(per_user.max()),
        "long_view_rate": totals["long_view"] / rows,
        "like_rate": totals["like"] / rows,
        "cold_share_last_day": cold,
    }


def stats_line(s: dict[str, float]) -> str:
    """One line of the feed's figures (printed by ``fluidrec world generate --video-feed``)."""
    return (
        f"video feed: {s['events']:,} views in {s['requests']:,} requests; views/user mean {s['events_per_user_mean']:.0f}, "
        f"median {s['events_per_user_median']:.0f}, min {s['events_per_user_min']}, max {s['events_per_user_max']}; "
        f"long_view {s['long_view_rate']:.3f}, like {s['like_rate']:.3f}; last day on videos unseen before it {s['cold_share_last_day']:.1%}"
    )
