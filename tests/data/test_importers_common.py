"""Negative sampling (fast path vs reference), bad-row handling and small parsers."""

from __future__ import annotations

import numpy as np
import pytest

from fluidrec.data.importers.common import BadRows, ImportOptions, hashtag_queries, parse_time_ms
from fluidrec.data.importers.negatives import sample_negatives, sample_negatives_reference
from fluidrec.errors import ConfigError, DataError


def _world(seed: int = 0, n_items: int = 60, n_pos: int = 300):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10_000, n_items, replace=False).astype(np.int64)
    start = rng.integers(0, 1000, n_items)
    end = start + rng.integers(0, 400, n_items)
    pos_idx = rng.integers(0, n_items, n_pos)
    users = rng.integers(0, 20, n_pos).astype(np.int64)
    ts = rng.integers(start[pos_idx], end[pos_idx] + 1)  # a positive happens while its item is live
    return ids, start, end, users, ids[pos_idx], ts


def _candidates(row, ids, start, end, users, items, ts):
    mine = set(items[users == users[row]].tolist())
    return {int(i) for i, s, e in zip(ids, start, end) if s <= ts[row] <= e and int(i) not in mine}


def test_sampled_negatives_are_live_and_never_positives_of_the_user():
    ids, start, end, users, items, ts = _world()
    neg = sample_negatives(ts, users, ids, start, end, users, items, 5, np.random.default_rng(1))  # (P, 5)
    assert neg.shape == (len(ts), 5)
    filled = 0
    for row in range(len(ts)):
        cands = _candidates(row, ids, start, end, users, items, ts)
        got = [int(x) for x in neg[row] if x >= 0]
        assert len(got) == len(set(got)), "duplicate negative in one row"
        assert set(got) <= cands
        assert len(got) == min(5, len(cands)), "row not filled although candidates remained"
        filled += len(got)
    assert filled > len(ts)  # the world has enough live items for most rows


@pytest.mark.parametrize("max_rounds", [32, 0])  # 0 forces the exact per-row fallback
def test_fast_path_matches_reference_when_k_covers_all_candidates(max_rounds):
    ids, start, end, users, items, ts = _world(seed=3, n_items=25, n_pos=80)
    k = len(ids)
    fast = sample_negatives(ts, users, ids, start, end, users, items, k, np.random.default_rng(0), max_rounds=max_rounds)
    ref = sample_negatives_reference(ts, users, ids, start, end, users, items, k, np.random.default_rng(0))
    for row in range(len(ts)):
        assert set(fast[row][fast[row] >= 0].tolist()) == set(ref[row][ref[row] >= 0].tolist())


def test_sampling_is_seeded_and_roughly_uniform():
    ids = np.arange(4, dtype=np.int64)
    start, end = np.zeros(4, np.int64), np.full(4, 10, np.int64)
    ts, users = np.full(4000, 5, np.int64), np.arange(4000, dtype=np.int64)
    pos_items = np.zeros(4000, np.int64)  # every user clicked item 0
    a = sample_negatives(ts, users, ids, start, end, users, pos_items, 1, np.random.default_rng(7))
    b = sample_negatives(ts, users, ids, start, end, users, pos_items, 1, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not (a == 0).any()
    counts = np.bincount(a[:, 0], minlength=4)[1:]
    assert counts.min() > 1100 and counts.max() < 1600  # ~1333 each


def test_item_not_yet_live_is_never_sampled():
    ids = np.array([1, 2, 3], np.int64)
    start = np.array([0, 50, 100], np.int64)
    end = np.array([200, 200, 200], np.int64)
    ts = np.array([10, 60], np.int64)
    users = np.array([9, 9], np.int64)
    neg = sample_negatives(ts, users, ids, start, end, np.array([9]), np.array([3]), 3, np.random.default_rng(0))
    assert set(neg[0][neg[0] >= 0].tolist()) == {1}  # at t=10 only item 1 exists
    assert set(neg[1][neg[1] >= 0].tolist()) == {1, 2}  # item 3 is the user's positive


def test_bad_rows_raise_with_file_line_reason_or_count():
    bad = BadRows(skip=False)
    with pytest.raises(DataError) as exc:
        bad.report("data/log.csv", 17, "user id is not an integer", "abc")
    msg = str(exc.value)
    assert "data/log.csv" in msg and "line 17" in msg and "user id is not an integer" in msg and "'abc'" in msg
    skip = BadRows(skip=True)
    skip.report("log.csv", 3, "empty line")
    skip.report("log.csv", 9, "empty line")
    skip.report("items.csv", 2, "duplicate item id")
    assert skip.total == 3 and skip.counts["log.csv: empty line"] == 2


def test_options_are_validated():
    with pytest.raises(ConfigError):
        ImportOptions(negatives=-1)
    with pytest.raises(ConfigError):
        ImportOptions(max_users=0)


def test_parsers():
    assert parse_time_ms("1700000000123") == 1700000000123
    assert parse_time_ms("2024-01-01T00:00:01Z") == 1704067201000
    assert parse_time_ms("2025-05-20 08:00:00.250") == 1747728000250
    assert parse_time_ms("yesterday") is None and parse_time_ms("") is None
    assert hashtag_queries("This reversal # funny God reversal # unexpected ending # funny God reversal") == ["funny god reversal", "unexpected ending"]
    assert hashtag_queries("no tags here") == [] and hashtag_queries(None) == []


def test_read_lines_strips_crlf_and_keeps_stray_cr_inside_a_record(tmp_path):
    from fluidrec.data.importers.common import read_lines

    p = tmp_path / "x.tsv"
    p.write_bytes(b"1\ta b\r\n2\tc\rd\r\n\xff\n")
    rows = []
    with pytest.raises(DataError, match="line 3: not valid utf-8"):
        for row in read_lines(p, progress=False):
            rows.append(row)
    assert rows == [(1, "1\ta b"), (2, "2\tc\rd")]


def test_huge_user_ids_do_not_collide_in_negative_sampling():
    """User 2^62 times 4 items wraps int64 to 0: raw-id keys made its pairs collide with user 0's."""
    ids = np.array([10, 11, 12, 13], np.int64)
    start, end = np.zeros(4, np.int64), np.full(4, 100, np.int64)
    users = np.array([0, 2**62], np.int64)
    items = np.array([11, 10], np.int64)  # user 0 clicked 11, user 2^62 clicked 10
    neg = sample_negatives(np.array([5, 5]), users, ids, start, end, users, items, 3, np.random.default_rng(0))
    assert sorted(neg[0].tolist()) == [10, 12, 13]  # 10 is another user's positive, not user 0's
    assert sorted(neg[1].tolist()) == [11, 12, 13]


def test_import_options_bound_negatives():
    with pytest.raises(ConfigError, match="negatives"):
        ImportOptions(negatives=10**6)
