"""Quality report on hand-checkable codes; code file round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fluidrec.codes import RQKMeans, code_quality, collision_stats, read_codes, read_room_codes, usage_stats, write_codes, write_room_codes
from fluidrec.errors import DataError


def test_usage_and_collisions_by_hand() -> None:
    codes = np.array([[0, 1], [0, 1], [1, 2], [1, 3]])
    (u1, util1, ppl1), (u2, util2, ppl2) = usage_stats(codes, 4)
    assert (u1, util1) == (2, 0.5) and math.isclose(ppl1, 2.0)
    assert (u2, util2) == (3, 0.75) and math.isclose(ppl2, math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))
    collision, unique = collision_stats(codes)
    assert collision == 0.5 and unique == 0.75  # two of four items share [0, 1]; 3 distinct codes


def test_code_quality_matches_direct_computation() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    m = RQKMeans(levels=2, codebook_size=8, seed=0).fit(x)
    q = code_quality(m, x)
    codes = m.encode(x)
    for k in range(2):
        direct = float(((x - m.decode(codes[:, : k + 1])).astype(np.float64) ** 2).sum() / (x.astype(np.float64) ** 2).sum())
        assert math.isclose(q.levels[k].relative_error, direct, rel_tol=1e-4)
    assert q.levels[0].relative_error == pytest.approx(q.levels[0].residual_ratio)
    assert 0 < q.levels[1].relative_error < q.levels[0].relative_error < 1
    assert q.collision_rate == pytest.approx(collision_stats(codes)[0])
    assert q.levels[0].utilisation == 1.0 and 1 < q.levels[0].perplexity <= 8


def test_code_files_round_trip(tmp_path) -> None:
    ids = np.array([10, 11, 12], dtype=np.int64)
    codes = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32)
    write_codes(tmp_path / "c.parquet", ids, codes)
    got_ids, got = read_codes(tmp_path / "c.parquet")
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, codes)
    write_room_codes(tmp_path / "r.parquet", np.array([7, 7, -1]), np.array([[1, 2], [1, 2], [-1, -1]]))
    np.testing.assert_array_equal(read_room_codes(tmp_path / "r.parquet"), [[1, 2], [1, 2], [-1, -1]])
    with pytest.raises(DataError, match="not found"):
        read_codes(tmp_path / "nope.parquet")
    with pytest.raises(DataError, match="missing column"):
        read_codes(tmp_path / "r.parquet")  # a room file has no slice_id
