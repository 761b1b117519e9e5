"""request_batch (one user's candidates built directly in the serving layout) equals the plain
path, serving_layout(ScoringContext.make_batch(...)), tensor for tensor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fluidrec.codes.rooms import UNKNOWN_CODE
from fluidrec.serve.features import request_batch, request_batch_reference
from fluidrec.serve.store import RoomTable

T = 1_800_000_000_000


def _table(rng, b: int, levels: int) -> RoomTable:
    known = rng.random(b) < 0.7
    codes = np.where(known[:, None, None], rng.integers(0, 8, (b, 2, levels)), UNKNOWN_CODE)  # (B, 2, L)
    start = np.where(known, T - rng.integers(0, 3_600_000, b), 0)
    author = np.where(known, rng.integers(0, 50, b), -1)
    return RoomTable(known, codes[:, 0], codes[:, 1], start, author)


@pytest.mark.parametrize("b, clicks, user", [(200, 20, "known"), (37, 0, "known"), (5, 80, "unknown"), (1, 3, "known"), (2, 64, "unknown")])
def test_request_batch_equals_the_plain_path(serving_model, b, clicks, user):
    m = serving_model
    rng = np.random.default_rng(b + clicks)
    user_id = int(m.context.user_ids[3]) if user == "known" and len(m.context.user_ids) else 10**12
    vocab = m.ranker.room_vocab.numpy()
    rooms = rng.choice(np.concatenate([vocab[:100], np.arange(10**9, 10**9 + 200)]), b, replace=False)  # in and out of the item table
    tab = _table(rng, b, m.levels)
    hist = rng.integers(0, 8, (clicks, m.levels)) if clicks else None  # 80 > K: cut to the K newest, as offline
    args = (m.ranker, m.context, user_id, rooms, tab, m.ranker_codes(tab.slice_codes), m.ranker_codes(tab.room_codes), T + 5, hist)
    got, want = request_batch(*args), request_batch_reference(*args)
    for f in dataclasses.fields(want):
        g, w = getattr(got, f.name), getattr(want, f.name)
        if isinstance(w, torch.Tensor):
            assert g.dtype == w.dtype and g.shape == w.shape, f.name
            assert torch.equal(g, w), f.name
        else:
            assert g == w, f.name
    if b >= 2:
        assert got.hist_codes.shape[0] == 1  # the history is stored once
    # neither is a view: that is part of the compiled graph's guards, and the two paths must reach one graph
    assert all(getattr(x, f.name)._base is None for x in (got, want) for f in dataclasses.fields(want) if isinstance(getattr(want, f.name), torch.Tensor))
    scores_got, scores_want = m.scorer(got), m.scorer(want)
    for task in scores_want:
        np.testing.assert_array_equal(scores_got[task], scores_want[task])
