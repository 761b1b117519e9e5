"""`fluidrec codes oracle`: true-topic codes reproduce the taxonomy path, the room codes are the
usual causal vote, the ranker reads the files, and datasets without topics fail cleanly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import main
from fluidrec.codes import NgramSpec, child_codes, oracle_codes, read_codes, read_room_codes, room_codes_for_dataset
from fluidrec.data.io import Dataset
from fluidrec.data.schema import TOPIC_COLUMNS
from fluidrec.errors import DataError
from tests.helpers import make_minimal_dataset


def test_child_codes_by_hand() -> None:
    # tree ids: id_l = id_(l-1) * b_l + child; 5 = 1 * 4 + 1
    codes, n = child_codes(np.array([[1, 5], [0, 1], [1, 7]]), branching=(2, 4))
    assert codes.tolist() == [[1, 1], [0, 1], [1, 3]] and n == 4
    # no tree known: rank of the value among those under the same parent path
    codes, n = child_codes(np.array([[7, 30], [7, 12], [3, 12], [3, -1]]))
    assert codes.tolist() == [[1, 1], [1, 0], [0, 1], [0, 0]] and n == 2
    with pytest.raises(DataError, match="column topic_l2, row 1.*not a child of its level-1 topic"):
        child_codes(np.array([[1, 5], [0, 5]]), branching=(2, 4))
    with pytest.raises(DataError, match="column topic_l1, row 0.*not a node"):
        child_codes(np.array([[2, 8]]), branching=(2, 4))


def test_oracle_round_trip(tiny_world, tmp_path, capsys) -> None:
    out = tmp_path / "oracle"
    assert main(["codes", "oracle", "--dataset", str(tiny_world), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_codes"] == 8 and summary["unknown_share"] == 0.0
    ds = Dataset(tiny_world)
    sl = ds.table("slices", ["slice_id", "domain", *TOPIC_COLUMNS])
    topics = np.stack([sl.column(c).to_numpy() for c in TOPIC_COLUMNS], axis=1).astype(np.int64)  # (n, 4)
    ids, codes = read_codes(out / "slice_codes.parquet")
    # every slice, live and video, has a code in [0, N) at every level
    assert ids.tolist() == sl.column("slice_id").to_numpy().tolist() and codes.shape == (len(ids), 4)
    assert "video" in set(sl.column("domain").to_pylist()) and codes.min() >= 0 and codes.max() < summary["num_codes"]
    # the codes are the taxonomy path: child indices rebuild the global topic ids
    branching = ds.manifest["world_config"]["branching"]
    node = np.zeros(len(ids), np.int64)
    for lv in range(4):
        node = node * branching[lv] + codes[:, lv]
        np.testing.assert_array_equal(node, topics[:, lv])
    # prefix n-gram ids: same row at level l exactly when the true level-l node is the same
    rows = NgramSpec(summary["num_codes"], 4).ids(codes)
    for lv in range(4):
        pairs = np.unique(np.stack([rows[:, lv], topics[:, lv]], axis=1), axis=0)
        assert len(pairs) == len(np.unique(rows[:, lv])) == len(np.unique(topics[:, lv]))
    # room codes: the causal vote over these slice codes, in the `codes rooms` format
    room = read_room_codes(out / "room_codes.parquet")
    np.testing.assert_array_equal(room, room_codes_for_dataset(tiny_world, ids, codes).codes)
    assert json.loads((out / "room_codes.config.json").read_text())["command"] == "codes oracle"
    # the ranker reads them as any learned codes
    from fluidrec.ranker.features import build_features

    feats = build_features(tiny_world, out / "slice_codes.parquet", out / "room_codes.parquet")
    assert feats.num_codes == 8 and feats.slice_codes.shape[1] == 4
    imp_slice = ds.numpy("impressions", "slice_id").astype(np.int64)
    np.testing.assert_array_equal(feats.slice_codes, codes[imp_slice])  # slice ids are 0..n-1 here


def test_dataset_without_topic_columns_exits_2(tiny_world, tmp_path, capsys) -> None:
    bad = tmp_path / "no_topics"
    bad.mkdir()
    shutil.copy(tiny_world / "manifest.json", bad / "manifest.json")
    pq.write_table(pq.read_table(tiny_world / "slices.parquet").drop_columns(list(TOPIC_COLUMNS)), bad / "slices.parquet")
    assert main(["codes", "oracle", "--dataset", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "slices.parquet" in err and "topic_l1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_dataset_with_unknown_topics(tmp_path, capsys) -> None:
    root = make_minimal_dataset(tmp_path / "ds")
    path = root / "slices.parquet"
    table = pq.read_table(path)
    n = table.num_rows
    for col in TOPIC_COLUMNS:
        table = table.append_column(col, pa.array(np.full(n, -1, np.int32)))
    pq.write_table(table, path)
    assert main(["codes", "oracle", "--dataset", str(root), "--out", str(tmp_path / "out")]) == 2
    assert "no ground-truth topics" in capsys.readouterr().err
    # tagged real data: dense ids at levels 1-2, unknown deeper; the video (last slice) untagged
    room = table.column("room_id").to_numpy()
    l1 = np.where(room >= 0, room % 2 * 10, -1).astype(np.int32)   # two level-1 topics: 0 and 10
    l2 = np.where(room >= 0, room % 3 + 5, -1).astype(np.int32)     # level-2 ids 5, 6, 7
    table = table.set_column(table.schema.get_field_index("topic_l1"), "topic_l1", pa.array(l1))
    table = table.set_column(table.schema.get_field_index("topic_l2"), "topic_l2", pa.array(l2))
    pq.write_table(table, path)
    ids, codes, num = oracle_codes(root)
    assert len(ids) == n - 1 and num == 3
    expect_l1 = (room[:-1] % 2).astype(np.int64)
    np.testing.assert_array_equal(codes[:, 0], expect_l1)
    assert (codes[:, 2:] == 0).all()  # one (unknown) child per node below level 2
    # level-2 codes rank within the parent: ids 5..7 under each level-1 topic
    for parent in (0, 1):
        sub = codes[codes[:, 0] == parent, 1]
        values = np.unique(l2[:-1][expect_l1 == parent])
        np.testing.assert_array_equal(sub, np.searchsorted(values, l2[:-1][expect_l1 == parent]))
    assert main(["codes", "oracle", "--dataset", str(root), "--out", str(tmp_path / "out")]) == 0
    from fluidrec.ranker.features import FeatureConfig, build_features

    feats = build_features(root, tmp_path / "out" / "slice_codes.parquet", tmp_path / "out" / "room_codes.parquet", FeatureConfig())
    assert feats.num_codes == 3
