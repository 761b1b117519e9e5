"""RLE round trip, rule baselines on hand-checkable sequences, store == log view, causality."""

from __future__ import annotations

import numpy as np
import pytest

from fluidrec.foresight.baselines import (
    last_one,
    max_freq_one,
    max_weight_one,
    predict_last,
    predict_max_freq,
    predict_max_weight,
)
from fluidrec.foresight.rle import rle_decode, rle_encode
from fluidrec.foresight.sequences import AuthorSequences, SidStore, TimeOrderedLog


def test_rle_round_trip_by_hand():
    v, r = rle_encode(np.array([5, 5, 5, 2, 2, 5, 7]))
    assert v.tolist() == [5, 2, 5, 7] and r.tolist() == [3, 2, 1, 1]
    assert rle_decode(v, r).tolist() == [5, 5, 5, 2, 2, 5, 7]
    v, r = rle_encode(np.array([], dtype=np.int64))
    assert len(v) == len(r) == 0 and len(rle_decode(v, r)) == 0


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_random(seed):
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, 3, size=rng.integers(1, 50))
    v, r = rle_encode(seq)
    assert (rle_decode(v, r) == seq).all() and (v[1:] != v[:-1]).all() and (r >= 1).all()


def test_rules_by_hand():
    raw = [4, 4, 9, 9, 9, 1]
    assert last_one(raw) == 1
    assert max_freq_one(raw) == 9  # 9 three times, 4 twice
    v, r = rle_encode(np.array(raw))  # [4, 9, 1] with runs [2, 3, 1]
    assert max_weight_one(v.tolist(), r.tolist()) == 9
    assert max_freq_one([4, 4, 9, 9, 9, 4, 1]) == 4  # 4 and 9 three times each: 4 was seen last


def test_rule_ties_go_to_the_most_recent():
    assert max_freq_one([1, 2]) == 2
    assert max_freq_one([3, 3, 7, 7, 5]) == 7
    assert max_weight_one([3, 7, 5], [2, 2, 1]) == 7
    # MaxWeight differs from MaxFreq when the RLE context reaches further back than l raw segments.
    assert max_weight_one([8, 2], [10, 3]) == 8


def test_batched_rules_match_the_reference():
    rng = np.random.default_rng(0)
    l = 6
    for _ in range(50):
        seq = rng.integers(0, 4, size=rng.integers(1, 20))
        v, r = rle_encode(seq)
        k, kr = min(len(v), l), min(len(seq), l)
        values, runs, mask = np.zeros((1, l), int), np.zeros((1, l), int), np.zeros((1, l), bool)
        values[0, l - k:], runs[0, l - k:], mask[0, l - k:] = v[-k:], r[-k:], True
        raw, raw_mask = np.zeros((1, l), int), np.zeros((1, l), bool)
        raw[0, l - kr:], raw_mask[0, l - kr:] = seq[-kr:], True
        assert predict_last(raw, raw_mask)[0] == last_one(seq.tolist())
        assert predict_max_freq(raw, raw_mask)[0] == max_freq_one(seq[-l:].tolist())
        assert predict_max_weight(values, runs, mask)[0] == max_weight_one(v[-k:].tolist(), r[-k:].tolist())


def _log(seed: int = 0, n_authors: int = 5, n: int = 200):
    rng = np.random.default_rng(seed)
    author = rng.integers(0, n_authors, size=n)
    end_ts = rng.integers(0, 10_000, size=n) * 30
    sids = rng.integers(0, 3, size=n)
    return author, end_ts, sids


