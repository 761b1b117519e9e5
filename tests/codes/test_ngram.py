"""Prefix n-gram ids (Eq. 1), level-wise ids, hashing into per-level ranges, unknown rows."""

from __future__ import annotations

import numpy as np
import pytest

import torch

from fluidrec.codes import UNKNOWN_CODE, NgramSpec, prefix_ids, prefix_ids_reference
from fluidrec.codes.ngram import level_rows, ngram_mode, prime_at_most, row_ids_reference, row_ids_torch
from fluidrec.errors import ConfigError, DataError


def test_worked_example_from_the_paper() -> None:
    # fluid.txt 3.3, N=4: [c1=0, c2=2] -> cbar_2 = 2, [c1=3, c2=2] -> cbar_2 = 14
    ids = prefix_ids(np.array([[0, 2], [3, 2]]), 4)
    assert ids[0, 1] == 2 and ids[1, 1] == 14
    assert ids[:, 0].tolist() == [0, 3]
    assert NgramSpec(4, 2).ids(np.array([[0, 2], [3, 2]]))[:, 1].tolist() == [2, 14]


def test_eq1_general_and_unique_paths() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 64, (500, 4))
    np.testing.assert_array_equal(prefix_ids(codes, 64), np.array(prefix_ids_reference(codes, 64)))
    # all 5^3 paths get distinct level-3 ids covering [0, 5^3)
    grid = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    assert sorted(prefix_ids(grid, 5)[:, 2].tolist()) == list(range(125))


def test_level_wise_ids() -> None:
    codes = np.array([[0, 2], [3, 2]])
    ids = NgramSpec(4, 2, mode="level").ids(codes)
    np.testing.assert_array_equal(ids, codes)  # the collision prefix ids avoid


def test_hashed_ids_stay_in_their_level_range() -> None:
    spec = NgramSpec(64, 4, table_cap=5000)
    assert spec.table_sizes == (65, 4097, 5000, 5000)  # 4999 = the largest prime <= 5000, + the unknown row
    assert [spec.hashed(lv) for lv in range(4)] == [False, False, True, True]
    codes = np.random.default_rng(1).integers(0, 64, (20000, 4))
    ids = spec.ids(codes)
    for lv, size in enumerate(spec.table_sizes):
        assert ids[:, lv].min() >= 0 and ids[:, lv].max() < size - 1  # last row is only for unknown
    # exact levels are untouched; flat ids stay inside each level's slice of one big table
    np.testing.assert_array_equal(ids[:, :2], prefix_ids(codes, 64)[:, :2])
    flat = spec.flat_ids(codes)
    for lv in range(4):
        lo = spec.offsets[lv]
        assert (flat[:, lv] >= lo).all() and (flat[:, lv] < lo + spec.table_sizes[lv]).all()
    # hashing is a deterministic function of the prefix path
    np.testing.assert_array_equal(spec.ids(codes), ids)
    rates = spec.collision_rates(codes)
    assert rates[0] == rates[1] == 0.0 and 0.0 < rates[3] < 1.0


def test_unknown_codes_map_to_reserved_row() -> None:
    spec = NgramSpec(8, 3)
    codes = np.array([[1, 2, 3], [UNKNOWN_CODE] * 3, [1, UNKNOWN_CODE, UNKNOWN_CODE]])
    ids = spec.ids(codes)
    assert ids[0].tolist() == [1, 10, 83]
    assert ids[1].tolist() == [spec.unknown_id(lv) for lv in range(3)] == [8, 64, 512]
    assert ids[2].tolist() == [1, 64, 512]


def test_bad_codes_and_config() -> None:
    with pytest.raises(DataError, match="out of range"):
        NgramSpec(4, 2).ids(np.array([[0, 4]]))
    with pytest.raises(DataError, match="shape"):
        NgramSpec(4, 2).ids(np.array([[0, 1, 2]]))
    with pytest.raises(ConfigError):
        NgramSpec(4, 2, mode="bigram")
    with pytest.raises(ConfigError):
        NgramSpec(20000, 5)  # N^L overflows int64


def test_prime_and_level_rows():
    assert [prime_at_most(n) for n in (2, 20, 100, 5000)] == [2, 19, 97, 4999]
    assert level_rows(4, 3, "prefix", 20) == (4, 16, 19)
    assert level_rows(4, 3, "level", 20) == (4, 4, 4)
    assert level_rows(64, 4) == (64, 4096, 262144, 16777216)


@pytest.mark.parametrize(("n_codes", "levels", "cap", "mode"), [(4, 3, 20, "prefix"), (64, 4, 5000, "prefix"), (2048, 5, 1 << 15, "prefix"), (1000, 6, 1 << 20, "prefix"), (8, 3, 40, "level")])
def test_numpy_torch_and_reference_ids_agree(n_codes, levels, cap, mode):
    rng = np.random.default_rng(levels)
    codes = rng.integers(0, n_codes, (300, levels))
    codes[rng.random(codes.shape) < 0.05] = UNKNOWN_CODE  # unknown codes anywhere on the path
    spec = NgramSpec(n_codes, levels, mode=mode, table_cap=cap)
    ref = np.array([row_ids_reference(c, n_codes, list(spec.rows), mode) for c in codes.tolist()])
    np.testing.assert_array_equal(spec.ids(codes), ref)
    np.testing.assert_array_equal(spec.ids_torch(torch.from_numpy(codes)).numpy(), ref)
    assert (ref >= 0).all() and (ref < np.array(spec.table_sizes)).all()


def test_torch_ids_treat_unseen_codewords_as_unknown():
    rows = torch.tensor(level_rows(4, 2), dtype=torch.int64)
    ids = row_ids_torch(torch.tensor([[4, 1], [1, 9], [2, 3]]), 4, rows)
    assert ids.tolist() == [[4, 16], [1, 16], [2, 11]]
    with pytest.raises(DataError, match="out of range"):
        NgramSpec(4, 2).ids(np.array([[4, 1]]))  # a code file is checked instead


def test_hash_ids_is_pinned_splitmix64():
    # values of the ranker's user/author hash before it moved here: a change would silently re-bucket every model's users
    from fluidrec.codes.ngram import hash_ids

    assert hash_ids(np.array([1, 2, 3, 10**12]), 100).tolist() == [65, 10, 53, 24]


def test_scheme_names_have_one_spelling_and_the_earlier_one_is_mapped() -> None:
    assert [ngram_mode(m) for m in ("prefix", "level", "prefix_ngram", "levelwise")] == ["prefix", "level", "prefix", "level"]
    with pytest.raises(ConfigError, match="scheme must be one of \\('prefix', 'level'\\), got 'tree'"):
        ngram_mode("tree")
