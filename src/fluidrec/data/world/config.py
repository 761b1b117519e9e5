"""``WorldConfig``: every parameter of the synthetic livestream world in one typed place.

Each field's source (a figure from the papers or a stated assumption) is listed in
``docs/world.md``. Parameters are set once from the papers or as plain assumptions and
never tuned to make one ranker arm win; only the sizes differ between scales.

Example:
    >>> cfg = WorldConfig.for_scale("tiny", seed=0)
    >>> cfg.days, cfg.room_median_min
    (2, 40.0)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

from fluidrec.errors import ConfigError, check

SCALES = ("tiny", "small", "medium", "large")

# Sizes per scale. Only sizes change between scales; the behaviour parameters do not.
_SCALE_SIZES: dict[str, dict[str, int]] = {
    # n_users is set from the request volume so that a user clicks about 9.8 times a day, as in
    # the KuaiLive log (docs/world.md, "Density"); only the request volume is a budget choice.
    # seconds; used by many tests
    "tiny": dict(days=2, n_authors=120, n_users=125, n_videos=300, requests_per_day=6000),
    # the demo default: the main job must fit its budget on 2 cores (incl. MiniLM over every slice)
    "small": dict(days=7, n_authors=540, n_users=500, n_videos=8_000, requests_per_day=24_000),
    "medium": dict(days=14, n_authors=4_000, n_users=3_500, n_videos=30_000, requests_per_day=120_000),
    "large": dict(days=30, n_authors=6_000, n_users=17_000, n_videos=100_000, requests_per_day=560_000),
}


# Video-feed views per user per day at mean activity, per scale (a size like requests_per_day,
# used only with video_feed=True): hundreds of events per user at small, thousands at medium
# (docs/world.md, "Video feed").
_VIDEO_VIEWS_PER_DAY: dict[str, float] = {"tiny": 30.0, "small": 60.0, "medium": 150.0, "large": 150.0}


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Parameters of the synthetic world (sizes, content, population, ground truth, exposure).

    Args:
        seed: master seed; the same seed gives byte-identical tables.
        scale: name of the scale preset this config came from ("custom" otherwise).
        days: number of simulated days (the last one is the natural test day).
        n_authors: persistent streamers; rooms = sum over authors and days of a broadcast draw.
        n_users: viewers.
        n_videos: short videos (domain ``video``).
        requests_per_day: feed requests per day (each shows up to ``slate_size`` live rooms).
        start_date: ISO date (UTC) of day 0.
        frame_size: side S of the rendered RGB frame (S x S x 3 uint8).
        branching: children per node at taxonomy levels 1..4 (level 1 = roots).
        The remaining fields are documented one by one in docs/world.md.
    """

    seed: int = 0
    scale: str = "custom"
    # --- sizes -----------------------------------------------------------------
    days: int = 2
    n_authors: int = 120
    n_users: int = 600
    n_videos: int = 300
    requests_per_day: int = 6000
    start_date: str = "2025-01-06"
    frame_size: int = 32
    # --- taxonomy and content ----------------------------------------------------
    branching: tuple[int, int, int, int] = (8, 4, 3, 2)
    words_per_node: tuple[int, int, int, int] = (12, 10, 8, 6)  # own synthetic words per node, by level
    sibling_borrow: float = 0.3  # share of a node's vocabulary borrowed from its siblings
    # --- rooms (sessions) and slices -------------------------------------------
    room_median_min: float = 40.0  # fluid.txt section 1: "median ~40 min"
    room_sigma: float = 0.6  # log-normal shape (assumption)
    room_min_s: int = 60
    room_max_s: int = 8 * 3600
    slice_s: int = 120  # fluid.txt 3.1.3: "2-minute content slices"
    topic_switch_prob: float = 0.15  # per slice, to another topic of the author's mix
    topic_offmix_prob: float = 0.03  # per slice, to any leaf (off-topic moment)
    # --- authors ----------------------------------------------------------------
    author_topics: int = 3  # leaves in an author's home mix
    author_mix_alpha: float = 1.0  # Dirichlet concentration of the home mix
    author_same_l1_prob: float = 0.7  # a further home leaf stays under the author's home L1
    quality_sigma: float = 0.4  # log quality ~ N(0, sigma)
    daily_author_share: float = 0.15  # authors who broadcast every day
    broadcast_prob_range: tuple[float, float] = (0.1, 0.6)  # daily probability of the others
    start_hour_sigma: float = 1.0  # hours of jitter around an author's preferred start hour
    # --- users --------------------------------------------------------------------
    user_l1_max: int = 3  # liked L1 topics per user: 1 + Poisson(1), capped
    user_pref_alpha: float = 0.5  # Dirichlet concentration within a liked subtree (sparse)
    profile_tilt: float = 0.5  # strength of profile -> liked-L1 correlation (weak)
    activity_sigma: float = 1.0  # log request rate ~ N(0, sigma)
    # --- ground truth: click ----------------------------------------------------
    click_bias: float = -3.75
    level_weights: tuple[float, float, float, float] = (1.0, 0.7, 0.5, 0.3)  # content affinity per level
    content_weight: float = 1.0
    quality_weight: float = 1.0  # times log quality
    room_effect_sigma: float = 0.5  # per-room effect only an item ID can memorise
    user_bias_sigma: float = 0.4
    pair_noise_sigma: float = 0.3  # per (user, room) idiosyncratic term, not learnable
    position_weight: float = 0.3  # logit -= w * log2(1 + position)
    # --- ground truth: after a click ---------------------------------------------
    watch_base_s: float = 45.0
    watch_now_weight: float = 0.4
    watch_future_weight: float = 0.6
    future_slices: int = 3  # slices after the one on air that watch time looks at
    long_view_s: float = 60.0  # long_view = watched at least this long
    like_bias: float = -3.2
    follow_bias: float = -4.5
    gift_bias: float = -5.0
    # --- exposure policy (the incumbent production ranker) -----------------------
    slate_size: int = 6
    step_s: int = 60  # exposure state (audience) updates once per step
    exposure_quality_pow: float = 1.0
    exposure_audience_pow: float = 0.5
    exposure_affinity: float = 0.5  # the incumbent is mildly personalised
    audience_half_life_s: float = 120.0
    # --- queries (encoder training pairs) ----------------------------------------
    live_queries_max: int = 2  # per live slice, at most this many (one per engagement)
    video_queries_mean: float = 3.0  # Poisson mean per video (denser, fluid.txt 3.1.1)
    video_queries_max: int = 6
    # --- segments and highlight moments (foresight; off by default) ---------------
    # Defaults reproduce the world without segments bit for bit: with ``segments`` False no
    # segment is drawn, no stream is consumed and no label changes (docs/world.md, "Segments").
    segments: bool = False  # draw 30-s segments and their highlight moments
    segment_s: int = 30  # live_foresight_sid.txt 3.1.1: "30-second segments"
    segment_sibling_prob: float = 0.1  # a segment wanders to a sibling leaf of its slice's topic
    segment_lead_prob: float = 0.5  # the last segment before a topic switch already shows the next topic
    highlight_gap_mean: float = 8.0  # segments between two highlight moments (mean, 1 + Poisson)
    highlight_len_mean: float = 3.0  # segments per highlight moment (mean, 1 + Poisson)
    highlight_propensity_sigma: float = 0.5  # per-author log-normal multiplier of the highlight rate
    performance_l1: tuple[int, ...] = (0, 1, 3, 4)  # L1 topics whose highlights are performances (else interaction)
    highlight_words: int = 4  # moment words added to a highlight segment's transcript and comments
    highlight_horizon: int = 4  # segments from now that engagement looks at (2 minutes)
    highlight_watch_weight: float = 0.0  # log watch mean += w * share of highlight segments ahead
    highlight_like_weight: float = 0.0  # like logit += w * share of performance segments ahead
    highlight_gift_weight: float = 0.0  # gift logit += w * share of performance segments ahead
    highlight_follow_weight: float = 0.0  # follow logit += w * share of interaction segments ahead
    # --- short-video feed (issue 17, long histories; off by default) -----------------
    # Like ``segments``: with ``video_feed`` False nothing is drawn, no stream is consumed and
    # ``to_dict`` leaves these fields out, so the default world stays bit for bit what it was.
    # Sources of every value: docs/world.md, "Video feed".
    video_feed: bool = False  # write video_impressions.parquet (fluidrec.data.world.video_feed)
    video_views_per_day: float = 60.0  # views per user per day at mean activity (a size: set per scale)
    video_max_views_per_day: float = 1000.0  # a heavy user's ceiling (~5.5 h of 20-s views), clips the activity tail
    video_session_requests: float = 5.0  # mean feed requests (slates) per session
    video_request_gap_s: float = 120.0  # mean time between two requests of a session (watching a slate)
    video_pool: int = 200  # candidates the incumbent retrieves per request before ranking them
    video_fresh_days: float = 2.0  # retrieval weight exp(-age / video_fresh_days)
    video_phase_days: float = 3.0  # mean time between two changes of a user's current interest
    video_phase_in_taste: float = 0.5  # share of new interests drawn from the user's long-term taste
    video_phase_sharpness: float = 4.0  # such a draw is softmax(sharpness * affinity) over leaves
    video_phase_weight: float = 1.0  # weight of the current interest beside the long-term affinity
    video_watch_bias: float = -1.25  # log watch ratio mean offset: about a third of views finish (docs/world.md)
    video_watch_sigma: float = 0.8  # log watch ratio noise (log-normal shape)
    video_watch_cap: float = 5.0  # watch ratio cap (loops of a short video)
    video_long_view_ratio: float = 1.0  # long_view = watch ratio >= this (finished the video)
    video_like_bias: float = -5.0  # like logit offset (sets the like rate, docs/world.md)

    def __post_init__(self) -> None:
        check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("days", "n_authors", "n_users", "n_videos", "requests_per_day", "frame_size", "slate_size"):
            v = getattr(self, name)
            check(isinstance(v, int) and v > 0, f"{name} must be a positive integer, got {v!r}")
        check(self.frame_size >= 8, f"frame_size must be >= 8, got {self.frame_size}")
        try:
            _dt.date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            raise ConfigError(f"start_date must be an ISO date YYYY-MM-DD, got {self.start_date!r}") from None
        check(len(self.branching) == 4 and all(b >= 2 for b in self.branching), f"branching must be 4 ints >= 2, got {self.branching}")
        check(len(self.words_per_node) == 4 and all(w >= 2 for w in self.words_per_node), "words_per_node must be 4 ints >= 2")
        check(len(self.level_weights) == 4, "level_weights must have 4 values")
        for name in ("sibling_borrow", "topic_switch_prob", "topic_offmix_prob", "author_same_l1_prob", "daily_author_share"):
            v = getattr(self, name)
            check(0.0 <= v <= 1.0, f"{name} must be in [0, 1], got {v}")
        check(self.topic_switch_prob + self.topic_offmix_prob <= 1.0, "topic_switch_prob + topic_offmix_prob must be <= 1")
        lo, hi = self.broadcast_prob_range
        check(0.0 < lo <= hi <= 1.0, f"broadcast_prob_range must satisfy 0 < lo <= hi <= 1, got {self.broadcast_prob_range}")
        check(self.room_median_min > 0 and self.room_sigma >= 0, "room_median_min must be > 0 and room_sigma >= 0")
        check(0 < self.room_min_s <= self.room_max_s, "need 0 < room_min_s <= room_max_s")
        check(self.slice_s > 0 and self.step_s > 0, "slice_s and step_s must be > 0")
        check(1 <= self.author_topics <= 8, f"author_topics must be in 1..8, got {self.author_topics}")
        check(1 <= self.user_l1_max <= self.branching[0], f"user_l1_max must be in 1..{self.branching[0]}")
        for name in ("author_mix_alpha", "user_pref_alpha", "watch_base_s", "long_view_s", "audience_half_life_s"):
            check(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("quality_sigma", "room_effect_sigma", "user_bias_sigma", "pair_noise_sigma", "activity_sigma",
                     "position_weight", "profile_tilt", "start_hour_sigma", "video_queries_mean"):
            check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        check(self.future_slices >= 0 and self.live_queries_max >= 0 and self.video_queries_max >= 0,
              "future_slices, live_queries_max and video_queries_max must be >= 0")
        self._check_segments()
        self._check_video_feed()

    def _check_video_feed(self) -> None:
        check(isinstance(self.video_feed, bool), f"video_feed must be a bool, got {self.video_feed!r}")
        check(isinstance(self.video_pool, int) and self.video_pool >= 1, f"video_pool must be an integer >= 1, got {self.video_pool!r}")
        for name in ("video_views_per_day", "video_max_views_per_day", "video_session_requests", "video_request_gap_s", "video_fresh_days",
                     "video_phase_days", "video_watch_sigma", "video_watch_cap", "video_long_view_ratio"):
            check(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        check(0.0 <= self.video_phase_in_taste <= 1.0, f"video_phase_in_taste must be in [0, 1], got {self.video_phase_in_taste}")
        check(self.video_phase_sharpness >= 0 and self.video_phase_weight >= 0, "video_phase_sharpness and video_phase_weight must be >= 0")
        check(self.video_long_view_ratio <= self.video_watch_cap, "video_long_view_ratio must be <= video_watch_cap")

    def _check_segments(self) -> None:
        check(isinstance(self.segments, bool), f"segments must be a bool, got {self.segments!r}")
        check(isinstance(self.segment_s, int) and self.segment_s > 0 and self.slice_s % self.segment_s == 0,
              f"segment_s must be a positive integer dividing slice_s ({self.slice_s}), got {self.segment_s!r}")
        for name in ("segment_sibling_prob", "segment_lead_prob"):
            check(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1], got {getattr(self, name)}")
        check(self.highlight_gap_mean >= 1 and self.highlight_len_mean >= 1, "highlight_gap_mean and highlight_len_mean must be >= 1")
        check(self.highlight_propensity_sigma >= 0, "highlight_propensity_sigma must be >= 0")
        check(all(0 <= int(v) < self.branching[0] for v in self.performance_l1),
              f"performance_l1 must hold level-1 topic ids in [0, {self.branching[0]}), got {self.performance_l1}")
        check(self.highlight_words >= 0 and self.highlight_horizon >= 1, "need highlight_words >= 0 and highlight_horizon >= 1")
        if not self.segments:
            for name in SEGMENT_EFFECTS:
                check(getattr(self, name) == 0.0, f"{name} needs segments=True (highlight moments exist only with segments)")

    @property
    def n_leaves(self) -> int:
        b = self.branching
        return b[0] * b[1] * b[2] * b[3]

    @property
    def t0_ms(self) -> int:
        """Unix milliseconds of day 0, 00:00 UTC."""
        d = _dt.datetime.fromisoformat(self.start_date).replace(tzinfo=_dt.timezone.utc)
        return int(d.timestamp()) * 1000

    @classmethod
    def for_scale(cls, scale: str, seed: int = 0, **overrides: Any) -> WorldConfig:
        """The preset for ``scale`` (tiny/small/medium/large) with ``seed``.

        Example:
            >>> WorldConfig.for_scale("small", seed=3).n_users
            500
        """
        if scale not in _SCALE_SIZES:
            raise ConfigError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
        sizes = dict(_SCALE_SIZES[scale])
        if overrides.get("video_feed"):  # the feed's own size, only when it is on (the default world is unchanged)
            sizes["video_views_per_day"] = _VIDEO_VIEWS_PER_DAY[scale]
        return cls(seed=seed, scale=scale, **{**sizes, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """All fields, except the segment fields while they hold their defaults.

        Leaving them out keeps the dict of a world without segments exactly what it was
        before they existed, so manifests, ``truth.json`` and the stage keys of earlier runs
        stay valid (``from_dict`` fills the defaults back in).
        """
        d = dataclasses.asdict(self)
        defaults = _DEFAULTS
        if not self.segments and all(d[k] == defaults[k] for k in SEGMENT_FIELDS):
            for k in SEGMENT_FIELDS:
                del d[k]
        if not self.video_feed and all(d[k] == defaults[k] for k in VIDEO_FEED_FIELDS):
            for k in VIDEO_FEED_FIELDS:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorldConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in fields}
        return cls(**kw)


SEGMENT_EFFECTS = ("highlight_watch_weight", "highlight_like_weight", "highlight_gift_weight", "highlight_follow_weight")
SEGMENT_FIELDS = (
    "segments", "segment_s", "segment_sibling_prob", "segment_lead_prob", "highlight_gap_mean", "highlight_len_mean",
    "highlight_propensity_sigma", "performance_l1", "highlight_words", "highlight_horizon", *SEGMENT_EFFECTS,
)
_FIELD_NAMES = [f.name for f in dataclasses.fields(WorldConfig)]
VIDEO_FEED_FIELDS = tuple(_FIELD_NAMES[_FIELD_NAMES.index("video_feed"):_FIELD_NAMES.index("video_like_bias") + 1])
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorldConfig)}