def _same(a, b):
    for f in ("values", "runs", "mask", "raw", "raw_mask", "length"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


@pytest.mark.parametrize("seed", range(3))
def test_log_view_store_and_recompute_agree(seed):
    # Coarse end times make many ties (within and across authors); Sids from 3 values make
    # long runs; l = 4 makes the store drop old entries; author 5 has no segment at all.
    author, end_ts, sids = _log(seed)
    author[author == 4] = 5
    seqs = AuthorSequences.build(author, end_ts, sids, 6)
    log = TimeOrderedLog.build(end_ts, author, sids)
    authors = np.array([0, 1, 2, 3, 5, 1])  # repeats allowed
    for l in (4, 64):
        store = SidStore(end_ts, author, sids, l=l)
        for t in np.sort(np.random.default_rng(seed + 1).integers(0, 300_000, size=12)).tolist() + [300_000]:
            store.advance(int(t))
            ref = seqs.contexts(seqs.state_at(authors, np.full(len(authors), t)), l)
            _same(store.contexts(authors), ref)
            _same(log.contexts(authors, int(t), l), ref)
    assert store.count.tolist() == np.bincount(author, minlength=6).tolist()


def test_store_by_hand():
    # One author: Sids 7 7 3 7 ending at 1..4 s, l = 2: runs cut to the last two entries.
    store = SidStore(np.array([1000, 2000, 3000, 4000]), np.zeros(4, np.int64), np.array([7, 7, 3, 7]), l=2)
    assert store.advance(2000) == 2
    ctx = store.contexts(np.array([0]))
    assert ctx.values.tolist() == [[0, 7]] and ctx.runs.tolist() == [[0, 2]] and ctx.mask.tolist() == [[False, True]]
    store.advance(4000)
    ctx = store.contexts(np.array([0]))
    assert ctx.values.tolist() == [[3, 7]] and ctx.runs.tolist() == [[1, 1]] and ctx.raw.tolist() == [[3, 7]]
    assert ctx.length.tolist() == [4]
    with pytest.raises(Exception, match="author ids"):
        store.contexts(np.array([1]))


def test_causality_no_state_sees_a_segment_ending_after_it():
    author, end_ts, sids = _log(2)
    seqs = AuthorSequences.build(author, end_ts, sids, 5)
    rng = np.random.default_rng(3)
    q_author = rng.integers(0, 5, size=500)
    q_ts = rng.integers(0, 300_000, size=500)
    ctx = seqs.contexts(seqs.state_at(q_author, q_ts), 400)
    for i in range(500):
        seen = np.sort(end_ts[author == q_author[i]])
        assert ctx.length[i] == (seen <= q_ts[i]).sum()  # every segment that ended, none that had not
    a, p = seqs.split_state(seqs.state_at(q_author, q_ts))
    last = np.where(p > seqs.raw_start[a], seqs.end_ts[np.maximum(p - 1, 0)], -1)
    assert (last <= q_ts).all()
    nxt_ok = p < seqs.raw_start[a + 1]
    assert (seqs.end_ts[p[nxt_ok]] > q_ts[nxt_ok]).all()


def test_store_refuses_to_go_back():
    author, end_ts, sids = _log()
    store = SidStore(end_ts, author, sids, l=4)
    store.advance(1000)
    with pytest.raises(Exception, match="forward"):
        store.advance(10)


def test_training_targets_are_the_next_raw_sid_after_the_context():
    # One author, Sids 1 1 2 3 2 ending at 10..50 s; the split falls after the third segment.
    # Each example: the RLE context of the segments ended so far (last run cut there), the
    # target the next segment's Sid (a repeat counts: the paper's target is the next raw Sid).
    from fluidrec.foresight.train import split_states

    end_ts = np.array([10_000, 20_000, 30_000, 40_000, 50_000])
    seqs = AuthorSequences.build(np.zeros(5, np.int64), end_ts, np.array([1, 1, 2, 3, 2]), 1)
    train, test = split_states(seqs, split_ts=30_000)
    assert seqs.next_sid(train).tolist() == [1, 2] and seqs.next_sid(test).tolist() == [3, 2]
    ctx = seqs.contexts(np.r_[train, test], 3)
    assert ctx.values.tolist() == [[0, 0, 1], [0, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert ctx.runs.tolist() == [[0, 0, 1], [0, 0, 2], [0, 2, 1], [2, 1, 1]]  # the current run's length so far
