"""Peer arms (lr, gbdt): causal features, fast path vs reference loop, fit, files, CLI."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluidrec.data.schema import LABELS_BINARY
from fluidrec.errors import ConfigError, DataError
from fluidrec.metrics import auc
from fluidrec.ranker.features import FeatureConfig, Features, load_or_build_features
from fluidrec.ranker.peer_features import causal_sums, feature_names, peer_features, peer_features_reference
from fluidrec.ranker.peer_models import PeerModel, load_peer, save_peer
from fluidrec.ranker.peers import PeerConfig, evaluate_peer, fit_linear, fit_trees, train_peer

from .test_cli import run

FAST = PeerConfig(threads=1, rounds=60)  # one thread: the CI box's second core is often busy


def make_features(ts, user, author, position, codes, click, age_min=None, exposure=None) -> Features:
    """A Features object holding only what peer_features reads (the rest are zeros)."""
    n = len(ts)
    ts = np.asarray(ts, np.int64)
    labels = np.zeros((n, len(LABELS_BINARY)), np.int8)
    labels[:, 0] = click
    codes = np.asarray(codes, np.int32).reshape(n, -1)
    zeros = np.zeros(n, np.int64)
    return Features(
        ts=ts, user_id=np.asarray(user, np.int64), room_id=zeros, user=np.asarray(user, np.int64),
        profile=np.zeros((n, 1), np.int16), hour=((ts // 3_600_000) % 24).astype(np.int8),
        position=np.asarray(position, np.int8), age_bucket=np.zeros(n, np.int8),
        age_min=np.zeros(n, np.float32) if age_min is None else np.asarray(age_min, np.float32),
        exposure=np.zeros(n, np.int32) if exposure is None else np.asarray(exposure, np.int32),
        author=np.asarray(author, np.int64), item=zeros, slice_codes=codes, room_codes=codes,
        hist_rows=np.full((n, 1), -1, np.int32), labels=labels, seen=np.ones(n, bool), room_vocab=np.zeros(1, np.int64),
        n_train=max(n // 2, 1), num_codes=int(codes.max()) + 1, config=FeatureConfig(),
    )  # fmt: skip


def col(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, feature_names().index(name)]


def test_hand_made_ties_do_not_see_each_other():
    # rows 0 and 1 share ts 10 (one request); rows 2 and 3 share ts 20
    f = make_features(ts=[10, 10, 20, 20], user=[1, 1, 1, 2], author=[5, 5, 5, 6], position=[0, 1, 0, 9],
                      codes=[[1, 2], [1, 3], [1, 2], [0, 0]], click=[1, 0, 0, 1])  # fmt: skip
    x, names = peer_features(f, prior_strength=1.0, share_prior_strength=2.0)
    assert x.shape == (4, len(names)) and x.dtype == np.float32
    np.testing.assert_allclose(col(x, "user_log_imps"), np.log1p([0, 0, 2, 0]), rtol=1e-6)
    np.testing.assert_allclose(col(x, "user_log_clicks"), np.log1p([0, 0, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(col(x, "author_log_imps"), np.log1p([0, 0, 2, 0]), rtol=1e-6)
    # no earlier impressions: every CTR is the Laplace prior 1/2
    assert col(x, "user_ctr")[0] == col(x, "user_ctr")[1] == 0.5
    # row 2: user 1 saw 2 impressions, 1 click, under a global prior (1 + 1) / (2 + 2)
    assert col(x, "user_ctr")[2] == pytest.approx((1 + 0.5) / (2 + 1))
    # row 2's slice (1, 2) matches the one earlier click at level 1 and at level 1+2; V = 4 codes
    assert col(x, "user_l1_share")[2] == pytest.approx((1 + 2 * (1 + 1) / (1 + 4)) / (1 + 2))
    assert col(x, "user_l12_share")[2] == pytest.approx((1 + 2 * (1 + 1) / (1 + 16)) / (1 + 2))
    assert x[3, feature_names().index("pos_7+")] == 1 and x[1, 1] == 1 and x[0, 0] == 1
    np.testing.assert_allclose(x, peer_features_reference(f, prior_strength=1.0))


def test_causal_sums_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    n = 200
    ts, k1, k2, v = np.sort(rng.integers(0, 40, n)), rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 3, (n, 2))
    fast = causal_sums([k1, k2], ts, v)
    for i in range(n):
        m = (k1 == k1[i]) & (k2 == k2[i]) & (ts < ts[i])
        assert fast[i].tolist() == v[m].sum(0).tolist()
    assert causal_sums([], ts, v)[-1].tolist() == v[ts < ts[-1]].sum(0).tolist()


@st.composite
def streams(draw):
    n = draw(st.integers(2, 30))
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))  # noqa: E731
    return dict(
        ts=sorted(ints(0, 12)), user=ints(0, 3), author=ints(0, 2), position=ints(0, 10),
        codes=np.stack([ints(0, 2), ints(0, 2)], 1), click=ints(0, 1), age_min=ints(-3, 90), exposure=ints(0, 50),
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(streams(), st.data())
def test_a_click_changes_no_feature_at_or_before_its_time(s, data):
    f = make_features(**s)
    x, _ = peer_features(f)
    np.testing.assert_allclose(x, peer_features_reference(f), rtol=1e-6, atol=1e-7)
    k = data.draw(st.integers(0, len(f) - 1))
    flipped = f.labels.copy()
    flipped[k, 0] ^= 1
    x2, _ = peer_features(dataclasses.replace(f, labels=flipped))
    upto = f.ts <= f.ts[k]
    np.testing.assert_array_equal(x2[upto], x[upto])
    later_same_user = (f.ts > f.ts[k]) & (f.user_id == f.user_id[k])
    assert not later_same_user.any() or (x2[later_same_user] != x[later_same_user]).any()


@pytest.fixture(scope="module")
def world(tiny_world, tmp_path_factory):
    """(dataset, slice codes, room codes, features) of the tiny world with true-topic codes."""
    import pyarrow.parquet as pq

    from fluidrec.codes import room_codes_for_dataset, write_codes, write_room_codes

    d = tmp_path_factory.mktemp("peer_codes")
    s = pq.read_table(tiny_world / "slices.parquet", columns=["slice_id", "topic_l1", "topic_l2", "topic_l3", "topic_l4"])
    ids = s.column("slice_id").to_numpy()
    codes = np.stack([s.column(f"topic_l{i}").to_numpy() for i in range(1, 5)], 1).astype(np.int32)
    write_codes(d / "slice_codes.parquet", ids, codes)
    rc = room_codes_for_dataset(tiny_world, ids, codes)
    write_room_codes(d / "room_codes.parquet", rc.room_ids, rc.codes)
    feats = load_or_build_features(tiny_world, d / "slice_codes.parquet", d / "room_codes.parquet", FeatureConfig(), d / "cache")
    return tiny_world, d / "slice_codes.parquet", d / "room_codes.parquet", feats


def test_world_features_are_causal_and_match_reference(world):
    *_, f = world
    x, _ = peer_features(f)
    assert np.isfinite(x).all()
    rows = slice(3000, 3300)
    sub = dataclasses.replace(f, **{k: getattr(f, k)[rows] for k in ("ts", "user_id", "author", "position", "hour", "age_min", "exposure", "slice_codes", "labels")})
    np.testing.assert_allclose(peer_features(sub)[0], peer_features_reference(sub), rtol=1e-6, atol=1e-7)
    k = int(np.flatnonzero(f.labels[:, 0] == 1)[len(f) // 200])  # an early click: many rows after it
    flipped = f.labels.copy()
    flipped[k, 0] = 0
    x2, _ = peer_features(dataclasses.replace(f, labels=flipped))
    assert np.array_equal(x2[f.ts <= f.ts[k]], x[f.ts <= f.ts[k]])
    assert not np.array_equal(x2[f.ts > f.ts[k]], x[f.ts > f.ts[k]])


@pytest.mark.parametrize("arm", ["lr", "gbdt"])
def test_peers_beat_position_only(world, tmp_path, arm):
    ds, sc, rc, f = world
    train_peer(arm, ds, sc, rc, tmp_path / arm, dataclasses.replace(FAST, rounds=500), features=f)
    assert {"peer.json", "config.json", "train_summary.json"} <= {p.name for p in (tmp_path / arm).iterdir()}
    report = evaluate_peer(tmp_path / arm, ds, features=f)
    test = slice(f.n_train, len(f))
    position_only = auc(f.labels[test, 0], -f.position[test].astype(np.float64))
    assert report["click"]["auc"] > position_only, (report["click"]["auc"], position_only)
    assert report["arm"] == arm and report["n"] == len(f) - f.n_train
    assert set(report) == {"n", "arm", "buckets", *LABELS_BINARY}
    assert set(report["buckets"]) == {"age_lt10", "age_10_30", "age_ge30", "new_room", "seen_room"}
    assert evaluate_peer(tmp_path / arm, ds)["click"] == report["click"]  # rebuilt from config.json


@pytest.mark.parametrize("arm", ["lr", "gbdt"])
def test_save_load_round_trip_gives_identical_predictions(world, tmp_path, arm):
    *_, f = world
    x, names = peer_features(f)
    y = f.labels[: f.n_train]
    heads = fit_linear(x[: f.n_train], y, FAST) if arm == "lr" else fit_trees(x[: f.n_train], y, names, FAST)
    model = PeerModel(arm, LABELS_BINARY, names, FAST.feature_kw(), heads)
    save_peer(model, tmp_path)
    loaded = load_peer(tmp_path)
    assert loaded.tasks == model.tasks and loaded.names == names
    assert np.array_equal(loaded.predict(loaded.features(f)), model.predict(x))


def test_malformed_model_files_raise_data_error(world, tmp_path):
    *_, f = world
    x, names = peer_features(f)
    y = f.labels[: f.n_train, :1]
    save_peer(PeerModel("gbdt", ("click",), names, FAST.feature_kw(), fit_trees(x[: f.n_train], y, names, FAST)), tmp_path / "g")
    (tmp_path / "g" / "gbdt_click.txt").write_text("tree\nnot a model\n")
    with pytest.raises(DataError, match="gbdt_click.txt"):
        load_peer(tmp_path / "g")
    save_peer(PeerModel("lr", ("click",), names, FAST.feature_kw(), fit_linear(x[: f.n_train], y, FAST)), tmp_path / "l")
    manifest = json.loads((tmp_path / "l" / "peer.json").read_text())
    manifest["lr"]["coef"] = [[1.0, 2.0]]  # wrong width
    (tmp_path / "l" / "peer.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="peer.json"):
        load_peer(tmp_path / "l")
    (tmp_path / "l" / "peer.json").write_text("{not json")
    with pytest.raises(DataError, match="peer.json"):
        load_peer(tmp_path / "l")


def test_config_is_validated():
    with pytest.raises(ConfigError):
        PeerConfig(tasks=("like", "click"))
    with pytest.raises(ConfigError):
        PeerConfig(valid_fraction=1.0)
    assert PeerConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(PeerConfig())))) == PeerConfig()


def test_cli_train_eval_and_bad_arm(world, tmp_path, capsys):
    ds, sc, _, _ = world
    out = tmp_path / "lr"
    base = ["ranker", "train", "--dataset", str(ds), "--codes", str(sc.parent), "--quiet", "--cache", str(tmp_path / "c")]
    assert run([*base, "--arm", "lr", "--out", str(out)]) == 0
    capsys.readouterr()
    assert run(["ranker", "eval", "--model", str(out), "--dataset", str(ds), "--cache", str(tmp_path / "c"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arm"] == "lr" and 0.5 < report["click"]["auc"] <= 1.0
    assert run([*base, "--arm", "lgbm", "--out", str(tmp_path / "x")]) == 2
    assert "unknown arm 'lgbm'" in capsys.readouterr().out and not (tmp_path / "x").exists()
