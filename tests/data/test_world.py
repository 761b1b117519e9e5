"""The synthetic world: determinism, the paper's statistics, time consistency, truth calibration, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import main
from fluidrec.data.io import Dataset
from fluidrec.data.world import World, WorldConfig, generate_world
from fluidrec.data.world.population import make_authors, make_rooms
from fluidrec.data.world.taxonomy import build_taxonomy
from fluidrec.errors import ConfigError, UsageError

TABLE_FILES = ("authors", "rooms", "slices", "impressions", "queries", "users")
DAY_MS = 86_400_000


def _cols(path: Path, table: str, columns: list[str]) -> dict[str, np.ndarray]:
    t = pq.read_table(path / f"{table}.parquet", columns=columns)
    return {c: t.column(c).to_numpy(zero_copy_only=False) for c in columns}


def _micro(seed: int) -> WorldConfig:
    return WorldConfig(seed=seed, days=1, n_authors=40, n_users=100, n_videos=20, requests_per_day=400)


# ---------------------------------------------------------------- determinism, CLI
def test_cli_generate_is_byte_identical_to_fixture(tiny_world, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["world", "generate", "--scale", "tiny", "--seed", "0", "--out", str(out), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"]["impressions"] == Dataset(tiny_world).num_rows("impressions") > 0
    for name in TABLE_FILES:
        assert (out / f"{name}.parquet").read_bytes() == (tiny_world / f"{name}.parquet").read_bytes(), name
    assert (out / "world" / "truth.npz").read_bytes() == (tiny_world / "world" / "truth.npz").read_bytes()


def test_different_seeds_differ(tmp_path):
    a = generate_world(_micro(1), tmp_path / "a", progress=False)
    b = generate_world(_micro(2), tmp_path / "b", progress=False)
    for name in ("rooms", "slices", "impressions", "users"):
        assert (a / f"{name}.parquet").read_bytes() != (b / f"{name}.parquet").read_bytes(), name


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--scale", "huge", "--seed", "0"], "unknown scale"),
        (["--scale", "tiny", "--seed", "-1"], "must be >= 0"),
        (["--scale", "tiny", "--seed", "abc"], "expected an integer"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path, capsys, argv, needle):
    out = tmp_path / "o"
    try:
        code = main(["world", "generate", *argv, "--out", str(out)])
    except SystemExit as exc:  # argparse type errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err and "\n" not in err
    assert not out.exists() or not any(out.iterdir())


def test_cli_refuses_non_empty_and_unwritable_out(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(["world", "generate", "--scale", "tiny", "--out", str(full)]) == 2
    assert "not empty" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["world", "generate", "--scale", "tiny", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not writable" in err and "\n" not in err


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown scale"):
        WorldConfig.for_scale("galactic", seed=0)
    with pytest.raises(ConfigError, match="seed"):
        WorldConfig(seed=-3)
    with pytest.raises(ConfigError, match="topic_switch_prob"):
        WorldConfig(topic_switch_prob=1.5)
    cfg = WorldConfig.for_scale("small", seed=4)
    assert WorldConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ---------------------------------------------------------------- the paper's statistics
def test_median_room_life_matches_config():
    # Rooms only (no content, no impressions): thousands of rooms in well under a second.
    cfg = WorldConfig(seed=3, days=3, n_authors=3000)
    rng = np.random.default_rng(0)
    tax = build_taxonomy(cfg, rng)
    rooms = make_rooms(cfg, tax, make_authors(cfg, tax, rng), rng)
    assert len(rooms) > 2000
    median_min = np.median(rooms.end_ms - rooms.start_ms) / 60_000
    assert abs(median_min - cfg.room_median_min) / cfg.room_median_min < 0.10
    # The topic actually drifts within rooms (the Markov chain), but most slices keep the topic.
    same = rooms.slice_leaf[1:] == rooms.slice_leaf[:-1]
    within = np.ones(len(same), dtype=bool)
    within[rooms.first_slice[1:] - 1] = False  # pairs that straddle two rooms
    stay = same[within].mean()
    assert 0.7 < stay < 0.95


def test_slice_cadence_and_room_coverage(tiny_world):
    rooms = _cols(tiny_world, "rooms", ["room_id", "start_ts", "end_ts"])
    s = _cols(tiny_world, "slices", ["slice_id", "room_id", "start_ts", "end_ts", "domain"])
    live = s["domain"] == "live"
    assert (s["room_id"][~live] == -1).all() and live.sum() > 0 and (~live).sum() > 0
    order = np.lexsort((s["start_ts"][live], s["room_id"][live]))
    room, start, end = s["room_id"][live][order], s["start_ts"][live][order], s["end_ts"][live][order]
    same_room = room[1:] == room[:-1]
    assert (np.diff(start)[same_room] == 120_000).all()
    assert (end - start <= 120_000).all() and (end > start).all()
    first = np.r_[True, ~same_room]
    last = np.r_[~same_room, True]
    idx = np.searchsorted(rooms["room_id"], room)
    assert (start[first] == rooms["start_ts"][idx[first]]).all()
    assert (end[last] == rooms["end_ts"][idx[last]]).all()


def test_ctr_and_engagement_rates_in_documented_band(tiny_world):
    imp = _cols(tiny_world, "impressions", ["click", "long_view", "like", "follow", "gift", "watch_s"])
    ctr = imp["click"].mean()
    assert 0.02 <= ctr <= 0.06
    clicked = imp["click"] == 1
    for lab in ("long_view", "like", "follow", "gift"):
        assert (imp[lab][~clicked] == 0).all(), lab  # engagement only after a click
    assert (imp["watch_s"][~clicked] == 0).all() and (imp["watch_s"][clicked] > 0).all()
    assert (imp["long_view"] == (imp["watch_s"] >= 60)).all()
    assert imp["like"][clicked].mean() > imp["follow"][clicked].mean() > 0


def test_test_day_rooms_are_unseen_in_training(tiny_world):
    imp = _cols(tiny_world, "impressions", ["ts", "room_id"])
    day = (imp["ts"] - imp["ts"].min()) // DAY_MS
    last = day == day.max()
    test_rooms = np.unique(imp["room_id"][last])
    seen = np.isin(test_rooms, np.unique(imp["room_id"][~last]))
    assert len(test_rooms) > 10 and seen.mean() < 0.1


# ---------------------------------------------------------------- time consistency
def test_impressions_sorted_and_slice_on_air(tiny_world):
    imp = _cols(tiny_world, "impressions", ["ts", "request_id", "room_id", "slice_id", "position"])
    s = _cols(tiny_world, "slices", ["slice_id", "room_id", "start_ts", "end_ts"])
    assert (np.diff(imp["ts"]) >= 0).all()
    i = np.searchsorted(s["slice_id"], imp["slice_id"])
    assert (s["slice_id"][i] == imp["slice_id"]).all()
    assert (s["start_ts"][i] <= imp["ts"]).all() and (imp["ts"] < s["end_ts"][i]).all()
    assert (s["room_id"][i] == imp["room_id"]).all()
    # Each request shows distinct rooms at positions 0..k-1.
    _, first, counts = np.unique(imp["request_id"], return_index=True, return_counts=True)
    assert (imp["position"][first] == 0).all() and counts.max() <= WorldConfig.for_scale("tiny").slate_size
    pairs = imp["request_id"] * 10_000_000 + imp["room_id"]
    assert len(np.unique(pairs)) == len(pairs)


def test_queries_reference_engaged_items_and_videos_are_denser(tiny_world):
    q = _cols(tiny_world, "queries", ["query_id", "query_text", "slice_id"])
    s = _cols(tiny_world, "slices", ["slice_id", "domain"])
    assert np.isin(q["slice_id"], s["slice_id"]).all()
    assert all(1 <= len(t.split()) <= 4 for t in q["query_text"])
    is_video = np.isin(q["slice_id"], s["slice_id"][s["domain"] == "video"])
    per_video = is_video.sum() / (s["domain"] == "video").sum()
    per_live = (~is_video).sum() / (s["domain"] == "live").sum()
    assert per_video > per_live > 0


def test_frames_and_text_fields(tiny_world):
    ds = Dataset(tiny_world)
    size = ds.frame_size
    assert ds.manifest["source"] == "synthetic-world" and ds.manifest["seed"] == 0 and ds.manifest["scale"] == "tiny"
    t = ds.table("slices", ["frame", "title", "transcript", "tags", "topic_l1", "topic_l4", "room_id"])
    frames = t.column("frame").to_pylist()[:50]
    assert all(len(f) == size * size * 3 for f in frames)
    img = np.frombuffer(frames[0], dtype=np.uint8).reshape(size, size, 3)
    assert img.std() > 5  # a shape on a background plus noise, not a flat colour
    # Titles are set per room: one title per live room.
    room = t.column("room_id").to_numpy()
    titles = np.array(t.column("title").to_pylist(), dtype=object)
    for r in np.unique(room[room >= 0])[:20]:
        assert len(set(titles[room == r])) == 1
    # Content is not trivially separable: transcripts of different level-1 topics share words.
    l1 = t.column("topic_l1").to_numpy()
    tr = t.column("transcript").to_pylist()
    vocab_a = {w for x, k in zip(tr, l1) if k == 0 for w in x.split()}
    vocab_b = {w for x, k in zip(tr, l1) if k == 1 for w in x.split()}
    assert len(vocab_a & vocab_b) > 20
    assert all(tag.startswith("#") for tag in t.column("tags").to_pylist()[0].split())


# ---------------------------------------------------------------- ground truth
def test_world_live_rooms_and_slice_on_air(tiny_world):
    w = World.load(tiny_world)
    rooms = _cols(tiny_world, "rooms", ["room_id", "start_ts", "end_ts"])
    t = int((rooms["start_ts"][10] + rooms["end_ts"][10]) // 2)  # room 10 is surely on air
    live = w.live_rooms(t)
    expect = rooms["room_id"][(rooms["start_ts"] <= t) & (t < rooms["end_ts"])]
    assert len(live) > 0 and np.array_equal(live, expect)
    s = w.slice_on_air(live, t)
    sl = _cols(tiny_world, "slices", ["slice_id", "start_ts", "end_ts"])
    i = np.searchsorted(sl["slice_id"], s)
    assert ((sl["start_ts"][i] <= t) & (t < sl["end_ts"][i])).all()
    off = w.slice_on_air(np.array([0]), int(rooms["end_ts"][0]))
    assert off[0] == -1
    assert w.click_prob([0], [0], int(rooms["end_ts"][0]))[0] == 0.0
    with pytest.raises(UsageError, match="room_ids"):
        w.click_prob([0], [10**9], t)
    with pytest.raises(UsageError, match="user_ids"):
        w.click_prob([-1], [0], t)


def test_click_prob_is_calibrated_against_logged_clicks(tiny_world):
    w = World.load(tiny_world)
    imp = _cols(tiny_world, "impressions", ["ts", "user_id", "room_id", "position", "click", "long_view", "like"])
    probs = w.label_probs(imp["user_id"], imp["room_id"], imp["ts"], imp["position"])
    p = probs["click"]
    assert np.allclose(p, w.click_prob(imp["user_id"], imp["room_id"], imp["ts"], imp["position"]))
    assert (p > 0).all() and (p < 1).all()
    # Overall and per probability-quintile: observed rate within 4 standard errors of the truth.
    edges = np.quantile(p, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 4)
    for b in [None, *range(5)]:
        m = np.ones(len(p), bool) if b is None else bins == b
        se = np.sqrt((p[m] * (1 - p[m])).sum()) / m.sum()
        assert abs(imp["click"][m].mean() - p[m].mean()) < 4 * se + 1e-4, b
    # The truth actually discriminates: top quintile clicks far more than the bottom one.
    assert imp["click"][bins == 4].mean() > 3 * imp["click"][bins == 0].mean()
    for lab in ("long_view", "like"):
        q = probs[lab]
        se = np.sqrt((q * (1 - q)).sum()) / len(q)
        assert abs(imp[lab].mean() - q.mean()) < 4 * se + 1e-4, lab


def test_watch_seconds_respects_room_end_and_expectation(tiny_world):
    w = World.load(tiny_world)
    rooms = _cols(tiny_world, "rooms", ["start_ts", "end_ts"])
    rid = np.repeat(np.arange(5), 4000)
    t = rooms["start_ts"][rid] + 60_000  # one minute into each room
    uid = np.arange(len(rid)) % w.n_users
    secs = w.watch_seconds(uid, rid, t, np.random.default_rng(0))
    assert (secs >= 0).all() and (secs <= (rooms["end_ts"][rid] - t) / 1000).all()
    probs = w.label_probs(uid, rid, t)
    expected_given_click = probs["watch_s"] / probs["click"]
    assert abs(secs.mean() - expected_given_click.mean()) / expected_given_click.mean() < 0.05
    labels = w.sample_labels(uid, rid, t, None, np.random.default_rng(1))
    assert set(labels) == {"click", "long_view", "like", "follow", "gift", "watch_s"}


# ---------------------------------------------------------------- segments (foresight) leave the default world alone
# sha256 over every column's Arrow buffers of the default tiny world (seed 0), computed from
# the generator before segments and highlight moments existed: the FLUID main job's world
# (and so every number it reported) must stay exactly this.
_TINY_TABLE_SHA256 = {
    "impressions": "9c40bc20055e2fdd8dadd40dd76632ddc5d634dc5319bcd903fda9e8e6a33481",
    "slices": "e5a0fe5c40b48cb40f099b74483f6566365fd5eae45ebd17b33a0d33b040c32a",
    "rooms": "334e13408eb8edf70f70d0ce276a9c5f0b708d8147475b7c217c922d8aab0664",
    "authors": "45a3f8e56f539aa0e6d1592eb4075746c5435df88e31e5e81ab5ee99f81d4aa9",
    "users": "67b273dec86e6f1fc410edf5f5a93a59a3e8f2190eb0a6eefbd375269f0adb84",
    "queries": "f622a84dfc1cdb0ac7a3d7d33cb9c00c1c40396def64c1270e0886142f27a41a",
}
_TINY_TRUTH_SHA256 = "e72420cf52607177bae9b4d48f7a43676994d5a1adf364fab302159e70f07fb4"


def _table_sha256(path: Path, name: str) -> str:
    import hashlib

    t = pq.read_table(path / f"{name}.parquet")
    h = hashlib.sha256()
    for c in t.column_names:
        h.update(c.encode())
        for buf in t.column(c).combine_chunks().buffers():
            if buf is not None:
                h.update(buf.to_pybytes())
    return h.hexdigest()


def test_default_tiny_world_is_unchanged_by_segments(tiny_world):
    import hashlib

    for name, digest in _TINY_TABLE_SHA256.items():
        assert _table_sha256(tiny_world, name) == digest, name
    assert hashlib.sha256((tiny_world / "world" / "truth.npz").read_bytes()).hexdigest() == _TINY_TRUTH_SHA256
    assert not (tiny_world / "segments.parquet").exists()
    cfg = WorldConfig.for_scale("tiny", seed=0)
    assert "segments" not in cfg.to_dict() and WorldConfig.from_dict(cfg.to_dict()) == cfg


def _segment_world(seed: int, **effects) -> WorldConfig:
    return dataclasses.replace(_micro(seed), segments=True, **effects)


def test_segments_follow_slices_and_leave_other_tables_alone(tmp_path):
    base = generate_world(_micro(3), tmp_path / "base", progress=False)
    cfg = _segment_world(3, highlight_gift_weight=2.0, highlight_follow_weight=1.0)
    seg = generate_world(cfg, tmp_path / "seg", progress=False)
    for name in ("authors", "users", "rooms", "slices", "queries"):
        assert _table_sha256(base, name) == _table_sha256(seg, name), name
    b = _cols(base, "impressions", ["ts", "user_id", "room_id", "click"])
    s = _cols(seg, "impressions", ["ts", "user_id", "room_id", "click"])
    for k in b:  # exposure and clicks do not see segments; only after-click labels do
        np.testing.assert_array_equal(b[k], s[k])
    g = _cols(seg, "segments", ["segment_id", "room_id", "slice_id", "start_ts", "end_ts", "topic_l4", "moment"])
    sl = _cols(seg, "slices", ["slice_id", "start_ts", "end_ts", "topic_l4"])
    assert (np.diff(g["segment_id"]) == 1).all() and set(np.unique(g["moment"])) <= {0, 1, 2}
    assert ((g["end_ts"] - g["start_ts"]) <= 30_000).all() and (g["end_ts"] > g["start_ts"]).all()
    idx = np.searchsorted(sl["slice_id"], g["slice_id"])
    assert (sl["start_ts"][idx] <= g["start_ts"]).all() and (g["end_ts"] <= sl["end_ts"][idx]).all()
    assert (g["topic_l4"] == sl["topic_l4"][idx]).mean() > 0.7  # the slice's topic, with drift
    assert 0.05 < (g["moment"] > 0).mean() < 0.6
    assert World.load(seg).segment_moment is not None and World.load(base).segment_moment is None


def test_highlight_moments_raise_their_engagement(tmp_path):
    cfg = _segment_world(4, highlight_gift_weight=3.0, highlight_follow_weight=3.0)
    world_dir = generate_world(cfg, tmp_path / "w", progress=False)
    world = World.load(world_dir)
    imp = _cols(world_dir, "impressions", ["ts", "user_id", "room_id"])
    base = dataclasses.replace(cfg, highlight_gift_weight=0.0, highlight_follow_weight=0.0)
    plain = World(base, world.arrays())
    up = world.upcoming_moments(imp["room_id"], imp["ts"])
    p, q = world.label_probs(imp["user_id"], imp["room_id"], imp["ts"]), plain.label_probs(imp["user_id"], imp["room_id"], imp["ts"])
    perf, inter = up["performance"] > 0, up["interaction"] > 0
    assert (p["gift"][perf] > q["gift"][perf]).all() and np.allclose(p["gift"][~perf], q["gift"][~perf])
    assert (p["follow"][inter] > q["follow"][inter]).all() and np.allclose(p["click"], q["click"])


def test_segment_config_validation():
    with pytest.raises(ConfigError, match="segment_s"):
        WorldConfig(segments=True, segment_s=7)
    with pytest.raises(ConfigError, match="needs segments=True"):
        WorldConfig(highlight_gift_weight=1.0)
