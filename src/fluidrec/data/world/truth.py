"""The ground-truth user model of the synthetic world (``World``), vectorised over numpy.

The generator draws every impression label through these methods, and later stages
(the simulated online A/B test) call the same methods, so logged data and simulated
traffic follow one model.

Click (for user u, room r on air at time t, slice s on air, display position p)::

    logit = click_bias + aff(u, leaf(s)) + quality_weight * log q(author(r))
            + room_effect(r) + user_bias(u) + pair_noise(u, r) - position_weight * log2(1 + p)

``aff`` is the user's hierarchical content affinity with the slice's topic
(``population.affinity_matrix``); ``room_effect`` is a per-room random effect that
only an item ID can memorise; ``pair_noise`` is a deterministic hash of (u, r), an
idiosyncratic taste nobody can learn. After a click the user watches
``min(Exp(mean m), time left in the room)`` seconds with::

    log m = log watch_base_s + watch_now_weight * aff(now) + watch_future_weight * aff(next slices)
            + 0.3 * log q + 0.3 * room_effect

``long_view`` = watched at least ``long_view_s``; ``like``/``follow``/``gift`` are
Bernoulli draws after a click with their own logits (see ``_after_click``).

Example:
    >>> w = World.load("runs/world_small")
    >>> rooms = w.live_rooms(t)                       # (R,)
    >>> p = w.click_prob(np.full(len(rooms), 7), rooms, t)   # (R,)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fluidrec.data.world.config import WorldConfig
from fluidrec.errors import DataError, UsageError
from fluidrec.utils.io import atomic_path, write_json

WORLD_DIR = "world"
_ARRAYS = "truth.npz"
_META = "truth.json"

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-mixed hash of uint64 arrays (wraps on purpose)."""
    z = x.astype(np.uint64) + _GOLD
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class World:
    """Vectorised ground truth of a generated world.

    Args:
        cfg: the world's config.
        arrays: truth arrays (see ``save``): rooms, live-slice topics, authors, users.

    Every method takes arrays of equal length (``t_ms`` may also be a scalar) and
    returns numpy arrays of that length.
    """

    def __init__(self, cfg: WorldConfig, arrays: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        self.room_author = arrays["room_author"].astype(np.int64, copy=False)
        self.room_start = arrays["room_start"].astype(np.int64, copy=False)
        self.room_end = arrays["room_end"].astype(np.int64, copy=False)
        self.room_first_slice = arrays["room_first_slice"].astype(np.int64, copy=False)
        self.room_n_slices = arrays["room_n_slices"].astype(np.int64, copy=False)
        self.room_effect = arrays["room_effect"].astype(np.float32, copy=False)
        self.slice_leaf = arrays["slice_leaf"].astype(np.int64, copy=False)
        self.author_quality = arrays["author_quality"].astype(np.float32, copy=False)
        self.user_affinity = arrays["user_affinity"].astype(np.float32, copy=False)  # (U, n_leaves)
        self.user_bias = arrays["user_bias"].astype(np.float32, copy=False)
        self._log_q = np.log(self.author_quality)
        # Per-room constant part of the click logit: author quality + the room's own effect.
        self._room_const = (cfg.quality_weight * self._log_q[self.room_author] + self.room_effect).astype(np.float64)
        self._slice_ms = cfg.slice_s * 1000
        self._noise_key = _splitmix64(np.array([cfg.seed ^ 0x5EED], dtype=np.uint64))[0]
        # Segments (cfg.segments only): the moment kind of every 30-s segment and each room's
        # first segment; absent otherwise, so a world without segments saves the same arrays.
        self.segment_moment = arrays["segment_moment"].astype(np.int8, copy=False) if "segment_moment" in arrays else None
        self.room_first_segment = arrays["room_first_segment"].astype(np.int64, copy=False) if "room_first_segment" in arrays else None

    # ------------------------------------------------------------------ io
    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "room_author": self.room_author,
            "room_start": self.room_start,
            "room_end": self.room_end,
            "room_first_slice": self.room_first_slice,
            "room_n_slices": self.room_n_slices,
            "room_effect": self.room_effect,
            "slice_leaf": self.slice_leaf,
            "author_quality": self.author_quality,
            "user_affinity": self.user_affinity,
            "user_bias": self.user_bias,
            **({} if self.segment_moment is None else {"segment_moment": self.segment_moment, "room_first_segment": self.room_first_segment}),
        }

    def save(self, dataset_dir: str | os.PathLike) -> Path:
        """Write ``<dataset_dir>/world/truth.npz`` and ``truth.json`` (the config)."""
        d = Path(dataset_dir) / WORLD_DIR
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / _ARRAYS) as tmp:
            with open(tmp, "wb") as fh:  # a file handle: np.savez would append ".npz" to a path
                np.savez(fh, **self.arrays())
        write_json(d / _META, {"world_config": self.cfg.to_dict()})
        return d

    @classmethod
    def load(cls, dataset_dir: str | os.PathLike) -> World:
        """Load the hidden truth of a dataset made by ``generate_world``.

        Example:
            >>> world = World.load("runs/world_small")
        """
        d = Path(dataset_dir) / WORLD_DIR
        if not (d / _ARRAYS).exists() or not (d / _META).exists():
            raise DataError("no world/ truth found (was this dataset made by `fluidrec world generate`?)", table=str(d))
        meta = json.loads((d / _META).read_text())
        with np.load(d / _ARRAYS) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(WorldConfig.from_dict(meta["world_config"]), arrays)

    # ------------------------------------------------------------ lookups
    @property
    def n_rooms(self) -> int:
        return len(self.room_author)

    @property
    def n_users(self) -> int:
        return len(self.user_bias)

    def _check_ids(self, user_ids: np.ndarray | None, room_ids: np.ndarray) -> None:
        if len(room_ids) and (room_ids.min() < 0 or room_ids.max() >= self.n_rooms):
            raise UsageError(f"room_ids must be in [0, {self.n_rooms}), got range [{room_ids.min()}, {room_ids.max()}]")
        if user_ids is not None and len(user_ids):
            if user_ids.min() < 0 or user_ids.max() >= self.n_users:
                raise UsageError(f"user_ids must be in [0, {self.n_users}), got range [{user_ids.min()}, {user_ids.max()}]")
            if len(user_ids) != len(room_ids):
                raise UsageError(f"user_ids and room_ids differ in length ({len(user_ids)} vs {len(room_ids)})")

    def live_rooms(self, t_ms: int) -> np.ndarray:
        """Room ids on air at ``t_ms`` (start <= t < end), ascending.

        Example:
            >>> world.live_rooms(world.cfg.t0_ms + 20 * 3_600_000)
        """
        return np.nonzero((self.room_start <= t_ms) & (t_ms < self.room_end))[0]

    def slice_on_air(self, room_ids: np.ndarray, t_ms: int | np.ndarray) -> np.ndarray:
        """slice_id on air in each room at ``t_ms``; -1 where the room is not on air."""
        room_ids = np.asarray(room_ids, dtype=np.int64)
        self._check_ids(None, room_ids)
        t = np.broadcast_to(np.asarray(t_ms, dtype=np.int64), room_ids.shape)
        start, end = self.room_start[room_ids], self.room_end[room_ids]
        k = (t - start) // self._slice_ms
        on_air = (t >= start) & (t < end)
        return np.where(on_air, self.room_first_slice[room_ids] + k, -1)

    def _future_affinity(self, user_ids: np.ndarray, room_ids: np.ndarray, slice_ids: np.ndarray, aff_now: np.ndarray) -> np.ndarray:
        """Mean affinity over the next ``future_slices`` slices of the room (aff_now when none left)."""
        n_f = self.cfg.future_slices
        if n_f == 0:
            return aff_now
        last = self.room_first_slice[room_ids] + self.room_n_slices[room_ids] - 1
        total = np.zeros(len(slice_ids), dtype=np.float64)
        count = np.zeros(len(slice_ids), dtype=np.float64)
        for j in range(1, n_f + 1):
            nxt = slice_ids + j
            ok = nxt <= last
            leaf = self.slice_leaf[np.where(ok, nxt, slice_ids)]
            total += np.where(ok, self.user_affinity[user_ids, leaf], 0.0)
            count += ok
        return np.where(count > 0, total / np.maximum(count, 1), aff_now)

    def upcoming_moments(self, room_ids: np.ndarray, t_ms: np.ndarray) -> dict[str, np.ndarray]:
        """Share of performance / interaction segments among the next ``highlight_horizon`` ones.

        The window starts at the segment on air at ``t_ms`` and stops at the room's end;
        rows whose room is off air (or a world without segments) get 0.
        """
        n = len(room_ids)
        if self.segment_moment is None:
            return {"performance": np.zeros(n), "interaction": np.zeros(n)}
        seg_ms = self.cfg.segment_s * 1000
        start, end = self.room_start[room_ids], self.room_end[room_ids]
        on_air = (t_ms >= start) & (t_ms < end)
        now = self.room_first_segment[room_ids] + np.where(on_air, (t_ms - start) // seg_ms, 0)
        last = self.room_first_segment[room_ids] + (end - start - 1) // seg_ms
        perf = np.zeros(n)
        inter = np.zeros(n)
        count = np.zeros(n)
        for j in range(self.cfg.highlight_horizon):
            g = now + j
            ok = on_air & (g <= last)
            m = self.segment_moment[np.where(ok, g, 0)]
            perf += ok & (m == 1)
            inter += ok & (m == 2)
            count += ok
        count = np.maximum(count, 1)
        return {"performance": perf / count, "interaction": inter / count}

    def _pair_noise(self, user_ids: np.ndarray, room_ids: np.ndarray) -> np.ndarray:
        """Deterministic N(0, pair_noise_sigma) per (user, room) via hashing and Box-Muller."""
        h = _splitmix64(user_ids.astype(np.uint64) * np.uint64(0x100000001B3) ^ _splitmix64(room_ids.astype(np.uint64) ^ self._noise_key))
        h2 = _splitmix64(h)
        u1 = ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
        u2 = (h2 >> np.uint64(11)).astype(np.float64) / 2.0**53
        return self.cfg.pair_noise_sigma * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

    def _click_logit(self, user_ids: np.ndarray, room_ids: np.ndarray, slice_ids: np.ndarray, position) -> np.ndarray:
        """The click logit (see module docstring) for on-air slices; no validation (hot path)."""
        c = self.cfg
        logit = (
            c.click_bias
            + self.user_affinity[user_ids, self.slice_leaf[slice_ids]]
            + self._room_const[room_ids]
            + self.user_bias[user_ids]
            + self._pair_noise(user_ids, room_ids)
        )
        if position is not None:
            logit = logit - c.position_weight * np.log2(1.0 + np.asarray(position, dtype=np.float64))
        return logit

    def click_logit_parts(self, user_ids, room_ids, slice_ids, position=None) -> dict[str, np.ndarray]:
        """The click logit split into its named terms (module docstring), float64 arrays.

        Args:
            user_ids, room_ids, slice_ids: (n,) impressions; ``slice_ids`` are live slices
                (the slice on air, as logged in ``impressions.slice_id``).
            position: (n,) display positions, a scalar, or None (position 0: no penalty).

        Returns:
            dict with ``bias`` (click_bias), ``affinity`` (aff(u, leaf(s))), ``quality``
            (quality_weight * log q(author)), ``room_effect``, ``user_bias``, ``pair_noise``,
            ``position`` (``-position_weight * log2(1 + p)``), each (n,), and ``logit``: the
            exact logit the world draws clicks from (``sigmoid(logit)`` is ``click_prob``).
            The terms sum to ``logit`` up to float rounding (the room terms are added in
            float32 on the hot path).

        Example:
            >>> parts = world.click_logit_parts(users, rooms, slices, position=positions)
            >>> no_id = parts["logit"] - parts["room_effect"] - parts["pair_noise"]
        """
        user_ids = np.asarray(user_ids, dtype=np.int64)
        room_ids = np.asarray(room_ids, dtype=np.int64)
        slice_ids = np.asarray(slice_ids, dtype=np.int64)
        self._check_ids(user_ids, room_ids)
        if slice_ids.shape != room_ids.shape:
            raise UsageError(f"slice_ids and room_ids differ in shape ({slice_ids.shape} vs {room_ids.shape})")
        n_slices = len(self.slice_leaf)
        if len(slice_ids) and (slice_ids.min() < 0 or slice_ids.max() >= n_slices):
            raise UsageError(f"slice_ids must be live slices in [0, {n_slices}), got range [{slice_ids.min()}, {slice_ids.max()}]")
        c = self.cfg
        n = len(room_ids)
        if position is None:
            pos_term = np.zeros(n, dtype=np.float64)
        else:
            pos_term = np.broadcast_to(-c.position_weight * np.log2(1.0 + np.asarray(position, dtype=np.float64)), (n,)).copy()
        return {
            "bias": np.full(n, c.click_bias, dtype=np.float64),
            "affinity": self.user_affinity[user_ids, self.slice_leaf[slice_ids]].astype(np.float64),
            "quality": (c.quality_weight * self._log_q[self.room_author[room_ids]]).astype(np.float64),
            "room_effect": self.room_effect[room_ids].astype(np.float64),
            "user_bias": self.user_bias[user_ids].astype(np.float64),
            "pair_noise": self._pair_noise(user_ids, room_ids),
            "position": pos_term,
            "logit": self._click_logit(user_ids, room_ids, slice_ids, position),
        }

    def _state(self, user_ids, room_ids, t_ms, position, validate: bool = True) -> dict[str, np.ndarray]:
        """Shared per-impression terms; ``on_air`` marks rows whose room is live at t."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        room_ids = np.asarray(room_ids, dtype=np.int64)
        if validate:
            self._check_ids(user_ids, room_ids)
        t = np.broadcast_to(np.asarray(t_ms, dtype=np.int64), room_ids.shape)
        start, end = self.room_start[room_ids], self.room_end[room_ids]
        on_air = (t >= start) & (t < end)
        # Off-air rows get the room's first slice as a safe index; their probabilities are zeroed.
        s = self.room_first_slice[room_ids] + np.where(on_air, (t - start) // self._slice_ms, 0)
        aff = self.user_affinity[user_ids, self.slice_leaf[s]].astype(np.float64)
        return {"user": user_ids, "room": room_ids, "t": t, "slice": s, "on_air": on_air, "aff": aff,
                "log_q": self._log_q[self.room_author[room_ids]].astype(np.float64),
                "room_eff": self.room_effect[room_ids].astype(np.float64),
                "click_logit": self._click_logit(user_ids, room_ids, s, position)}

    def _after_click(self, st: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Conditional-on-click quantities: watch mean, time left, P(long_view/like/follow/gift | click)."""
        c = self.cfg
        aff_f = self._future_affinity(st["user"], st["room"], st["slice"], st["aff"])
        log_m = (np.log(c.watch_base_s) + c.watch_now_weight * st["aff"] + c.watch_future_weight * aff_f
                 + 0.3 * st["log_q"] + 0.3 * st["room_eff"])
        user_b = self.user_bias[st["user"]]
        like = c.like_bias + 0.8 * st["aff"] + 0.3 * st["log_q"] + 0.5 * st["room_eff"] + 0.5 * user_b
        follow = c.follow_bias + 0.5 * st["aff"] + 0.5 * aff_f + 0.5 * st["log_q"] + 0.5 * st["room_eff"]
        gift = c.gift_bias + 0.5 * st["aff"] + 0.8 * st["log_q"] + 0.5 * st["room_eff"] + user_b
        if self.segment_moment is not None:  # highlight moments ahead (docs/world.md, "Segments")
            up = self.upcoming_moments(st["room"], st["t"])
            log_m = log_m + c.highlight_watch_weight * (up["performance"] + up["interaction"])
            like = like + c.highlight_like_weight * up["performance"]
            gift = gift + c.highlight_gift_weight * up["performance"]
            follow = follow + c.highlight_follow_weight * up["interaction"]
        mean = np.exp(log_m)
        left = np.maximum(self.room_end[st["room"]] - st["t"], 0) / 1000.0  # seconds until the room ends
        p_long = np.where(left >= c.long_view_s, np.exp(-c.long_view_s / mean), 0.0)
        return {"watch_mean": mean, "left_s": left, "long_view": p_long,
                "like": _sigmoid(like), "follow": _sigmoid(follow), "gift": _sigmoid(gift)}

    # ------------------------------------------------------------ public truth
    def click_prob(self, user_ids, room_ids, t_ms, position=None) -> np.ndarray:
        """P(click) for each (user, room) shown at ``t_ms`` at ``position`` (default 0); 0 if off air.

        Example:
            >>> world.click_prob([3, 3], [10, 11], t, position=[0, 1])
        """
        st = self._state(user_ids, room_ids, t_ms, position)
        return np.where(st["on_air"], _sigmoid(st["click_logit"]), 0.0)

    def label_probs(self, user_ids, room_ids, t_ms, position=None) -> dict[str, np.ndarray]:
        """Marginal probability of every binary label and expected ``watch_s`` (0 if no click).

        Returns:
            dict with ``click``, ``long_view``, ``like``, ``follow``, ``gift`` (probabilities)
            and ``watch_s`` (expected seconds, E[min(Exp(m), time left)] * P(click)).
        """
        st = self._state(user_ids, room_ids, t_ms, position)
        p_click = np.where(st["on_air"], _sigmoid(st["click_logit"]), 0.0)
        ac = self._after_click(st)
        m, left = ac["watch_mean"], ac["left_s"]
        out = {"click": p_click}
        for k in ("long_view", "like", "follow", "gift"):
            out[k] = p_click * ac[k]
        out["watch_s"] = p_click * m * (1.0 - np.exp(-left / m))
        return out

    def watch_seconds(self, user_ids, room_ids, t_ms, rng: np.random.Generator) -> np.ndarray:
        """Seconds watched *given a click*: min(Exp(mean m), time left in the room); 0 if off air."""
        st = self._state(user_ids, room_ids, t_ms, None)
        ac = self._after_click(st)
        return self._draw_watch(ac, rng) * st["on_air"]

    @staticmethod
    def _draw_watch(ac: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        return np.minimum(rng.exponential(1.0, size=len(ac["watch_mean"])) * ac["watch_mean"], ac["left_s"])

    def sample_clicks(self, user_ids, room_ids, t_ms, position, rng: np.random.Generator, *, validate: bool = True) -> np.ndarray:
        """Draw click (int8, 0/1) per impression from ``click_prob`` (0 when the room is off air)."""
        st = self._state(user_ids, room_ids, t_ms, position, validate)
        p_click = np.where(st["on_air"], _sigmoid(st["click_logit"]), 0.0)
        return (rng.random(len(p_click)) < p_click).astype(np.int8)

    def sample_after_click(self, user_ids, room_ids, t_ms, click, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw ``watch_s``, ``long_view``, ``like``, ``follow``, ``gift`` given drawn clicks.

        ``long_view`` is exactly ``watch_s >= long_view_s`` so it agrees with
        ``label_probs``; the other engagement labels are Bernoulli after a click.
        """
        st = self._state(user_ids, room_ids, t_ms, None)
        click = np.asarray(click).astype(bool) & st["on_air"]
        n = len(click)
        ac = self._after_click(st)
        watch = np.where(click, self._draw_watch(ac, rng), 0.0).astype(np.float32, copy=False)
        out = {"long_view": click & (watch >= self.cfg.long_view_s)}
        for k in ("like", "follow", "gift"):
            out[k] = click & (rng.random(n) < ac[k])
        labels = {k: v.astype(np.int8) for k, v in out.items()}
        labels["watch_s"] = watch
        return labels

    def expected_quality_watch(self, user_ids, room_ids, t_ms, position, quality_s: float) -> np.ndarray:
        """E[watch seconds counted as a quality watch] per impression: P(click) x E[W; W >= q].

        With W = min(X, left), X ~ Exp(mean m): E[W; W >= q] = (q + m) e^(-q/m) - m e^(-left/m)
        when left >= q, else 0. The A/B reports it beside the sampled quality watch duration:
        same expectation, without the click and watch-time draws' noise.
        """
        st = self._state(user_ids, room_ids, t_ms, position)
        p_click = np.where(st["on_air"], _sigmoid(st["click_logit"]), 0.0)
        ac = self._after_click(st)
        m, left, q = ac["watch_mean"], ac["left_s"], float(quality_s)
        given = np.where(left >= q, (q + m) * np.exp(-q / m) - m * np.exp(-left / m), 0.0)
        return p_click * given

    def labels_from_uniforms(self, user_ids, room_ids, t_ms, position, u: np.ndarray) -> dict[str, np.ndarray]:
        """All labels of impressions from given uniforms ``u`` (n, 5), one column per draw.

        Columns: click, watch time (inverse CDF of Exp), like, follow, gift. Fixing ``u`` per
        (request, room) gives common random numbers: two rankers showing the same room to the
        same request at the same position get the same outcome; ``position`` moves only the click.
        """
        st = self._state(user_ids, room_ids, t_ms, position)
        u = np.asarray(u, dtype=np.float64)
        click = st["on_air"] & (u[:, 0] < _sigmoid(st["click_logit"]))
        ac = self._after_click(st)
        watch = np.where(click, np.minimum(-np.log1p(-u[:, 1]) * ac["watch_mean"], ac["left_s"]), 0.0)
        out = {"click": click, "long_view": click & (watch >= self.cfg.long_view_s)}
        for col, k in ((2, "like"), (3, "follow"), (4, "gift")):
            out[k] = click & (u[:, col] < ac[k])
        labels = {k: v.astype(np.int8) for k, v in out.items()}
        labels["watch_s"] = watch.astype(np.float32)
        return labels

    def sample_labels(self, user_ids, room_ids, t_ms, position, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw all labels for impressions: ``sample_clicks`` then ``sample_after_click``.

        Example:
            >>> labels = world.sample_labels(users, rooms, t, positions, np.random.default_rng(0))
        """
        click = self.sample_clicks(user_ids, room_ids, t_ms, position, rng)
        return {"click": click, **self.sample_after_click(user_ids, room_ids, t_ms, click, rng)}
