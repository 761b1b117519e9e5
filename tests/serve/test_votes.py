"""The stored vote is ``RoomCodeTracker``'s: advancing a state restored from JSON slice by slice
gives the tracker's codes and counts, ties keep the incumbent."""

from __future__ import annotations

import numpy as np
import pytest

from fluidrec.codes.rooms import RoomCodeTracker
from fluidrec.errors import DataError
from fluidrec.serve.votes import VoteState, advance


def test_advance_through_json_equals_one_tracker():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (200, 3))
    tracker, state = RoomCodeTracker(3), None
    for c in codes:
        tracker.add_slice(1, c)
        state = VoteState.from_json(advance(state, c, 3).to_json(), 3)  # every step through the store's text form
        assert state.code == tracker.code(1)
    assert state.slices == 200 and all(sum(level.values()) == 200 for level in state.counts)
    assert state.best == tuple(max(level.values()) for level in state.counts)


def test_a_tie_keeps_the_incumbent():
    v = advance(advance(None, [3, 1], 2), [5, 1], 2)
    assert v.code == (3, 1)
    assert advance(v, [5, 2], 2).code == (5, 1)


def test_bad_stored_votes_are_data_errors():
    with pytest.raises(DataError):
        VoteState.from_json("{not json", 3)
    with pytest.raises(DataError, match="levels"):
        VoteState.from_json(advance(None, [1, 2], 2).to_json(), 3)
    with pytest.raises(DataError):
        advance(None, [1, 2], 3)
