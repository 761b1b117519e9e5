"""The synthetic world's short-video feed: off by default, causal exposure, labels from the truth, long histories."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import main
from fluidrec.data.io import write_table
from fluidrec.data.validate import validate_dataset
from fluidrec.data.world import WorldConfig, generate_world
from fluidrec.data.world import generate as gen
from fluidrec.data.world.population import make_users
from fluidrec.data.world.taxonomy import build_taxonomy
from fluidrec.data.world.video_feed import TRUTH_FILE, _norm_cdf, _sessions, current_interest_leaf, make_feed_truth
from fluidrec.errors import ConfigError, DataError
from fluidrec.metrics.auc import auc
from fluidrec.sequence import event_log_summary, history_batch, load_event_log, read_feed_truth, split_indices, truth_yardsticks

DAY_MS = 86_400_000
OTHER_TABLES = ("authors", "rooms", "slices", "impressions", "queries", "users")


def _cols(path: Path, table: str) -> dict[str, np.ndarray]:
    t = pq.read_table(path)
    return {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}


@pytest.fixture(scope="module")
def feed_world(tmp_path_factory) -> Path:
    """The tiny world (seed 0) with the video feed, made through the CLI."""
    out = tmp_path_factory.mktemp("feed") / "w"
    assert main(["world", "generate", "--scale", "tiny", "--seed", "0", "--out", str(out), "--no-progress", "--video-feed"]) == 0
    return out


def test_cli_prints_the_feed_stats_line(tmp_path, capsys):
    cfg = dataclasses.replace(WorldConfig(days=2, n_authors=30, n_users=40, n_videos=80, requests_per_day=200), video_feed=True)
    summary = gen.generate_world_summary(cfg, tmp_path / "w", progress=False)
    from fluidrec.data.world.cli import _render

    text = _render({"out": "x", "scale": "custom", "seed": 0, "rows": summary.rows, "ctr": 0.0, "seconds": 0.0, "video_feed": summary.video_feed})
    assert "video feed:" in text and "views/user mean" in text
    assert summary.video_feed["events"] == summary.rows["video_impressions"] > 0


def test_feed_off_leaves_config_and_files_alone(tiny_world):
    cfg = WorldConfig.for_scale("tiny", seed=0)
    assert "video_feed" not in cfg.to_dict() and "video_pool" not in cfg.to_dict()
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg and cfg.video_views_per_day == 60.0
    assert not (tiny_world / "video_impressions.parquet").exists()
    assert not (tiny_world / "world" / TRUTH_FILE).exists()


def test_feed_on_changes_no_other_table(tiny_world, feed_world):
    for name in OTHER_TABLES:
        assert (feed_world / f"{name}.parquet").read_bytes() == (tiny_world / f"{name}.parquet").read_bytes(), name
    assert (feed_world / "world" / "truth.npz").read_bytes() == (tiny_world / "world" / "truth.npz").read_bytes()
    report = validate_dataset(feed_world)
    assert report["row_counts"]["video_impressions"] > 0


def test_same_seed_same_bytes(tmp_path):
    cfg = WorldConfig(seed=4, days=2, n_authors=30, n_users=40, n_videos=80, requests_per_day=200, video_feed=True)
    a, b = generate_world(cfg, tmp_path / "a", progress=False), generate_world(cfg, tmp_path / "b", progress=False)
    c = generate_world(dataclasses.replace(cfg, seed=5), tmp_path / "c", progress=False)
    for rel in ("video_impressions.parquet", f"world/{TRUTH_FILE}", "world/video_feed.npz"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "video_impressions.parquet").read_bytes() != (c / "video_impressions.parquet").read_bytes()


def test_exposure_is_causal_and_slates_are_requests(feed_world):
    v = _cols(feed_world / "video_impressions.parquet", "video_impressions")
    sl = _cols(feed_world / "slices.parquet", "slices")
    assert (np.diff(v["ts"]) >= 0).all()
    pos = np.searchsorted(sl["slice_id"], v["slice_id"])
    assert (sl["slice_id"][pos] == v["slice_id"]).all() and (sl["domain"][pos] == "video").all()
    assert (sl["start_ts"][pos] <= v["ts"]).all()  # only published videos are shown
    # one request = one user, one ts, positions 0..k-1, no video twice
    req = v["request_id"]
    order = np.lexsort((v["position"], req))
    r, p, u, t, s = (v[k][order] for k in ("request_id", "position", "user_id", "ts", "slice_id"))
    same = r[1:] == r[:-1]
    assert (u[1:][same] == u[:-1][same]).all() and (t[1:][same] == t[:-1][same]).all()
    assert (p[1:][same] == p[:-1][same] + 1).all() and (p[np.r_[True, ~same]] == 0).all()
    assert (s[1:][same] != s[:-1][same]).all()


def test_labels_follow_the_documented_model(feed_world):
    v = _cols(feed_world / "video_impressions.parquet", "video_impressions")
    truth = _cols(feed_world / "world" / TRUTH_FILE, "truth")
    sl = _cols(feed_world / "slices.parquet", "slices")
    dur = ((sl["end_ts"] - sl["start_ts"]) / 1000.0)[np.searchsorted(sl["slice_id"], v["slice_id"])]
    assert np.array_equal(v["long_view"], (v["watch_ratio"] >= 1.0).astype(np.int8))
    np.testing.assert_allclose(v["watch_s"], v["watch_ratio"] * dur, rtol=1e-5)
    assert v["watch_ratio"].max() <= 5.0 and v["watch_ratio"].min() > 0
    assert 0.2 < v["long_view"].mean() < 0.5 and 0.005 < v["like"].mean() < 0.1
    y = v["long_view"]
    oracle, no_id = auc(y, truth["p_long_view"]), auc(y, truth["p_long_view_no_id"])
    assert oracle > no_id > 0.7  # engagement is driven by taste; the per-video effect adds what only an ID learns
    assert abs(truth["p_long_view"].mean() - y.mean()) < 0.03  # the oracle is calibrated


def test_norm_cdf_matches_erf():
    import math

    x = np.linspace(-6, 6, 241)
    ref = np.array([0.5 * (1 + math.erf(t / math.sqrt(2))) for t in x])
    np.testing.assert_allclose(_norm_cdf(x), ref, atol=2e-7)


def _population(scale: str):
    cfg = WorldConfig.for_scale(scale, seed=0, video_feed=True)
    rng = gen._streams(cfg.seed)
    tax = build_taxonomy(cfg, rng["taxonomy"])
    return cfg, tax, make_users(cfg, tax, rng["users"])


@pytest.mark.parametrize("scale, low, high", [("small", 100, 1000), ("medium", 1000, 10_000)])
def test_history_lengths_per_scale(scale, low, high):
    """Hundreds of events per user at small, thousands at medium (median user; requests x slate)."""
    cfg, _, users = _population(scale)
    rng = np.random.default_rng(0)
    per_user = sum(np.bincount(_sessions(cfg, users, d, rng)[0], minlength=len(users)) for d in range(cfg.days)) * cfg.slate_size
    assert low <= np.median(per_user) < high and low <= per_user.mean() < high


def test_interest_drifts_slowly_and_old_taste_stays():
    cfg, tax, users = _population("small")
    truth = make_feed_truth(cfg, users, 10, np.random.default_rng(1))
    gaps = np.diff(truth.phase_ms)[truth.phase_user[1:] == truth.phase_user[:-1]]
    assert 0.5 * cfg.video_phase_days * DAY_MS < gaps.mean() < 2.0 * cfg.video_phase_days * DAY_MS
    u = np.repeat(np.arange(len(users)), 2)
    t = np.tile(np.array([cfg.t0_ms + 1, cfg.t0_ms + cfg.days * DAY_MS - 1]), len(users))
    leaf = current_interest_leaf(cfg, truth, u, t).reshape(-1, 2)
    changed = (leaf[:, 0] != leaf[:, 1]).mean()
    assert 0.5 < changed < 1.0  # over a week most users move on; some keep their interest
    top = np.argmax(users.affinity, axis=1)
    in_taste = users.affinity[truth.phase_user, truth.phase_leaf] > np.median(users.affinity, axis=1)[truth.phase_user]
    assert in_taste.mean() > 0.4 and (truth.phase_leaf == top[truth.phase_user]).mean() < 0.6


def test_event_log_from_the_feed(feed_world):
    log = load_event_log(feed_world, None, test_days=1, true_codes=True)
    s = event_log_summary(log)
    assert s["coded_share"] == 1.0 and log.codebook_size == 8 and log.levels == 4
    assert 0.0 < s["cold_share_of_test"] < 1.0 and s["test_events"] > 0
    v = _cols(feed_world / "video_impressions.parquet", "video_impressions")
    assert len(log) == len(v["ts"]) and log.label.mean() == pytest.approx(v["long_view"].mean())
    test = split_indices(log, "test")[:64]
    b = history_batch(log, test, 32)
    target_ts = np.broadcast_to(log.ts[test][:, None], (64, 32))  # (B, S)
    real = b.hist_mask.numpy()
    assert real.any() and (b.hist_ts.numpy()[real] < target_ts[real]).all()
    truth = read_feed_truth(feed_world, log)  # re-sorted into the log's (user, ts) order
    table_truth = _cols(feed_world / "world" / TRUTH_FILE, "truth")
    assert auc(log.label, truth["p_long_view"]) == pytest.approx(auc(v["long_view"], table_truth["p_long_view"]))
    by_event = {(int(u), int(t), int(i)): p for u, t, i, p in zip(v["user_id"], v["ts"], v["slice_id"], table_truth["p_long_view"])}
    raw_user = np.unique(v["user_id"])[log.user]
    for e in range(0, len(log), 97):
        assert truth["p_long_view"][e] == pytest.approx(by_event[(int(raw_user[e]), int(log.ts[e]), int(log.item_raw[log.item[e]]))])
    y = truth_yardsticks(log, truth)
    assert y["oracle_auc"] > y["no_id_ceiling_auc"] > 0.6 and np.isfinite(y["oracle_cold_auc"])
    ids = load_event_log(feed_world, None)
    assert (ids.codes == -1).all() and ids.codebook_size == 1
    like = load_event_log(feed_world, None, label="like")
    assert like.label.mean() == pytest.approx(v["like"].mean())


def test_bad_feed_tables_are_refused(feed_world, tmp_path):
    path = feed_world / "video_impressions.parquet"
    v = _cols(path, "video_impressions")
    cases = {
        "watch_ratio": ({"watch_ratio": np.where(np.arange(len(v["ts"])) == 5, -1.0, v["watch_ratio"]).astype(np.float32)}, "minimum"),
        "ts": ({"ts": v["ts"][::-1].copy()}, "not sorted"),
        "slice_id": ({"slice_id": np.where(np.arange(len(v["ts"])) == 7, 10**9, v["slice_id"])}, "missing slice"),
        "long_view": ({"long_view": np.full(len(v["ts"]), 2, np.int8)}, "maximum"),
    }
    for column, (change, reason) in cases.items():
        bad = tmp_path / column
        shutil.copytree(feed_world, bad)
        write_table(bad, "video_impressions", {**v, **change})
        with pytest.raises(DataError, match=reason) as exc:
            validate_dataset(bad, checksums=False)
        assert exc.value.column == column and "video_impressions" in str(exc.value.table)
    with pytest.raises(DataError, match="label"):
        load_event_log(feed_world, None, label="click")
    with pytest.raises(DataError, match="test_days|split"):
        load_event_log(feed_world, None, test_days=30)


@pytest.mark.parametrize("change, needle", [
    ({"video_pool": 0}, "video_pool"),
    ({"video_phase_in_taste": 1.5}, "video_phase_in_taste"),
    ({"video_long_view_ratio": 6.0}, "video_long_view_ratio"),
    ({"video_views_per_day": 0.0}, "video_views_per_day"),
])
def test_config_checks(change, needle):
    with pytest.raises(ConfigError, match=needle):
        WorldConfig(video_feed=True, **change)
