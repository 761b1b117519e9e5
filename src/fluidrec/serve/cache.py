"""``StateCache``: a worker's in-memory copy of the room state and user histories that ranking reads,
kept correct by the store's change feed.

A rank request reads 200 rooms and one history. Read from SQLite each time that is two
queries, 200 rows and a blob decode; from memory it is a dict lookup per room and a
gather (the figures: ``python benchmarks/serve.py --profile``, docs/serving.md).
Correctness across workers and processes comes from ``Store.changes``: before every read
the cache asks the store what was written since its cursor (two range reads on the
rowid) and re-reads exactly those rooms and users,
so a request always sees every write committed before it started, as a read-through
would. A store without a change feed (``changes`` returns None, e.g. Redis) is read
through on every request.

Answers are identical to the store's: ``room_table(ids)`` equals ``store.room_table(ids)``
and ``history(user, k)`` equals ``store.history(user, k)`` as of the last feed read
(``tests/serve/test_cache.py`` checks it while another store handle writes).

Shapes: B candidates, L levels, K history length.

Example:
    >>> cache = StateCache(store)
    >>> tab = cache.room_table([7, 8, 9])        # RoomTable, as store.room_table gives
    >>> hist = cache.history(5, 64)              # (K', L) int64, newest first
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from fluidrec.codes.rooms import UNKNOWN_CODE
from fluidrec.errors import check
from fluidrec.serve.store import RoomTable, Store


class StateCache:
    """Rooms (known or not) and histories a worker has read, refreshed from ``store.changes``.

    Args:
        store: the store read through on a miss (and on every call, where it has no change feed).
        max_rooms, max_users: entries kept; past that the cache is emptied and refills on
            demand (rooms live ~40 minutes: old ones are never asked for again).
    """

    def __init__(self, store: Store, *, max_rooms: int = 1_000_000, max_users: int = 1_000_000) -> None:
        check(max_rooms >= 1 and max_users >= 1, f"max_rooms and max_users must be >= 1, got {max_rooms}, {max_users}")
        self.store, self.levels = store, store.levels
        self.max_rooms, self.max_users = max_rooms, max_users
        self._lock = threading.Lock()  # several threads may rank at once (the fast path and the plain route)
        start = store.changes(None)
        self.enabled = start is not None
        self._cursor = start.cursor if start is not None else None
        self._reset_rooms()
        self._hist: dict[int, tuple[int, np.ndarray]] = {}  # user -> (k asked, (K', L) codes)

    def _reset_rooms(self) -> None:
        self._slot: dict[int, int] = {}  # room id -> row of the arrays below
        self._codes = np.zeros((1024, 2, self.levels), np.int64)  # (N, 2, L): slice code, room code
        self._start = np.zeros(1024, np.int64)
        self._author = np.full(1024, -1, np.int64)
        self._known = np.zeros(1024, bool)

    def _refresh(self) -> None:
        """Drop what was written since the cursor (read again on demand) and advance the cursor."""
        ch = self.store.changes(self._cursor)
        self._cursor = ch.cursor
        if ch.rooms:
            self._store_rooms(list(dict.fromkeys(ch.rooms)), only_cached=True)
        for u in ch.users:
            self._hist.pop(u, None)

    def _store_rooms(self, ids: list[int], *, only_cached: bool = False) -> None:
        """Read ``ids`` from the store into their slots (new slots unless ``only_cached``)."""
        if only_cached:
            ids = [r for r in ids if r in self._slot]
            if not ids:
                return
        tab = self.store.room_table(ids)
        rows = np.fromiter((self._slot.setdefault(r, len(self._slot)) for r in ids), np.int64, len(ids))
        if rows.max() >= len(self._start):
            self._grow(int(rows.max()) + 1)
        self._codes[rows, 0], self._codes[rows, 1] = tab.slice_codes, tab.room_codes
        self._start[rows], self._author[rows], self._known[rows] = tab.start_ts, tab.author_id, tab.known

    def _grow(self, need: int) -> None:
        n = max(need, 2 * len(self._start))
        grow = lambda a, fill: np.concatenate([a, np.full((n - len(a), *a.shape[1:]), fill, a.dtype)])  # noqa: E731
        self._codes, self._start = grow(self._codes, UNKNOWN_CODE), grow(self._start, 0)
        self._author, self._known = grow(self._author, -1), grow(self._known, False)

    def room_table(self, room_ids: Sequence[int]) -> RoomTable:
        """``store.room_table(room_ids)`` (distinct ids), from memory where it can be."""
        if not self.enabled:
            return self.store.room_table(room_ids)
        with self._lock:
            self._refresh()
            return self._room_table(room_ids)

    def history(self, user_id: int, k: int) -> np.ndarray:
        """(K', L) int64 codes of the user's last ``k`` clicks, newest first (``store.history`` as an array)."""
        if not self.enabled:
            return _history_array(self.store.history(user_id, k), self.levels)
        with self._lock:
            self._refresh()
            return self._history(user_id, k)

    def request(self, user_id: int, k: int, room_ids: Sequence[int]) -> tuple[np.ndarray, RoomTable | None]:
        """``history(user_id, k)`` and ``room_table(room_ids)`` (None for no rooms) after one change-feed read."""
        if not self.enabled:
            return self.history(user_id, k), self.store.room_table(room_ids) if room_ids else None
        with self._lock:
            self._refresh()
            return self._history(user_id, k), self._room_table(room_ids) if room_ids else None

    def _room_table(self, room_ids: Sequence[int]) -> RoomTable:
        missing = [r for r in room_ids if r not in self._slot]
        if missing and len(self._slot) + len(missing) > self.max_rooms:
            self._reset_rooms()  # full: start over with this request's rooms
            missing = list(room_ids)
        if missing:
            self._store_rooms(missing)
        slot = self._slot
        rows = np.fromiter((slot[r] for r in room_ids), np.int64, len(room_ids))
        return RoomTable(self._known[rows], self._codes[rows, 0], self._codes[rows, 1], self._start[rows], self._author[rows])

    def _history(self, user_id: int, k: int) -> np.ndarray:
        got = self._hist.get(user_id)
        if got is not None and got[0] == k:
            return got[1]
        h = _history_array(self.store.history(user_id, k), self.levels)
        if len(self._hist) >= self.max_users:
            self._hist.clear()
        self._hist[user_id] = (k, h)
        return h


def _history_array(history: list[tuple[int, ...]], levels: int) -> np.ndarray:
    h = np.asarray(history, np.int64).reshape(-1, levels)  # (K', L), newest first
    h.setflags(write=False)  # shared by every request of the user until the next click
    return h
