"""The room-code vote as stored state: ``fluidrec.codes.RoomCodeTracker``'s per-room counts,
leaders and leader counts, restored from a store, advanced by one slice, written back.

The rule itself (strict majority, a tie keeps the incumbent, O(L) per slice) lives only in
``RoomCodeTracker.add_slice``; this module moves one room's tracker state in and out of a
store so that every worker, process and restart advances the same vote, through the
tracker's ``room_state`` and ``restore_room``.

Shapes: L code levels.

Example:
    >>> v = advance(None, [3, 1], levels=2)       # the room's first slice
    >>> v = advance(v, [5, 1], levels=2); v.code  # 3 and 5 tie at level 1: the incumbent stays
    (3, 1)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from fluidrec.codes.rooms import UNKNOWN_CODE, RoomCodeTracker
from fluidrec.errors import DataError

_ROOM = 0  # the tracker holds one room at a time here; its id does not matter


@dataclasses.dataclass(frozen=True)
class VoteState:
    """One room's vote: per level the count of each codeword, the leader and its count.

    Attributes:
        counts: L dicts codeword -> votes.
        leader: (L,) leading codeword per level (``UNKNOWN_CODE`` before the first slice).
        best: (L,) the leader's votes.
    """

    counts: tuple[dict[int, int], ...]
    leader: tuple[int, ...]
    best: tuple[int, ...]

    @property
    def code(self) -> tuple[int, ...]:
        """The room code (length L)."""
        return self.leader

    @property
    def slices(self) -> int:
        """Slices counted (every level counts each slice once)."""
        return sum(self.counts[0].values()) if self.counts else 0

    def to_json(self) -> str:
        return json.dumps({"counts": [{str(k): v for k, v in c.items()} for c in self.counts], "leader": list(self.leader), "best": list(self.best)})

    @classmethod
    def from_json(cls, text: str | bytes, levels: int) -> VoteState:
        """Parse a stored vote; a blob that does not have ``levels`` levels is a DataError (a store of another code model)."""
        try:
            d = json.loads(text)
            state = cls(
                tuple({int(k): int(v) for k, v in c.items()} for c in d["counts"]),
                tuple(int(x) for x in d["leader"]),
                tuple(int(x) for x in d["best"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"unreadable room vote in the store ({type(exc).__name__})", table="room state") from None
        if not (len(state.counts) == len(state.leader) == len(state.best) == levels):
            raise DataError(f"stored room vote has {len(state.leader)} levels, the code model {levels}", table="room state")
        return state

    @classmethod
    def empty(cls, levels: int) -> VoteState:
        return cls(tuple({} for _ in range(levels)), (UNKNOWN_CODE,) * levels, (0,) * levels)


def _restore(tracker: RoomCodeTracker, state: VoteState) -> None:
    tracker.restore_room(_ROOM, state.counts, state.leader, state.best)


def _export(tracker: RoomCodeTracker) -> VoteState:
    counts, leader, best = tracker.room_state(_ROOM)
    return VoteState(counts, leader, best)


def advance(state: VoteState | None, code: Sequence[int], levels: int) -> VoteState:
    """The vote after one more slice with ``code`` (length L), by ``RoomCodeTracker.add_slice``."""
    tracker = RoomCodeTracker(levels)
    if state is not None and state.slices:
        _restore(tracker, state)
    tracker.add_slice(_ROOM, [int(c) for c in code])
    return _export(tracker)
