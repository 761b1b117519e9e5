"""The C encode kernel against NumPy (same formula) and the torch path, including ties, odd K and odd D."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluidrec.codes import RQKMeans, encode_reference
from fluidrec.codes.rqkmeans import _kernel, kernel_built
from fluidrec.errors import DataError

# the plain-C loops run on any CPU, so these run wherever the kernel was built
pytestmark = pytest.mark.skipif(not kernel_built(), reason="C kernel not built (no C compiler at install); the torch path is tested elsewhere")


def _levels_argmax_numpy(scores: np.ndarray, cross: list[np.ndarray], levels: int, k: int) -> np.ndarray:
    """codes[b, l] = argmax_m scores[b, l*k + m] - sum_{j<l} cross[l][j*k + codes[b, j], m] (first index on ties)."""
    codes = np.zeros((scores.shape[0], levels), np.int32)
    for lv in range(levels):
        s = scores[:, lv * k : (lv + 1) * k].copy()
        for j in range(lv):
            s -= cross[lv][j * k + codes[:, j]]
        codes[:, lv] = s.argmax(axis=1)
    return codes


def _run_kernel(scores: np.ndarray, cross: list[np.ndarray], levels: int, k: int) -> np.ndarray:
    flat = np.concatenate([c.ravel() for c in cross[1:]]).astype(np.float32) if levels > 1 else np.zeros(1, np.float32)
    out = np.full((scores.shape[0], levels), -7, np.int32)
    scores = np.ascontiguousarray(scores, np.float32)
    assert _kernel().levels_argmax(scores.ctypes.data, scores.shape[0], levels, k, flat.ctypes.data, out.ctypes.data) == -1
    return out


@pytest.mark.parametrize("levels,k", [(4, 64), (3, 13), (2, 5), (1, 8), (3, 1)])
def test_kernel_equals_numpy_formula(levels: int, k: int) -> None:
    rng = np.random.default_rng(levels * 100 + k)
    # values on a coarse grid: many exact ties, which must go to the lowest index
    scores = rng.integers(-4, 5, (300, levels * k)).astype(np.float32)
    cross = [None] + [rng.integers(-2, 3, (lv * k, k)).astype(np.float32) for lv in range(1, levels)]
    np.testing.assert_array_equal(_run_kernel(scores, cross, levels, k), _levels_argmax_numpy(scores, cross, levels, k))


def test_kernel_treats_signed_zeros_as_equal_and_handles_extremes() -> None:
    k = 16
    scores = np.zeros((4, k), np.float32)
    scores[0, :] = -0.0
    scores[0, 9] = 0.0  # +0 == -0: the first index (0) wins, as with numpy.argmax
    scores[1, :] = -3e38
    scores[1, 12] = -1e-30  # negative values: larger is closer to zero
    scores[2, :] = 1e-45  # denormals
    scores[2, 3] = 3e-45  # two denormal steps up
    scores[3, 15] = np.finfo(np.float32).max
    got = _run_kernel(scores, [None], 1, k)[:, 0]
    np.testing.assert_array_equal(got, scores.argmax(axis=1))
    np.testing.assert_array_equal(got, [0, 12, 3, 15])


@pytest.mark.parametrize("levels,k", [(4, 16), (3, 12), (2, 7)])
def test_encode_with_and_without_kernel_match_the_reference(levels: int, k: int) -> None:
    rng = np.random.default_rng(k)
    centres = rng.standard_normal((24, 10)).astype(np.float32) * 3
    x = (centres[rng.integers(0, 24, 3000)] + rng.standard_normal((3000, 10))).astype(np.float32)
    m = RQKMeans(levels=levels, codebook_size=k, seed=0, batch_size=700).fit(x)
    with_kernel = m.encode(x)
    m.use_kernel = False
    without = m.encode(x)
    ref = encode_reference(x, m.codebooks)
    assert (with_kernel == ref).all(axis=1).mean() > 0.999  # float32 vs float64 near-ties only
    assert (with_kernel == without).all(axis=1).mean() > 0.999
    torch.testing.assert_close(torch.from_numpy(m.decode(with_kernel)).pow(2).mean(), torch.from_numpy(m.decode(ref)).pow(2).mean(), rtol=1e-3, atol=0)


def test_kernel_returns_the_first_row_with_non_finite_scores() -> None:
    scores = np.ones((12, 2 * 8), np.float32)
    scores[9, 3] = np.inf
    scores[5, 15] = np.nan  # a level-1 score: not checked (x's NaN/inf reach every level-0 score)
    scores[7, 2] = -np.inf
    flat = np.zeros(8 * 8, np.float32)
    out = np.full((12, 2), -1, np.int32)
    got = _kernel().levels_argmax(scores.ctypes.data, 12, 2, 8, flat.ctypes.data, out.ctypes.data)
    assert got == 7
    assert (out[:7] == 0).all() and (out[7:] == -1).all()  # rows before it encoded, none after


@pytest.mark.parametrize("use_kernel", [True, False])
def test_encode_names_the_first_bad_row_across_workers(use_kernel: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6000, 8)).astype(np.float32)
    m = RQKMeans(levels=2, codebook_size=8, seed=0, batch_size=256).fit(x)
    m.use_kernel = use_kernel
    bad = x.copy()
    bad[4500, 1] = np.inf  # in the second worker's rows
    bad[3100, 7] = np.nan  # the first bad row
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(DataError, match="row 3100: non-finite value"):
            m.encode(bad, source="emb.parquet")
        huge = x.copy()
        huge[777] = 3e38  # finite, but its scores overflow float32
        with pytest.raises(DataError, match="row 777: embedding values too large"):
            m.encode(huge)
    finally:
        torch.set_num_threads(threads)


def _fused_encode(m: RQKMeans, x: np.ndarray, allow_simd: int) -> tuple[np.ndarray, int]:
    """codes of x through the fused GEMM + argmax entry point, SIMD or plain C."""
    state = m._encode_state()
    kernel = state["kernel"]
    out = np.full((x.shape[0], m.levels), -7, np.int32)
    bad = kernel.encode(
        x.ctypes.data, x.shape[0], x.shape[1], x.strides[0] // 4, state["packed"].data_ptr(), state["bias"].data_ptr(),
        m.levels, m.codebook_size, state["cross_flat"].data_ptr(), out.ctypes.data, allow_simd,
    )
    return out, bad


# D and L*K that are not multiples of the kernel's blocks (8 lanes, 16 columns), and row
# counts that leave a partial last group of 6 rows
@pytest.mark.parametrize("levels,k,dim,rows", [(4, 64, 128, 1003), (3, 13, 10, 601), (2, 5, 3, 7), (1, 8, 33, 5), (4, 16, 17, 6)])
def test_fused_gemm_argmax_matches_the_reference_with_and_without_simd(levels: int, k: int, dim: int, rows: int) -> None:
    rng = np.random.default_rng(levels * 1000 + k + dim)
    centres = rng.standard_normal((20, dim)).astype(np.float32) * 3
    x = (centres[rng.integers(0, 20, 2000)] + rng.standard_normal((2000, dim))).astype(np.float32)
    m = RQKMeans(levels=levels, codebook_size=k, seed=0).fit(x)
    ref = encode_reference(x[:rows], m.codebooks)
    for allow_simd in (1, 0):
        got, bad = _fused_encode(m, x[:rows], allow_simd)
        assert bad == -1
        assert (got == ref).all(axis=1).mean() > 0.995  # float32 vs float64 near-ties only
        # every code is a valid index, and the chosen codewords are (near-)optimal per level
        assert got.min() >= 0 and got.max() < k
        err_got = ((x[:rows] - m.decode(got)) ** 2).sum(1)
        err_ref = ((x[:rows] - m.decode(ref)) ** 2).sum(1)
        np.testing.assert_allclose(err_got, err_ref, rtol=1e-4, atol=1e-4)
    simd, _ = _fused_encode(m, x[:rows], 1)
    plain, _ = _fused_encode(m, x[:rows], 0)
    assert (simd == plain).all(axis=1).mean() > 0.995  # summation order differs only in rounding


def test_fused_kernel_reads_rows_with_a_stride_and_stops_at_the_first_bad_row() -> None:
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((40, 24)).astype(np.float32)
    x = wide[:, :16]  # rows 24 floats apart
    m = RQKMeans(levels=2, codebook_size=8, seed=0).fit(np.ascontiguousarray(x))
    ref = encode_reference(np.ascontiguousarray(x), m.codebooks)
    got, bad = _fused_encode(m, x, 1)
    assert bad == -1
    np.testing.assert_array_equal(got, ref)
    x = x.copy()
    x[20, 5] = np.nan
    x[33, 0] = np.inf
    for allow_simd in (1, 0):
        got, bad = _fused_encode(m, x, allow_simd)
        assert bad == 20
        np.testing.assert_array_equal(got[:18], ref[:18])  # the groups of 6 rows before it are encoded
