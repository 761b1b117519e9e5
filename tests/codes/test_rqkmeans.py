"""RQ-KMeans: fast encode vs NumPy reference, fit quality, determinism, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fluidrec.codes import RQKMeans, encode_reference, flat_codebook
from fluidrec.errors import ConfigError, DataError, UsageError


def _mixture(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, d)).astype(np.float32) * 3
    return (centres[rng.integers(0, 32, n)] + rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return _mixture(4000, 16)


@pytest.fixture(scope="module")
def model(data: np.ndarray) -> RQKMeans:
    return RQKMeans(levels=3, codebook_size=16, seed=3, batch_size=512).fit(data)


def _margin_ok(x: np.ndarray, codebooks: np.ndarray, rel: float = 1e-4) -> np.ndarray:
    """Rows whose reference decisions have a clear winner at every level (no float near-tie)."""
    r = x.astype(np.float64).copy()
    ok = np.ones(len(x), dtype=bool)
    for cb in codebooks.astype(np.float64):
        dist = ((r[:, None, :] - cb[None]) ** 2).sum(-1)
        part = np.sort(dist, axis=1)
        ok &= (part[:, 1] - part[:, 0]) > rel * (1.0 + part[:, 0])
        r = r - cb[dist.argmin(1)]
    return ok


@pytest.mark.parametrize("normalize", [False, True])
def test_encode_equals_numpy_reference(data: np.ndarray, normalize: bool) -> None:
    m = RQKMeans(levels=3, codebook_size=16, seed=1, normalize_residuals=normalize, batch_size=300).fit(data)
    x = _mixture(1500, 16, seed=9)  # unseen data, several partial blocks
    fast = m.encode(x)
    ref = encode_reference(x, m.codebooks, normalize_residuals=normalize)
    clear = _margin_ok(x, m.codebooks) if not normalize else np.ones(len(x), dtype=bool)
    assert clear.mean() > 0.98
    np.testing.assert_array_equal(fast[clear], ref[clear])
    assert fast.dtype == np.int32 and fast.shape == (1500, 3)


def test_table_path_equals_residual_path(model: RQKMeans, data: np.ndarray) -> None:
    # the quality report encodes through the level-by-level path; both must agree
    a = model.encode(data)
    b, _ = model._encode(data, progress=False, source="x", track_errors=True)
    assert (a == b).all(axis=1).mean() > 0.999


def test_each_level_reduces_error_and_progressive_beats_plain(data: np.ndarray, model: RQKMeans) -> None:
    err = [float(((data - model.decode(model.encode(data)[:, :k + 1])) ** 2).sum()) for k in range(3)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.6 * float((data**2).sum())
    # decode of prefixes (fewer levels) is allowed
    assert model.decode(model.encode(data)[:, :1]).shape == data.shape


def test_determinism_and_seed(data: np.ndarray, model: RQKMeans) -> None:
    again = RQKMeans(levels=3, codebook_size=16, seed=3, batch_size=512).fit(data)
    np.testing.assert_array_equal(again.codebooks, model.codebooks)
    np.testing.assert_array_equal(again.encode(data), model.encode(data))
    other = RQKMeans(levels=3, codebook_size=16, seed=4).fit(data)
    assert not np.array_equal(other.codebooks, model.codebooks)


def test_save_load_round_trip(tmp_path, data: np.ndarray, model: RQKMeans) -> None:
    model.save(tmp_path / "m")
    loaded = RQKMeans.load(tmp_path / "m")
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.codebooks, model.codebooks)
    np.testing.assert_array_equal(loaded.encode(data), model.encode(data))


def test_load_rejects_mismatched_files(tmp_path, model: RQKMeans) -> None:
    model.save(tmp_path / "m")
    import json

    meta = json.loads((tmp_path / "m" / "rqkmeans.json").read_text())
    meta["config"]["codebook_size"] = 32
    (tmp_path / "m" / "rqkmeans.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="shape"):
        RQKMeans.load(tmp_path / "m")
    with pytest.raises(DataError, match="not found"):
        RQKMeans.load(tmp_path / "missing")


def test_dead_codewords_are_reseeded() -> None:
    # 3 well separated blobs with many exact duplicates + a few stragglers: k-means on this
    # tends to leave codewords without points; every codeword must end up used if points allow
    rng = np.random.default_rng(0)
    x = np.repeat(rng.standard_normal((3, 8)).astype(np.float32) * 10, 200, axis=0)
    x = np.concatenate([x, rng.standard_normal((20, 8)).astype(np.float32)])
    m = RQKMeans(levels=1, codebook_size=16, seed=0, progressive_dim=False).fit(x)
    used = len(np.unique(m.encode(x)[:, 0]))
    assert used == 16  # 23 distinct points >= 16 codewords: none may stay dead


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 16), np.float32), "empty"),
        (np.zeros(16, np.float32), "2-D"),
        (np.full((100, 16), np.nan, np.float32), "non-finite"),
        (np.array([[1.0] * 16] * 99 + [[np.inf] * 16], np.float32), "non-finite"),
        (np.zeros((10, 16), np.float32), "at least"),
    ],
)
def test_fit_bad_input(bad: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        RQKMeans(levels=2, codebook_size=16).fit(bad)


def test_encode_bad_input(model: RQKMeans) -> None:
    with pytest.raises(DataError, match="dimension 8 does not match"):
        model.encode(np.zeros((5, 8), np.float32), source="emb.parquet")
    x = np.zeros((5, 16), np.float32)
    x[3, 2] = np.nan
    with pytest.raises(DataError, match="row 3"):
        model.encode(x)
    with pytest.raises(DataError, match="out of range"):
        model.decode(np.array([[0, 16, 0]]))
    with pytest.raises(UsageError, match="not fitted"):
        RQKMeans().encode(x)


def test_normalized_model_has_no_decode(data: np.ndarray) -> None:
    m = RQKMeans(levels=2, codebook_size=16, normalize_residuals=True).fit(data)
    with pytest.raises(UsageError, match="reconstruction"):
        m.decode(m.encode(data[:3]))


@pytest.mark.parametrize("kw", [{"levels": 0}, {"codebook_size": 1}, {"niter": 0}, {"batch_size": 0}, {"bogus": 1}])
def test_config_validation(kw: dict) -> None:
    with pytest.raises(ConfigError):
        RQKMeans(**kw)


def test_flat_codebook(data: np.ndarray) -> None:
    flat = flat_codebook(size=200, seed=0, niter=5, batch_size=256).fit(data)
    codes = flat.encode(data)
    assert codes.shape == (len(data), 1) and codes.max() < 200
    ok = _margin_ok(data, flat.codebooks)
    np.testing.assert_array_equal(codes[ok], encode_reference(data, flat.codebooks)[ok])


def test_encode_same_codes_for_any_thread_count_and_restores_threads(model: RQKMeans, data: np.ndarray) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.encode(data)  # inline, one worker
        torch.set_num_threads(2)
        two = model.encode(data)  # blocks split over two workers
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_fit_with_fewer_points_than_dimensions():
    # a small catalogue: PCA-based progressive-dim clustering cannot run, plain k-means must
    x = np.random.default_rng(0).normal(size=(20, 64)).astype(np.float32)
    model = RQKMeans(levels=2, codebook_size=4, seed=0).fit(x)
    codes = model.encode(x)
    assert codes.shape == (20, 2) and codes.min() >= 0 and codes.max() < 4


def test_encode_path_names_the_path_taken(data: np.ndarray) -> None:
    from fluidrec.codes.rqkmeans import kernel_available

    m = RQKMeans(levels=2, codebook_size=8, seed=0).fit(data)
    assert m.encode_path() == ("C kernel" if kernel_available() else "torch")
    m.use_kernel = False
    assert m.encode_path() == "torch"
    assert RQKMeans(levels=2, codebook_size=8, normalize_residuals=True).encode_path() == "torch"  # level by level


def test_the_kernel_is_chosen_only_where_its_simd_loops_run(data: np.ndarray, monkeypatch) -> None:
    import fluidrec.codes.rqkmeans as rqkmeans

    m = RQKMeans(levels=2, codebook_size=8, seed=0).fit(data)
    want = m.encode(data)
    monkeypatch.setattr(rqkmeans, "simd_available", lambda: False)  # a build or CPU without them
    assert not rqkmeans.kernel_available() and m.encode_path() == "torch"
    np.testing.assert_array_equal(m.encode(data), want)  # same codes on the torch path
