import json

import numpy as np
import pytest

from fluidrec.errors import ConfigError
from fluidrec.simulate.ab import ABConfig, WorldContext, rank_slates, run_ab
from fluidrec.simulate.metrics import paired_bootstrap, per_user_sums, per_user_unique, relative_change


def test_per_user_sums_and_unique():
    idx = np.array([0, 0, 2, 2, 2])
    assert per_user_sums(idx, np.array([1, 2, 3, 4, 5]), 3).tolist() == [3, 0, 12]
    assert per_user_unique(idx, np.array([7, 7, 1, 2, 1]), 3).tolist() == [1, 0, 2]


def test_relative_change_and_bootstrap():
    assert relative_change(np.array([3.0, 3.0]), np.array([2.0, 2.0])) == pytest.approx(0.5)
    # identical per-user ratios: every resample gives the same change, CI collapses onto it
    r = paired_bootstrap(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0]), n_boot=200)
    assert r["delta"] == pytest.approx(1.0) and r["ci_low"] == pytest.approx(1.0) and r["significant"]
    # noise around zero: not significant
    rng = np.random.default_rng(0)
    c = rng.random(200)
    t = c + rng.normal(0, 0.05, 200)
    assert not paired_bootstrap(t, c, n_boot=500)["significant"]


def test_rank_slates_orders_within_request():
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.3, 0.8])
    request = np.array([0, 0, 0, 1, 1, 1])
    pos = rank_slates(scores, request, slate=2)
    assert pos.tolist() == [-1, 0, 1, 1, -1, 0]  # tie 0.3/0.3 broken by candidate order


class FakeWorld:
    """Rooms 0..9 live all the time; user u likes room u % 10 a lot."""

    def live_rooms(self, t):
        return np.arange(10)

    def slice_on_air(self, rooms, t):
        return rooms * 100

    def click_prob(self, users, rooms, t, position=None):
        return np.where(rooms == users % 10, 0.9, 0.05) * (1.0 / (1 + 0.1 * np.asarray(position)))

    def watch_seconds(self, users, rooms, t, rng):
        return np.where(rooms == users % 10, 120.0, 20.0)


def _context():
    rooms = np.arange(10)
    return WorldContext(rooms, np.zeros(10, np.int64), rooms % 3, np.array([0]), rooms * 100, rooms % 4)


def test_oracle_beats_random_and_is_deterministic():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 50, 400)
    ts = np.full(400, 10 * 60_000)
    scorers = {
        "baseline": lambda c: np.random.default_rng(5).random(len(c)),
        "oracle": lambda c: (c.room_id == c.user_id % 10).astype(float),
    }
    cfg = ABConfig(n_requests=400, max_candidates=10, slate=2, n_boot=200)
    a = run_ab(FakeWorld(), (users, ts), scorers, _context(), cfg, progress=False)
    b = run_ab(FakeWorld(), (users, ts), scorers, _context(), cfg, progress=False)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-safe equality
    qwd = a["arms"]["oracle"]["quality_watch_duration"]
    assert qwd["delta"] > 1.0 and qwd["significant"]
    # all rooms are 10 minutes old at the request: none counts as cold start
    assert a["totals"]["oracle"]["cold_start_room_views"] == 0


def test_config_validation():
    with pytest.raises(ConfigError):
        ABConfig(slate=0)
    with pytest.raises(ConfigError):
        ABConfig(niche_share=1.5)
