"""Truth rows: scores equal a direct computation from the world's arrays, the rows rank as the
truth says, and the headroom share is the hand-checked ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fluidrec.data.io import Dataset
from fluidrec.data.world import World
from fluidrec.errors import DataError, UsageError
from fluidrec.metrics import auc, gauc, logloss
from fluidrec.simulate.truth_rows import TRUTH_ROWS, headroom_share, truth_rows, truth_scores
from tests.helpers import make_minimal_dataset

DAY_MS = 86_400_000


def _impressions(path):
    ds = Dataset(path)
    return {c: ds.numpy("impressions", c).astype(np.int64) for c in ("ts", "user_id", "room_id", "slice_id", "position", "click")}


def _n_train(ts: np.ndarray) -> int:
    return int(np.searchsorted(ts, ts[-1] - DAY_MS, side="right"))  # FeatureConfig(test_days=1.0)


def test_headroom_share_by_hand() -> None:
    assert headroom_share(0.70, 0.60, 0.75) == pytest.approx(0.10 / 0.15)
    assert headroom_share(0.60, 0.60, 0.75) == 0.0
    assert headroom_share(0.75, 0.60, 0.75) == 1.0
    assert headroom_share(0.80, 0.60, 0.75) == pytest.approx(4 / 3)  # above the ceiling: memorises rooms
    assert headroom_share(0.55, 0.60, 0.75) == pytest.approx(-1 / 3)
    assert math.isnan(headroom_share(0.70, 0.60, 0.60))  # no headroom
    assert math.isnan(headroom_share(float("nan"), 0.60, 0.75))


def test_scores_match_direct_computation(tiny_world) -> None:
    w = World.load(tiny_world)
    imp = _impressions(tiny_world)
    rows = np.array([0, 7, 1234, len(imp["ts"]) - 1])
    s = truth_scores(tiny_world, rows)
    assert set(s) == set(TRUTH_ROWS)
    c = w.cfg
    for k, i in enumerate(rows):
        u, r, sl, p = (int(imp[col][i]) for col in ("user_id", "room_id", "slice_id", "position"))
        aff = float(w.user_affinity[u, w.slice_leaf[sl]])
        pos = -c.position_weight * math.log2(1 + p)
        no_id = c.click_bias + aff + c.quality_weight * math.log(float(w.author_quality[w.room_author[r]])) + float(w.user_bias[u]) + pos
        noise = float(w._pair_noise(np.array([u]), np.array([r]))[0])
        assert s["content_only"][k] == pytest.approx(aff, abs=1e-12)
        assert s["position_only"][k] == pytest.approx(pos, abs=1e-12)
        assert s["ceiling_no_id"][k] == pytest.approx(no_id, abs=1e-5)
        assert s["oracle"][k] == pytest.approx(no_id + float(w.room_effect[r]) + noise, abs=1e-5)
    # sigmoid(oracle) is exactly the probability the clicks were drawn from
    p = w.click_prob(imp["user_id"][rows], imp["room_id"][rows], imp["ts"][rows], imp["position"][rows])
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-s["oracle"])), p, rtol=1e-12)


def test_scores_rows_selection(tiny_world) -> None:
    full = truth_scores(tiny_world)
    n = len(full["oracle"])
    mask = np.zeros(n, bool)
    mask[::97] = True
    for rows, idx in ((slice(100, 200), np.arange(100, 200)), (mask, np.flatnonzero(mask)), (np.array([-1, 3]), np.array([n - 1, 3]))):
        part = truth_scores(tiny_world, rows)
        for name in TRUTH_ROWS:
            np.testing.assert_array_equal(part[name], full[name][idx])
    with pytest.raises(UsageError, match="rows must index"):
        truth_scores(tiny_world, np.array([n]))


def test_click_logit_parts_sum_to_logit(tiny_world) -> None:
    w = World.load(tiny_world)
    imp = _impressions(tiny_world)
    parts = w.click_logit_parts(imp["user_id"], imp["room_id"], imp["slice_id"], imp["position"])
    total = sum(v for k, v in parts.items() if k != "logit")
    np.testing.assert_allclose(total, parts["logit"], atol=1e-5)
    with pytest.raises(UsageError, match="slice_ids"):
        w.click_logit_parts([0], [0], [len(w.slice_leaf)])


def test_truth_rows_on_tiny_world(tiny_world) -> None:
    imp = _impressions(tiny_world)
    n_train = _n_train(imp["ts"])
    rows = truth_rows(tiny_world, n_train)
    assert list(rows) == list(TRUTH_ROWS)
    o, c, p = rows["oracle"], rows["ceiling_no_id"], rows["position_only"]
    assert o["auc"] > c["auc"] > p["auc"] > 0.5  # tiny world, seed 0: 0.77 > 0.73 > 0.62
    assert c["auc"] - p["auc"] > 0.05  # there is headroom to share
    assert o["auc_new_room"] > c["auc_new_room"] > p["auc_new_room"]
    assert c["headroom"] == pytest.approx(1.0) and p["headroom"] == 0.0 and o["headroom"] > 1.0
    assert rows["content_only"]["logloss"] is None and 0 < o["logloss"] < 0.2
    # the rows are the project's metric functions applied to the test rows' scores
    test = slice(n_train, None)
    s = truth_scores(tiny_world, test)
    y = imp["click"][test]
    new = ~np.isin(imp["room_id"][test], np.unique(imp["room_id"][:n_train]))
    assert new.any()
    for name in TRUTH_ROWS:
        assert rows[name]["auc"] == auc(y, s[name])
        assert rows[name]["auc_new_room"] == auc(y[new], s[name][new])
        assert rows[name]["gauc"] == gauc(imp["user_id"][test], y, s[name])
    assert o["logloss"] == logloss(y, 1.0 / (1.0 + np.exp(-s["oracle"])))
    assert rows["content_only"]["headroom"] == headroom_share(rows["content_only"]["auc"], p["auc"], c["auc"])
    # seen_mask over all rows or over test rows: the same new-room rows
    seen_all = np.isin(imp["room_id"], np.unique(imp["room_id"][:n_train]))
    assert truth_rows(tiny_world, n_train, seen_all) == truth_rows(tiny_world, n_train, seen_all[n_train:])
    with pytest.raises(UsageError, match="seen_mask"):
        truth_rows(tiny_world, n_train, seen_all[:10])
    with pytest.raises(UsageError, match="n_train"):
        truth_rows(tiny_world, 0)


def test_no_world_truth_is_a_data_error(tmp_path) -> None:
    ds = make_minimal_dataset(tmp_path / "real")
    with pytest.raises(DataError, match="no world/ truth"):
        truth_rows(ds, 10)
    with pytest.raises(DataError, match="no world/ truth"):
        truth_scores(ds)
