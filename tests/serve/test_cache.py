"""StateCache: the worker's in-memory rooms and histories answer as the store does while another
handle writes (another worker), on both stores (Redis: read through, no change feed)."""

from __future__ import annotations

import numpy as np

from fluidrec.serve.cache import StateCache
from fluidrec.serve.backends import open_store
from fluidrec.serve.store import NewSlice

T = 1_800_000_000_000


def _same_table(a, b) -> None:
    for name in ("known", "slice_codes", "room_codes", "start_ts", "author_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_cache_answers_as_the_store_while_another_handle_writes(state_url):
    reader = open_store(state_url, 3, history_len=5)
    writer = open_store(state_url, 3, history_len=5)  # another worker: the reader's process never sees these calls
    writer.add_slice(NewSlice(0, 1, 9, T, T + 1000, (1, 2, 3)))  # before the cache exists
    cache = StateCache(reader, max_rooms=25)  # small: the reset-and-refill path runs too
    assert cache.enabled == state_url.startswith("sqlite")
    rng = np.random.default_rng(0)
    for i in range(1, 200):
        room = int(rng.integers(0, 40))
        start = T + int(rng.integers(-50, 50)) * 1000  # out of order: the slice on air is the latest-starting one
        writer.add_slice(NewSlice(i, room, room % 5, start, start + 120_000, tuple(rng.integers(0, 4, 3).tolist()), room_start_ts=T - 5))
        if i % 4 == 0:
            writer.add_click(int(rng.integers(0, 3)), tuple(rng.integers(0, 4, 3).tolist()), T)
        ids = rng.choice(50, int(rng.integers(1, 30)), replace=False).tolist()  # rooms never written to as well
        _same_table(cache.room_table(ids), reader.room_table(ids))
        user = int(rng.integers(0, 4))
        want_hist = np.asarray(reader.history(user, 5), np.int64).reshape(-1, 3)
        np.testing.assert_array_equal(cache.history(user, 5), want_hist)
        hist, table = cache.request(user, 5, ids)  # what rank reads: both after one feed read
        np.testing.assert_array_equal(hist, want_hist)
        _same_table(table, reader.room_table(ids))
    if cache.enabled:
        assert 0 < len(cache._slot) <= 25
    reader.close()
    writer.close()


def test_cached_history_is_read_only(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}", 2, history_len=4)
    store.add_click(1, (3, 1), T)
    h = StateCache(store).history(1, 4)
    assert h.tolist() == [[3, 1]] and not h.flags.writeable  # a caller cannot change what later requests read
    store.close()
