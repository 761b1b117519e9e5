"""MicroLens and MIND importers feed ``video_impressions``; the event log reads them (fixtures, then real data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.codes.io import write_codes
from fluidrec.data.importers import ImportOptions, import_microlens, import_mind
from fluidrec.data.validate import validate_dataset
from fluidrec.sequence import event_log_summary, history_batch, load_event_log, split_indices
from tests.fixtures.checks import FIXTURES

SHARED = Path(os.environ.get("FLUIDREC_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
QUIET = dict(progress=False)


def _need(sub: str) -> Path:
    p = SHARED / sub
    if not p.is_dir():
        pytest.skip(f"real data not found at {p} (set FLUIDREC_SHARED_DATA to the shared data directory)")
    return p


def _table(path: Path, name: str) -> dict[str, np.ndarray]:
    t = pq.read_table(path / f"{name}.parquet")
    return {c: t.column(c).to_numpy() for c in t.column_names}


def test_microlens_sequences_become_feed_events(tmp_path):
    import_microlens(FIXTURES / "microlens", tmp_path, ImportOptions(negatives=2, seed=1, **QUIET))
    validate_dataset(tmp_path)
    v, imp = _table(tmp_path, "video_impressions"), _table(tmp_path, "impressions")
    assert len(v["ts"]) == len(imp["ts"]) and (np.diff(v["ts"]) >= 0).all()
    assert np.array_equal(v["long_view"], v["watch_ratio"].astype(np.int8)) and 0 < v["long_view"].mean() < 1
    log = load_event_log(tmp_path, None)  # sequence_index times: leave-last-out
    pos = log.label == 1
    for u in range(log.n_users):  # each user's last positive (and its negatives) is the test split
        mine = log.user == u
        assert log.is_test[mine].sum() == (log.ts[mine] == log.ts[mine].max()).sum()
    # user 3's sequence "19 11 20 13 12 16" in order, 16 last and held out
    u3 = int(np.flatnonzero(np.unique(_table(tmp_path, "users")["user_id"]) == 3)[0])
    seq = log.item_raw[log.item[(log.user == u3) & pos]].tolist()
    assert seq == [19, 11, 20, 13, 12, 16]
    t = np.flatnonzero((log.user == u3) & pos & log.is_test)
    b = history_batch(log, t, 16)
    hist = b.hist_item[0][b.hist_mask[0]].numpy()
    assert [int(x) for x in log.item_raw[hist][b.hist_watch[0][b.hist_mask[0]].numpy() > 0]] == [19, 11, 20, 13, 12]


def test_codes_dir_maps_items_and_unknown_items_get_minus_one(tmp_path):
    import_microlens(FIXTURES / "microlens", tmp_path / "ds", ImportOptions(**QUIET))
    ids = np.array([11, 12, 13, 14], np.int64)
    codes = np.array([[1, 2], [1, 3], [0, 0], [2, 1]])
    (tmp_path / "codes").mkdir()
    write_codes(tmp_path / "codes" / "slice_codes.parquet", ids, codes, codebook_size=4)
    log = load_event_log(tmp_path / "ds", tmp_path / "codes")
    assert log.codebook_size == 4 and log.levels == 2
    raw = log.item_raw[log.item]
    for i, c in zip(ids, codes):
        assert (log.codes[raw == i] == c).all()
    assert (log.codes[~np.isin(raw, ids)] == -1).all()
    s = event_log_summary(log)
    assert s["coded_share"] == pytest.approx(np.isin(raw, ids).mean())


def test_mind_impressions_and_history_feed(tmp_path):
    import_mind(FIXTURES / "mind", tmp_path / "plain", ImportOptions(**QUIET))
    plain = _table(tmp_path / "plain", "video_impressions")
    imp = _table(tmp_path / "plain", "impressions")
    assert len(plain["ts"]) == len(imp["ts"]) and np.array_equal(np.sort(plain["long_view"]), np.sort(imp["click"]))
    s = import_mind(FIXTURES / "mind", tmp_path / "hist", ImportOptions(**QUIET), history_events=True)
    validate_dataset(tmp_path / "hist")
    v = _table(tmp_path / "hist", "video_impressions")
    window = int(imp["ts"].min())
    h = v["request_id"] == -1
    assert s.notes["video_history_events"] == int(h.sum()) > 0 and (v["ts"][h] < window).all()
    assert (v["long_view"][h] == 1).all() and (v["ts"][~h] >= window).all()
    # U10's earliest row has history "N1 N2": N1 two minutes, N2 one minute before the window
    u10 = h & (v["user_id"] == 10)
    assert v["slice_id"][u10].tolist() == [1, 2] and (window - v["ts"][u10]).tolist() == [120_000, 60_000]
    log = load_event_log(tmp_path / "hist", None, test_days=1)
    test = split_indices(log, "test")
    assert len(test) and not log.is_test[log.ts < window].any()  # history clicks are training events
    b = history_batch(log, test, 8)
    assert b.hist_mask.any()


def test_real_microlens_feed(tmp_path):
    src = _need("microlens_50k")
    import_microlens(src, tmp_path, ImportOptions(max_users=300, negatives=1, seed=0, **QUIET))
    log = load_event_log(tmp_path, None)
    s = event_log_summary(log)
    assert s["users"] == 300 and 0.4 < s["label_rate"] < 0.6 and s["test_events"] >= 300
    assert 0.0 <= s["cold_share_of_test"] < 1.0


def test_real_mind_feed_with_history(tmp_path):
    src = _need("mind_small_sample") / "MINDsmall_train"
    s = import_mind(src, tmp_path, ImportOptions(max_users=300, **QUIET), history_events=True)
    log = load_event_log(tmp_path, None, test_days=1)
    summary = event_log_summary(log)
    assert s.notes["video_history_events"] > 0 and summary["users"] == 300
    assert summary["events_per_user_mean"] > s.impressions / 300  # histories lengthen the feed
    assert 0.0 < summary["cold_share_of_test"] <= 1.0
