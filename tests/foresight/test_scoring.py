"""Tick scoring: the store's cached scorer and the log recompute give identical predictions."""

from __future__ import annotations

import numpy as np
import torch

from fluidrec.foresight.config import NextSidConfig
from fluidrec.foresight.model import NextSidModel
from fluidrec.foresight.scoring import LiveScorer, predict_from_log
from fluidrec.foresight.sequences import SidStore, TimeOrderedLog

CFG = NextSidConfig(context=6, d_model=16, heads=2, enc_layers=1, dec_layers=1, ffn=32, max_run=4)


def test_cached_store_scoring_equals_log_recompute_at_every_tick():
    rng = np.random.default_rng(0)
    n, n_authors = 600, 12
    author = rng.integers(0, n_authors, size=n)
    end_ts = rng.integers(0, 100, size=n) * 30_000  # many segments end on the same tick
    sids = rng.integers(0, 4, size=n)  # small alphabet: repeats that only lengthen a run
    torch.manual_seed(0)
    model = NextSidModel(4, CFG).eval()
    store = SidStore(end_ts, author, sids, l=CFG.context)
    scorer = LiveScorer(model, store)
    log = TimeOrderedLog.build(end_ts, author, sids)
    live = np.arange(n_authors)
    forwarded = []
    for t in range(0, 100 * 30_000, 30_000):
        before = store.count.copy()
        store.advance(t)
        got = scorer.score(live)
        np.testing.assert_array_equal(got, predict_from_log(model, log, live, t, CFG.context))
        # first tick: every author (nothing cached); then exactly those with a new segment
        assert scorer.forwarded == (n_authors if t == 0 else int((store.count != before).sum()))
        forwarded.append(scorer.forwarded)
    assert 0 < np.mean(forwarded) < n_authors  # the cache did skip unchanged authors


def test_a_repeated_sid_is_a_new_input():
    # Author 0's second segment repeats its Sid: only the run length changes, and the
    # scorer must forward it again (the prediction may differ).
    store = SidStore(np.array([1000, 2000]), np.array([0, 0]), np.array([2, 2]), l=CFG.context)
    torch.manual_seed(0)
    scorer = LiveScorer(NextSidModel(4, CFG), store)
    store.advance(1000)
    scorer.score(np.array([0]))
    assert scorer.forwarded == 1
    scorer.score(np.array([0]))
    assert scorer.forwarded == 0  # nothing new: cached
    store.advance(2000)
    scorer.score(np.array([0]))
    assert scorer.forwarded == 1 and store.contexts(np.array([0])).runs[0, -1] == 2
