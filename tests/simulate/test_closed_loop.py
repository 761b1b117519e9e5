"""The closed-loop A/B: disjoint users, each arm learns only from what it served, bounds in order."""

import json

import numpy as np
import pytest

from fluidrec.data.io import Dataset
from fluidrec.data.world import World
from fluidrec.errors import ConfigError
from fluidrec.simulate.ab import WorldContext
from fluidrec.simulate.closed_loop import ClosedLoopConfig, OracleArm, RandomArm, assign_users, run_closed_loop, window_rows


class RecordingArm:
    """A random-order arm that remembers which users it scored and which impressions it learned from."""

    def __init__(self, seed):
        self.inner = RandomArm(seed)
        self.scored_users, self.learned, self.scored_rows = set(), [], 0

    def score(self, cands):
        self.scored_users |= set(cands.user_id.tolist())
        self.scored_rows += len(cands)
        return self.inner.score(cands)

    def learn(self, served):
        self.learned.append(served)


def _context(dataset):
    ds = Dataset(dataset)
    rooms = ds.table("rooms", ["room_id", "author_id", "start_ts"])
    sl = ds.table("slices", ["slice_id", "topic_l2"])
    return WorldContext(
        rooms.column("room_id").to_numpy(), rooms.column("start_ts").to_numpy(), rooms.column("author_id").to_numpy(),
        np.arange(10), sl.column("slice_id").to_numpy(), sl.column("topic_l2").to_numpy(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(tiny_world):
    world = World.load(tiny_world)
    imp = Dataset(tiny_world).table("impressions", ["user_id", "ts"])
    users, ts = imp.column("user_id").to_numpy(), imp.column("ts").to_numpy()
    keep = ts >= ts.max() - 6 * 3_600_000  # the last 6 hours, distinct requests
    req = np.unique(np.stack([users[keep], ts[keep]], 1), axis=0)
    return world, (req[:, 0], req[:, 1]), _context(tiny_world)


def test_assignment_is_disjoint_stable_and_seeded():
    users = np.arange(5000)
    a = assign_users(users, 4, seed=0)
    assert set(np.unique(a)) == {0, 1, 2, 3} and np.array_equal(a, assign_users(users, 4, seed=0))
    assert np.bincount(a).min() > 1100  # roughly even
    assert not np.array_equal(a, assign_users(users, 4, seed=1))


def test_window_rows_cover_every_row_once_in_time_order():
    ts = np.array([5, 0, 600_001, 1, 1_200_000, 599_999])
    windows = window_rows(ts, window_minutes=10)
    assert [sorted(w.tolist()) for w in windows] == [[0, 1, 3, 5], [2], [4]]


def test_each_arm_serves_and_learns_from_its_own_users_only(setup):
    world, requests, context = setup
    arms = {"baseline": RecordingArm(1), "b": RecordingArm(2), "c": RecordingArm(3)}
    cfg = ClosedLoopConfig(max_candidates=10, slate=3, n_boot=100, window_minutes=30)
    res = run_closed_loop(world, requests, arms, context, cfg, progress=False)
    sets = [a.scored_users for a in arms.values()]
    assert all(sets) and not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(res["users_per_arm"].values()) == res["n_users"]
    for arm in arms.values():
        learned_users = set(np.concatenate([s.cands.user_id for s in arm.learned]).tolist())
        assert learned_users <= arm.scored_users
        shown = sum(len(s.cands) for s in arm.learned)
        assert 0 < shown < arm.scored_rows  # it learns from the slates it showed, not from every candidate
        assert all(set(s.position.tolist()) <= {0, 1, 2} for s in arm.learned)


def test_oracle_beats_random_and_same_seed_same_result(setup):
    world, requests, context = setup
    cfg = ClosedLoopConfig(max_candidates=10, slate=3, n_boot=200, window_minutes=30, assignment="mirror")
    runs = [run_closed_loop(world, requests, {"baseline": RandomArm(0), "oracle": OracleArm(world)}, context, cfg, progress=False) for _ in range(2)]
    assert json.dumps(runs[0], sort_keys=True) == json.dumps(runs[1], sort_keys=True)
    qwd = runs[0]["arms"]["oracle"]["expected_quality_watch_duration"]
    assert qwd["delta"] > 0 and qwd["ci_low"] > 0  # ranking by the true click probability wins
    assert runs[0]["users_per_arm"]["oracle"] == runs[0]["n_users"]  # mirror: everyone in every arm
    curve = runs[0]["timeline"]["qwd_per_user"]
    assert curve["oracle"][-1] > curve["baseline"][-1] and np.all(np.diff(curve["oracle"]) >= 0)


def test_common_random_numbers_make_identical_arms_identical(setup):
    world, requests, context = setup
    cfg = ClosedLoopConfig(max_candidates=10, slate=3, n_boot=100, window_minutes=30, assignment="mirror")
    res = run_closed_loop(world, requests, {"baseline": OracleArm(world), "twin": OracleArm(world)}, context, cfg, progress=False)
    for m in res["arms"]["twin"].values():
        assert m["delta"] == 0.0 and m["half_width"] == 0.0


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="assignment"):
        ClosedLoopConfig(assignment="request")
    with pytest.raises(ConfigError, match="window_minutes"):
        ClosedLoopConfig(window_minutes=0)


def test_expected_quality_watch_matches_monte_carlo(setup):
    world, (users, ts), _ = setup
    t = int(ts[len(ts) // 2])
    rooms = world.live_rooms(t)[:5]
    n = 40_000
    u_ids, r_ids = np.full(n * len(rooms), int(users[0])), np.repeat(rooms, n)
    lab = world.labels_from_uniforms(u_ids, r_ids, t, 0, np.random.default_rng(0).random((len(r_ids), 5)))
    sampled = np.where(lab["watch_s"] >= 60, lab["watch_s"], 0.0).reshape(len(rooms), n).mean(1)
    exact = world.expected_quality_watch(np.full(len(rooms), int(users[0])), rooms, t, 0, 60.0)
    np.testing.assert_allclose(sampled, exact, rtol=0.1, atol=0.5)
