import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from fluidrec.data.io import Dataset
from fluidrec.errors import DataError
from fluidrec.ranker.features import FeatureConfig, Features, _last_k_before, build_features


def test_features_are_causal(toy, toy_features):
    ds_dir, _ = toy
    f = toy_features
    ds = Dataset(ds_dir)
    imp = ds.table("impressions")
    slices = ds.table("slices")
    start = dict(zip(slices.column("slice_id").to_pylist(), slices.column("start_ts").to_pylist()))
    assert all(start[s] <= t for s, t in zip(imp.column("slice_id").to_pylist(), f.ts.tolist()))
    # history: rows of the same user, clicked, strictly earlier, most recent first
    rows = np.flatnonzero((f.hist_rows >= 0).any(1))
    assert len(rows) > 100
    for i in rows[:300]:
        h = f.hist_rows[i][f.hist_rows[i] >= 0]
        assert (f.user_id[h] == f.user_id[i]).all()
        assert (f.ts[h] < f.ts[i]).all()
        assert (f.labels[h, 0] == 1).all()
        assert (np.diff(f.ts[h]) <= 0).all()
    # exposure counts only earlier impressions of the same room
    i = len(f) - 1
    assert f.exposure[i] == ((f.room_id == f.room_id[i]) & (f.ts < f.ts[i])).sum()
    assert 0.0 < f.seen[f.n_train :].mean() < 1.0 and f.seen[: f.n_train].all()


def test_last_k_matches_plain_loop():
    rng = np.random.default_rng(0)
    g, t, e = rng.integers(0, 5, 300), np.sort(rng.integers(0, 100, 300)), rng.integers(0, 2, 300)
    fast = _last_k_before(g, t, e, 3)
    for i in range(300):
        prev = [j for j in range(300) if g[j] == g[i] and t[j] < t[i] and e[j]]
        prev = sorted(prev, key=lambda j: (t[j], j))[::-1][:3]
        assert fast[i][: len(prev)].tolist() == prev and (fast[i][len(prev) :] == -1).all()


def test_batch_and_cache_round_trip(toy_features, tmp_path):
    b = toy_features.batch(slice(0, 64))
    codes, mask = b.row_histories()
    assert b.slice_codes.shape == (64, 3) and codes.shape == (64, 64, 3) and set(b.labels) >= {"click", "gift"}
    assert len(b.to("cpu")) == 64
    plain = toy_features.batch(slice(0, 64), share_histories=False)
    assert plain.hist_group is None and plain.hist_codes.shape == (64, 64, 3)
    assert torch.equal(codes, plain.hist_codes) and torch.equal(mask, plain.hist_mask)
    p = toy_features.save(tmp_path / "f.npz")
    g = Features.load(p)
    assert g.n_train == toy_features.n_train and np.array_equal(g.hist_rows, toy_features.hist_rows)


def test_mismatched_codes_raise(toy, tmp_path):
    ds, codes = toy
    rc = pq.read_table(codes / "room_codes.parquet")
    pq.write_table(rc.slice(0, rc.num_rows - 5), tmp_path / "room_codes.parquet")
    with pytest.raises(DataError, match="do not match"):
        build_features(ds, codes / "slice_codes.parquet", tmp_path / "room_codes.parquet", FeatureConfig(test_fraction=0.2))
    sc = pq.read_table(codes / "slice_codes.parquet")
    pq.write_table(sc.slice(1), tmp_path / "slice_codes.parquet")
    with pytest.raises(DataError, match="slice_id"):
        build_features(ds, tmp_path / "slice_codes.parquet", codes / "room_codes.parquet", FeatureConfig(test_fraction=0.2))
