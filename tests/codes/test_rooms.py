"""Room codes: majority vote with ties, causality, vectorised == streaming reference."""

from __future__ import annotations

import numpy as np
import pytest

from fluidrec.codes import UNKNOWN_CODE, RoomCodeTracker, room_codes, room_codes_reference


def test_tracker_majority_and_ties() -> None:
    tr = RoomCodeTracker(levels=2)
    assert tr.code(1) == (UNKNOWN_CODE, UNKNOWN_CODE)
    tr.add_slice(1, [3, 0])
    assert tr.code(1) == (3, 0)
    tr.add_slice(1, [5, 1])  # tie 1:1 at both levels -> incumbents stay
    assert tr.code(1) == (3, 0)
    tr.add_slice(1, [5, 0])  # level 1: 5 now has 2 > 1; level 2: 0 has 2
    assert tr.code(1) == (5, 0)
    tr.add_slice(1, [3, 1])  # level 1: 3 ties 5 at 2 -> 5 (incumbent) stays; level 2: 1 ties 0 -> 0 stays
    assert tr.code(1) == (5, 0)
    tr.add_slice(1, [3, 1])  # 3 reaches 3 > 2; 1 reaches 3 > 2
    assert tr.code(1) == (3, 1)
    tr.add_slice(2, [9, 9])  # rooms are independent
    assert tr.code(2) == (9, 9) and tr.code(1) == (3, 1)
    tr.end_room(1)
    assert tr.code(1) == (UNKNOWN_CODE, UNKNOWN_CODE) and len(tr) == 1


def test_batch_hand_made_with_ties_and_on_air_rule() -> None:
    # room 7: slices start at 0 (code 3), 100 (code 5), 200 (code 5); room 8: one slice at 150
    s_room, s_start, s_codes = [7, 7, 7, 8], [0, 100, 200, 150], [[3], [5], [5], [4]]
    i_room = [7, 7, 7, 7, 8, 8, 9, -1]
    i_ts = [0, 99, 100, 300, 149, 150, 500, 500]
    got = room_codes(i_room, i_ts, s_room, s_start, s_codes)
    # t=0 slice on air counts; t=100: 3 and 5 tie -> incumbent 3; t=300: 5 leads 2:1
    # room 8 before its first slice is unknown; room 9 and NO_ROOM have no slices
    expect = [[3], [3], [3], [5], [UNKNOWN_CODE], [4], [UNKNOWN_CODE], [UNKNOWN_CODE]]
    np.testing.assert_array_equal(got, expect)
    strict = room_codes(i_room, i_ts, s_room, s_start, s_codes, include_on_air=False)
    expect_strict = [[UNKNOWN_CODE], [3], [3], [5], [UNKNOWN_CODE], [UNKNOWN_CODE], [UNKNOWN_CODE], [UNKNOWN_CODE]]
    np.testing.assert_array_equal(strict, expect_strict)
    for inc in (True, False):
        np.testing.assert_array_equal(
            room_codes(i_room, i_ts, s_room, s_start, s_codes, include_on_air=inc),
            room_codes_reference(i_room, i_ts, s_room, s_start, s_codes, include_on_air=inc),
        )


def _random_log(seed: int, n_rooms: int = 30, n_slices: int = 400, n_imp: int = 1500, k: int = 3, levels: int = 3):
    rng = np.random.default_rng(seed)
    s_room = rng.integers(0, n_rooms, n_slices)
    s_start = rng.integers(0, 60, n_slices) * 10  # coarse times: many equal starts and ts ties
    s_codes = rng.integers(0, k, (n_slices, levels))  # small K: many vote ties
    i_room = rng.integers(-1, n_rooms + 3, n_imp)
    i_ts = np.sort(rng.integers(0, 60, n_imp) * 10 + rng.integers(0, 2, n_imp) * 5)
    return i_room, i_ts, s_room, s_start, s_codes


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("include_on_air", [True, False])
def test_vectorised_equals_streaming_reference(seed: int, include_on_air: bool) -> None:
    log = _random_log(seed)
    fast = room_codes(*log, include_on_air=include_on_air)
    ref = room_codes_reference(*log, include_on_air=include_on_air)
    np.testing.assert_array_equal(fast, ref)
    assert (fast != UNKNOWN_CODE).any() and (fast == UNKNOWN_CODE).any()


def test_causality_future_slices_never_change_past_codes() -> None:
    i_room, i_ts, s_room, s_start, s_codes = _random_log(5)
    base = room_codes(i_room, i_ts, s_room, s_start, s_codes)
    t_cut = 300
    # append many slices that start after t_cut, all voting for a new codeword
    rng = np.random.default_rng(1)
    extra = 300
    s_room2 = np.concatenate([s_room, rng.integers(0, 30, extra)])
    s_start2 = np.concatenate([s_start, t_cut + 1 + rng.integers(0, 100, extra)])
    s_codes2 = np.concatenate([s_codes, np.full((extra, s_codes.shape[1]), 2)])
    after = room_codes(i_room, i_ts, s_room2, s_start2, s_codes2)
    past = i_ts <= t_cut
    np.testing.assert_array_equal(after[past], base[past])
    assert (after[~past] != base[~past]).any()  # the future slices do matter later


def test_impression_order_is_kept() -> None:
    i_room, i_ts, s_room, s_start, s_codes = _random_log(3)
    perm = np.random.default_rng(0).permutation(len(i_room))
    a = room_codes(i_room, i_ts, s_room, s_start, s_codes)
    b = room_codes(i_room[perm], i_ts[perm], s_room, s_start, s_codes)
    np.testing.assert_array_equal(b, a[perm])


def test_empty_inputs() -> None:
    out = room_codes([1, 2], [5, 6], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.int64))
    assert out.shape == (2, 4) and (out == UNKNOWN_CODE).all()


def test_room_state_round_trip_continues_the_same_vote():
    from fluidrec.codes.rooms import RoomCodeTracker

    codes = [[1, 2], [3, 2], [3, 5], [1, 5], [3, 5]]
    whole = RoomCodeTracker(2)
    for c in codes:
        whole.add_slice(7, c)
    first = RoomCodeTracker(2)
    for c in codes[:3]:
        first.add_slice(7, c)
    assert first.room_state(8) is None
    state = first.room_state(7)
    later = RoomCodeTracker(2)  # another process, restoring from a store
    later.restore_room(7, *state)
    for c in codes[3:]:
        later.add_slice(7, c)
    assert later.code(7) == whole.code(7) == (3, 5)
    assert first.room_state(7) == state  # restoring copied: the saved state did not move
