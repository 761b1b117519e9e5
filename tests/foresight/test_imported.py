"""The foresight run on an imported KuaiLive-M3 dataset (the importer's fixture)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import main
from fluidrec.data.importers import ImportOptions, import_kuailive_m3
from fluidrec.foresight.config import ARMS, STRATEGIES, TASKS
from fluidrec.foresight.imported import load_imported, split_time
from tests.fixtures.kuailive_m3 import MIN, T0, write_kuailive_m3_fixture


@pytest.fixture(scope="module")
def klm3(tmp_path_factory):
    root = tmp_path_factory.mktemp("klm3")
    src = write_kuailive_m3_fixture(root / "src")
    import_kuailive_m3(src, root / "dataset", ImportOptions(progress=False))
    return root


def test_segments_carry_the_published_vectors(klm3):
    data = load_imported(klm3 / "dataset")
    assert len(data.seg) == 16 and data.emb.shape == (16, 128)  # rooms 101, 102, 104; room 103 had no segment
    shard = pq.read_table(klm3 / "src" / "live_emb_128_ts" / "live_emb_128_ts_part0.parquet").to_pydict()
    want = np.array(shard["feature_128"][shard["segment_id"].index("s101_4")], np.float32)
    row = np.flatnonzero((data.seg["room_id"] == 101) & (data.seg["end_ts"] == T0 + 4 * MIN))
    np.testing.assert_array_equal(data.emb[row[0]], want)
    # dense ids; the author of room 101 and 104 is the same author
    author_of = {int(r): set(data.seg["author_id"][data.seg["room_id"] == r].tolist()) for r in (101, 102, 104)}
    assert data.n_authors == 3 and author_of[101] == author_of[104] != author_of[102]
    # every impression's on-air segment is its slice: a segment of its own room
    on = data.segment_on_air()
    assert (on >= 0).all() and (data.seg["room_id"][on] == data.imp["room"]).all()
    assert data.author_topic.tolist().count(-1) == 0  # each author has a tagged video (author 3: chess)


def test_split_last_day_or_last_fifth():
    day = 86_400_000
    assert split_time(np.array([5 * day + 1, 5 * day + 9, 6 * day + 3])) == (6 * day, "last day")
    ts, how = split_time(np.arange(10) * 1000)
    assert ts == 7000 and (np.arange(10) * 1000 > ts).sum() == 2 and "20%" in how


def test_foresight_run_on_the_imported_fixture(klm3, tmp_path):
    out = tmp_path / "run"
    assert main(["foresight", "reproduce", "--scale", "tiny", "--dataset", str(klm3 / "dataset"), "--out", str(out),
                 "--no-progress", "--json"]) == 0
    text = (out / "results.json").read_text()
    assert "NaN" not in text  # an undefined AUC (one class in the test part) is null
    r = json.loads(text)
    for s in STRATEGIES:
        assert 0.0 <= r["table3"][s]["acc"] <= 1.0
    assert r["data"]["test_states"] > 0 and r["data"]["segments"] == 16
    for arm in ARMS:
        for task in TASKS:
            assert r["table1"][arm][task]["auc"] is None or 0.0 <= r["table1"][arm][task]["auc"] <= 1.0
    assert r["table2"]["skipped"].startswith("imported data")
    assert "moment_rates_test" not in r["figure3"] and r["figure3"]["room_id"] in (101, 102, 104)
    assert r["figure4"]["authors"] == 2  # authors 1 and 2 have live segments before the split and tagged videos
    assert not (out / "lsa").exists()  # the published vectors, not the LSA encoder
    assert len(np.load(out / "sids.npy")) == 16
    assert "imported data" in (out / "report.md").read_text().splitlines()[0]


def test_a_dataset_without_segment_vectors_is_a_clear_error(klm3, tmp_path, capsys):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(klm3 / "dataset", ds)
    (ds / "slice_embeddings.parquet").unlink()
    assert main(["foresight", "reproduce", "--scale", "tiny", "--dataset", str(ds), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "slice_embeddings.parquet" in capsys.readouterr().err


def test_main_reproduce_takes_the_dataset_for_the_foresight_paper_only(klm3, tmp_path, capsys):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(klm3 / "dataset", ds)
    (ds / "slice_embeddings.parquet").unlink()
    # the same imported-data path as `fluidrec foresight reproduce --dataset`: its error, exit 2
    assert main(["reproduce", "--paper", "foresight", "--scale", "tiny", "--dataset", str(ds), "--out", str(tmp_path / "run"), "--json"]) == 2
    assert "slice_embeddings.parquet" in capsys.readouterr().err
    assert main(["reproduce", "--scale", "tiny", "--dataset", str(ds), "--out", str(tmp_path / "run2")]) == 2
    assert "--dataset needs --paper foresight" in capsys.readouterr().err
