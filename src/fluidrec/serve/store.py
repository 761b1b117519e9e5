"""Serving state behind one interface: room votes, slices, user click histories.

``Store`` is what the service reads and writes; ``SQLiteStore`` (one file, WAL, the embedded
default) and ``RedisStore`` (several workers or machines) implement it and pass the same
tests (``tests/serve/test_store.py``). ``open_store("sqlite:///path")`` /
``open_store("redis://host:port/db")`` (``serve.backends``) picks one.

Guarantees every implementation gives:

- **Atomic, idempotent ingest.** ``add_slice`` records the slice and advances its room's
  vote (``fluidrec.serve.votes.advance``, i.e. ``RoomCodeTracker``'s rule) in one
  transaction: after a crash either both happened or neither. A second ``add_slice`` with
  the same ``slice_id`` changes nothing and returns the stored record (``created=False``);
  with another ``room_id`` it raises ``SliceConflict``.
- **Durable once returned.** When ``add_slice`` returns, the write survives a kill -9 of the
  process (SQLite: committed with ``synchronous=FULL``; Redis: acknowledged by the server,
  and on disk under ``appendfsync always``).
- **Order.** Slices of a room vote in the order they were ingested (``seq``); the counts do
  not depend on order, only which codeword leads after a tie does.

Shapes: L code levels, K history length.

Example:
    >>> store = open_store("sqlite:///runs/serve/state.sqlite", levels=4)
    >>> res = store.add_slice(NewSlice(slice_id=1, room_id=7, author_id=3, start_ts=t, end_ts=t + 120_000, codes=(3, 1, 4, 1)))
    >>> store.rooms([7])[7].room_codes
    (3, 1, 4, 1)
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from fluidrec.codes.rooms import UNKNOWN_CODE
from fluidrec.errors import DataError, FluidrecError, UsageError, check
from fluidrec.serve.votes import VoteState, advance


class SliceConflict(FluidrecError):
    """A slice id that is already stored for another room (idempotency cannot hold)."""

    def __init__(self, slice_id: int, stored_room: int, given_room: int) -> None:
        self.slice_id, self.stored_room, self.given_room = slice_id, stored_room, given_room
        super().__init__(f"slice {slice_id} is already stored for room {stored_room}, not {given_room}")


@dataclasses.dataclass(frozen=True)
class NewSlice:
    """A slice to ingest, already coded.

    Args:
        slice_id, room_id, author_id: ids (>= 0).
        start_ts, end_ts: unix ms, start <= end.
        codes: (L,) slice code.
        room_start_ts: when the room went live (default: its first ingested slice's start).
    """

    slice_id: int
    room_id: int
    author_id: int
    start_ts: int
    end_ts: int
    codes: tuple[int, ...]
    room_start_ts: int | None = None

    def __post_init__(self) -> None:
        check(self.start_ts <= self.end_ts, f"start_ts {self.start_ts} is after end_ts {self.end_ts}")
        check(len(self.codes) >= 1, "codes must have at least one level")


@dataclasses.dataclass(frozen=True)
class SliceRecord:
    """A stored slice: what was ingested, its place in the ingest order, and the room code after it."""

    slice_id: int
    room_id: int
    author_id: int
    start_ts: int
    end_ts: int
    codes: tuple[int, ...]
    room_codes: tuple[int, ...]
    seq: int


@dataclasses.dataclass(frozen=True)
class RoomState:
    """A room as the ranker sees it: author, start, the slice on air (latest start) and the vote.

    Attributes:
        slice_codes: (L,) code of the latest-starting slice; room_codes: (L,) the vote's leaders.
        votes: the full vote (only when asked for: ``rooms(..., with_votes=True)``).
    """

    room_id: int
    author_id: int
    start_ts: int
    slices: int
    last_slice_id: int
    last_start_ts: int
    last_end_ts: int
    slice_codes: tuple[int, ...]
    room_codes: tuple[int, ...]
    votes: VoteState | None = None


@dataclasses.dataclass(frozen=True)
class RoomTable:
    """What ranking reads of B candidate rooms, as arrays (the hot path: no per-room objects).

    Attributes:
        known: (B,) the store has a slice of the room.
        slice_codes, room_codes: (B, L), ``UNKNOWN_CODE`` where not known.
        start_ts, author_id: (B,), 0 and -1 where not known.
    """

    known: np.ndarray
    slice_codes: np.ndarray
    room_codes: np.ndarray
    start_ts: np.ndarray
    author_id: np.ndarray

    @classmethod
    def from_rows(cls, room_ids: Sequence[int], levels: int, found: Sequence[int], author: Sequence[int], start: Sequence[int],
                  codes: np.ndarray) -> RoomTable:  # fmt: skip
        """From the known rooms among the distinct ``room_ids``: their ids, authors, starts and (n, 2, L) slice and room codes."""
        b, at = len(room_ids), {int(r): i for i, r in enumerate(room_ids)}
        rows = np.fromiter((at[int(r)] for r in found), np.int64, len(found))
        known = np.zeros(b, bool)
        known[rows] = True
        both = np.full((b, 2, levels), UNKNOWN_CODE, np.int64)  # (B, 2, L): slice code, room code
        both[rows] = codes
        starts, authors = np.zeros(b, np.int64), np.full(b, -1, np.int64)
        starts[rows], authors[rows] = start, author
        return cls(known, both[:, 0], both[:, 1], starts, authors)


@dataclasses.dataclass(frozen=True)
class IngestResult:
    record: SliceRecord
    created: bool


@dataclasses.dataclass(frozen=True)
class Changes:
    """What was written to a store after a cursor: the rooms whose state and the users whose history changed.

    Attributes:
        cursor: pass it to the next ``Store.changes`` call (opaque to callers).
        rooms, users: ids written after the cursor given (each may repeat).
    """

    cursor: tuple[int, ...]
    rooms: tuple[int, ...] = ()
    users: tuple[int, ...] = ()


def next_room_state(room: RoomState | None, s: NewSlice, levels: int) -> RoomState:
    """The room after ``s`` (``room`` read with its votes, None for a new room): the one update rule of every store."""
    if room is not None and room.votes is None:
        raise ValueError("next_room_state needs the room read with its votes")
    votes = advance(room.votes if room is not None else None, s.codes, levels)
    if room is None:
        start = s.start_ts if s.room_start_ts is None else min(s.room_start_ts, s.start_ts)
        return RoomState(s.room_id, s.author_id, start, 1, s.slice_id, s.start_ts, s.end_ts, s.codes, votes.code, votes)
    latest = s.start_ts >= room.last_start_ts  # the slice on air is the latest-starting one, not the latest ingested
    return RoomState(
        room.room_id, room.author_id, min(room.start_ts, s.start_ts), room.slices + 1,
        s.slice_id if latest else room.last_slice_id, s.start_ts if latest else room.last_start_ts,
        s.end_ts if latest else room.last_end_ts, s.codes if latest else room.slice_codes, votes.code, votes,
    )  # fmt: skip


class Store(abc.ABC):
    """Room state, slices and user histories (see the module docstring for the guarantees)."""

    levels: int
    url: str

    @abc.abstractmethod
    def add_slice(self, s: NewSlice) -> IngestResult:
        """Record ``s`` and advance its room's vote atomically; idempotent on ``slice_id``."""

    @abc.abstractmethod
    def get_slice(self, slice_id: int) -> SliceRecord | None: ...

    @abc.abstractmethod
    def room_slices(self, room_id: int) -> list[SliceRecord]:
        """The room's slices in ingest order."""

    @abc.abstractmethod
    def rooms(self, room_ids: Sequence[int], *, with_votes: bool = False) -> dict[int, RoomState]:
        """The known rooms among ``room_ids`` (one round trip: the rank hot path)."""

    @abc.abstractmethod
    def room_table(self, room_ids: Sequence[int]) -> RoomTable:
        """``rooms`` for ranking, as arrays in ``room_ids`` order (one round trip)."""

    @abc.abstractmethod
    def live_rooms(self, t_ms: int, grace_ms: int, limit: int) -> list[int]:
        """Rooms on air at ``t_ms``: latest slice started by then and ended less than ``grace_ms`` before; newest first."""

    @abc.abstractmethod
    def all_room_ids(self) -> list[int]: ...

    @abc.abstractmethod
    def add_click(self, user_id: int, codes: Sequence[int], ts: int) -> int:
        """Append a clicked slice's code to the user's history (the newest ``history_len`` are kept); returns its length."""

    @abc.abstractmethod
    def history(self, user_id: int, k: int) -> list[tuple[int, ...]]:
        """The codes of the user's last ``k`` clicks, newest first."""

    def changes(self, cursor: tuple[int, ...] | None) -> Changes | None:
        """The rooms and users written since ``cursor`` (None: only the cursor of now), in one cheap read.

        What lets a worker keep room state and histories in memory and stay correct while
        other workers or processes write (``fluidrec.serve.cache.StateCache``). A store must
        report every write committed after the cursor, in commit order; one that cannot
        returns None (the default), and readers then read through to it every time.
        """
        return None

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """``rooms``, ``slices``, ``users`` stored (health and metrics)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def _check_codes(self, codes: Sequence[int]) -> None:
        if len(codes) != self.levels:
            raise DataError(f"expected a code of {self.levels} levels, got {len(codes)}", column="codes", value=list(codes))


def _expect_levels(stored: int | None, levels: int, url: str) -> None:
    """A store written for a code model of other depth cannot serve this one."""
    if stored is not None and stored != levels:
        raise UsageError(f"state store {url} holds codes of {stored} levels but the model uses {levels}; use another --state")


def verify_store(store: Store, room_ids: Iterable[int] | None = None) -> list[str]:
    """Problems found by replaying every room's stored slices through the vote: a room whose slice
    count, vote, code or slice on air disagrees with its slices is half-written. Empty: consistent."""
    problems = []
    ids = list(store.all_room_ids() if room_ids is None else room_ids)
    stored = store.rooms(ids, with_votes=True)
    for rid in ids:
        room, slices = stored.get(rid), store.room_slices(rid)
        if room is None:
            if slices:
                problems.append(f"room {rid}: {len(slices)} slices but no room state")
            continue
        replay = None
        for s in slices:
            replay = next_room_state(replay, NewSlice(s.slice_id, s.room_id, s.author_id, s.start_ts, s.end_ts, s.codes), store.levels)
            if s.room_codes != replay.room_codes:
                problems.append(f"room {rid}: slice {s.slice_id} recorded room code {s.room_codes}, replay gives {replay.room_codes}")
        if replay is None:
            problems.append(f"room {rid}: room state but no slices")
            continue
        for name in ("slices", "room_codes", "votes", "last_slice_id", "slice_codes"):
            if getattr(room, name) != getattr(replay, name):
                problems.append(f"room {rid}: stored {name} {getattr(room, name)} != replayed {getattr(replay, name)}")
    return problems
