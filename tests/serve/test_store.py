"""The store contract, run on SQLite and on a real Redis server: atomic idempotent ingest, the
vote of ``fluidrec.codes``, the slice on air, live rooms, histories, levels, concurrent writers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fluidrec.codes.rooms import RoomCodeTracker, room_codes
from fluidrec.errors import DataError, UsageError
from fluidrec.serve.backends import open_store
from fluidrec.serve.store import NewSlice, SliceConflict, verify_store

L, K = 3, 5
T = 1_800_000_000_000


def _slice(sid: int, room: int, start: int, codes, end: int | None = None) -> NewSlice:
    return NewSlice(sid, room, room % 7, start, start + 120_000 if end is None else end, tuple(int(c) for c in codes))


@pytest.fixture
def store(state_url):
    s = open_store(state_url, L, history_len=4)
    yield s
    s.close()


def test_ingest_is_atomic_and_idempotent(store):
    first = store.add_slice(_slice(1, 10, T, [1, 2, 3]))
    assert first.created and first.record.room_codes == (1, 2, 3)
    again = store.add_slice(_slice(1, 10, T, [4, 4, 4]))  # same id, other content: the stored slice stands
    assert not again.created and again.record == first.record
    room = store.rooms([10], with_votes=True)[10]
    assert room.slices == 1 and room.votes.counts == ({1: 1}, {2: 1}, {3: 1})
    with pytest.raises(SliceConflict):
        store.add_slice(_slice(1, 11, T, [1, 2, 3]))
    assert store.rooms([11]) == {} and store.counts()["slices"] == 1
    with pytest.raises(DataError):
        store.add_slice(_slice(2, 10, T, [1, 2]))  # a code of the wrong depth never reaches the vote


def test_vote_matches_the_batch_room_codes_of_fluidrec_codes(store):
    rng = np.random.default_rng(0)
    n = 120
    rooms = rng.integers(0, 6, n)
    starts = T + np.arange(n) * 1000
    codes = rng.integers(0, K, (n, L))
    for i in range(n):
        rec = store.add_slice(_slice(i, int(rooms[i]), int(starts[i]), codes[i])).record
        # the code recorded after each slice is the vectorised batch rule at that slice's start (on air counts)
        expect = room_codes([rooms[i]], [starts[i]], rooms[: i + 1], starts[: i + 1], codes[: i + 1])[0]
        assert rec.room_codes == tuple(expect)
    tracker = RoomCodeTracker(L)
    for i in range(n):
        tracker.add_slice(int(rooms[i]), codes[i])
    stored = store.rooms(range(6))
    assert {r: s.room_codes for r, s in stored.items()} == {r: tracker.code(r) for r in range(6)}
    assert verify_store(store) == []


def test_slice_on_air_is_the_latest_start_even_when_ingested_late(store):
    store.add_slice(_slice(1, 5, T + 240_000, [1, 1, 1]))
    store.add_slice(_slice(2, 5, T, [2, 2, 2]))  # an older slice arriving late still votes
    room = store.rooms([5])[5]
    assert room.last_slice_id == 1 and room.slice_codes == (1, 1, 1) and room.slices == 2
    assert room.start_ts == T  # the room started with its earliest slice
    tab = store.room_table([9, 5])
    assert tab.known.tolist() == [False, True]
    assert tab.slice_codes.tolist() == [[-1, -1, -1], [1, 1, 1]] and tab.room_codes.tolist() == [[-1, -1, -1], [1, 1, 1]]
    assert tab.author_id.tolist() == [-1, 5 % 7] and tab.start_ts[1] == T


def test_live_rooms(store):
    store.add_slice(_slice(1, 1, T, [0, 0, 0], end=T + 100))
    store.add_slice(_slice(2, 2, T + 50, [0, 0, 0], end=T + 1000))
    store.add_slice(_slice(3, 3, T + 5000, [0, 0, 0], end=T + 6000))  # not started yet at T + 500
    assert store.live_rooms(T + 500, grace_ms=0, limit=10) == [2]
    assert store.live_rooms(T + 500, grace_ms=1000, limit=10) == [2, 1]  # newest first
    assert store.live_rooms(T + 500, grace_ms=1000, limit=1) == [2]
    assert store.live_rooms(T + 5500, grace_ms=0, limit=10) == [3]


def test_history_is_newest_first_and_capped(store):
    for i in range(6):
        n = store.add_click(7, (i, 0, 0), T + i)
    assert n == 4
    assert store.history(7, 64) == [(5, 0, 0), (4, 0, 0), (3, 0, 0), (2, 0, 0)]
    assert store.history(7, 2) == [(5, 0, 0), (4, 0, 0)] and store.history(8, 64) == []
    assert store.counts()["users"] == 1


def test_a_store_of_another_depth_is_refused(state_url):
    open_store(state_url, L).close()
    with pytest.raises(UsageError, match="3 levels"):
        open_store(state_url, L + 1)


def test_concurrent_writers_to_one_room_lose_no_vote(state_url):
    """Two store instances (as two workers would have) ingest into the same rooms at once."""
    stores = [open_store(state_url, L) for _ in range(2)]
    rng = np.random.default_rng(1)
    plan = [[(w * 1000 + i, int(rng.integers(0, 2)), rng.integers(0, K, L)) for i in range(60)] for w in range(2)]

    def work(store, items):
        for sid, room, codes in items:
            store.add_slice(_slice(sid, room, T + sid, codes))

    threads = [threading.Thread(target=work, args=(s, p)) for s, p in zip(stores, plan)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rooms = stores[0].rooms([0, 1], with_votes=True)
    assert sum(r.slices for r in rooms.values()) == 120
    assert all(sum(level.values()) == r.slices for r in rooms.values() for level in r.votes.counts)
    assert verify_store(stores[0]) == []
    for s in stores:
        s.close()


def test_verify_store_finds_a_half_written_room(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    store = open_store(url, L)
    store.add_slice(_slice(1, 3, T, [1, 1, 1]))
    store.add_slice(_slice(2, 3, T + 1, [2, 2, 2]))
    store._con().execute("UPDATE rooms SET slices = 1 WHERE room_id = 3")  # a room update lost, its slice kept
    assert any("slices" in p for p in verify_store(store))
    store.close()


def test_open_store_rejects_unknown_urls(tmp_path):
    for bad in ("postgres://x", "sqlite://relative", "nonsense"):
        with pytest.raises(UsageError):
            open_store(bad, L)
