"""Room-level LUCID: the causal per-level majority vote over a room's slices so far.

fluid.txt 3.2: "at each quantization depth l, we take the most frequent codeword across
all cumulative slices". The rules, precisely:

- **Inclusion (causality).** The room code attached to an impression at time t uses the
  room's slices with ``start_ts <= t``: every slice that has started by t, which includes
  the slice on air at t. That slice is known at serving time (it is what the viewer is
  shown, and its own slice code is a ranker feature too), so including it is causal; a
  slice that starts after t never changes the code at t. A slice starting exactly at t
  counts (it is on air at t). ``include_on_air=False`` switches to the strict rule
  ``start_ts < t`` for users whose slice codes only become available after a delay.
- **Ties.** A level's leader changes only when another codeword's count becomes strictly
  larger; on a tie the incumbent (the codeword that reached the tied count first) stays.
  This keeps room codes stable and makes the streaming update O(1) per level.
- **Order.** Slices are applied in ``start_ts`` order; slices of one room with equal
  ``start_ts`` in their input order (``room_codes_for_dataset`` sorts by slice_id first).
- **Unknown.** An impression whose room has no coded slice yet (or that is not a live
  room: ``room_id == NO_ROOM``) gets ``UNKNOWN_CODE`` (-1) at every level. Slices without a
  code (e.g. no embedding) do not vote. ``fluidrec.codes.ngram.NgramSpec`` maps unknown
  codes to a reserved last row of each embedding table.

``RoomCodeTracker`` is the streaming reference (serving, online training);
``room_codes_reference`` replays a whole log through it; ``room_codes`` is the vectorised
batch version (tested to agree with the reference).

Shapes: S slices, I impressions, L levels.

Example:
    >>> tr = RoomCodeTracker(levels=2)
    >>> tr.add_slice(7, [3, 1]); tr.add_slice(7, [5, 1]); tr.add_slice(7, [5, 2])
    >>> tr.code(7)          # level 1: 5 has 2 votes; level 2: 1 has 2 votes
    (5, 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from fluidrec.errors import DataError, check
from fluidrec.utils.lookup import sorted_lookup

UNKNOWN_CODE = -1


class RoomCodeTracker:
    """Streaming per-room majority vote: O(L) per slice update, O(L) per query.

    Args:
        levels: L, code levels.

    Example:
        >>> tr = RoomCodeTracker(4)
        >>> tr.add_slice(room_id=12, code=[33, 42, 63, 3])
        >>> tr.code(12), tr.code(99)
        ((33, 42, 63, 3), (-1, -1, -1, -1))
    """

    def __init__(self, levels: int) -> None:
        check(levels >= 1, f"levels must be >= 1, got {levels}")
        self.levels = levels
        self._counts: dict[int, list[dict[int, int]]] = {}
        self._leader: dict[int, list[int]] = {}
        self._leader_count: dict[int, list[int]] = {}

    def add_slice(self, room_id: int, code: Sequence[int]) -> None:
        """Count one slice's code (length L) for ``room_id``; updates each level's leader."""
        if len(code) != self.levels:
            raise DataError(f"expected a code of {self.levels} levels, got {len(code)}", value=list(code))
        room_id = int(room_id)
        if room_id not in self._counts:
            self._counts[room_id] = [{} for _ in range(self.levels)]
            self._leader[room_id] = [UNKNOWN_CODE] * self.levels
            self._leader_count[room_id] = [0] * self.levels
        counts, leader, best = self._counts[room_id], self._leader[room_id], self._leader_count[room_id]
        for level in range(self.levels):
            c = int(code[level])
            n = counts[level].get(c, 0) + 1
            counts[level][c] = n
            if n > best[level]:  # strictly more votes: a tie keeps the incumbent
                leader[level] = c
                best[level] = n

    def code(self, room_id: int) -> tuple[int, ...]:
        """Current room code (length L); all UNKNOWN_CODE when the room has no slice yet."""
        leader = self._leader.get(int(room_id))
        return tuple(leader) if leader is not None else (UNKNOWN_CODE,) * self.levels

    def room_state(self, room_id: int) -> tuple[tuple[dict[int, int], ...], tuple[int, ...], tuple[int, ...]] | None:
        """(per-level vote counts, leaders, leaders' counts) of a room, copied; None before its first slice.

        With ``restore_room`` it lets a store persist the vote and a later process go on from it.
        """
        room_id = int(room_id)
        if room_id not in self._counts:
            return None
        return tuple(dict(c) for c in self._counts[room_id]), tuple(self._leader[room_id]), tuple(self._leader_count[room_id])

    def restore_room(self, room_id: int, counts: Sequence[dict[int, int]], leader: Sequence[int], best: Sequence[int]) -> None:
        """Set a room's vote to a state from ``room_state`` (copied, so the caller's state is never aliased)."""
        if not (len(counts) == len(leader) == len(best) == self.levels):
            raise DataError(f"a room vote needs {self.levels} levels, got {len(counts)}, {len(leader)}, {len(best)}")
        room_id = int(room_id)
        self._counts[room_id] = [dict(c) for c in counts]
        self._leader[room_id] = [int(x) for x in leader]
        self._leader_count[room_id] = [int(x) for x in best]

    def end_room(self, room_id: int) -> None:
        """Forget a finished room (frees its counts)."""
        for d in (self._counts, self._leader, self._leader_count):
            d.pop(int(room_id), None)

    def __len__(self) -> int:
        return len(self._counts)


def _check_inputs(imp_room: Any, imp_ts: Any, slice_room: Any, slice_start: Any, slice_codes: Any) -> tuple[np.ndarray, ...]:
    imp_room, imp_ts = np.asarray(imp_room, dtype=np.int64), np.asarray(imp_ts, dtype=np.int64)
    slice_room, slice_start = np.asarray(slice_room, dtype=np.int64), np.asarray(slice_start, dtype=np.int64)
    slice_codes = np.asarray(slice_codes)
    if imp_room.shape != imp_ts.shape or imp_room.ndim != 1:
        raise DataError(f"impression room_id and ts must be equal-length 1-D arrays, got {imp_room.shape} and {imp_ts.shape}")
    if slice_codes.ndim != 2 or slice_room.shape != slice_start.shape or len(slice_room) != len(slice_codes):
        raise DataError(f"expected slice room_id (S,), start_ts (S,), codes (S, L); got {slice_room.shape}, {slice_start.shape}, {slice_codes.shape}")
    return imp_room, imp_ts, slice_room, slice_start, slice_codes.astype(np.int64)


def room_codes_reference(
    imp_room: Any, imp_ts: Any, slice_room: Any, slice_start: Any, slice_codes: Any, *, include_on_air: bool = True
) -> np.ndarray:
    """Room code of every impression by replaying the log through ``RoomCodeTracker``.

    Args:
        imp_room, imp_ts: (I,) room id and time of each impression (any order).
        slice_room, slice_start, slice_codes: (S,), (S,), (S, L) slices with a code.
        include_on_air: count slices with start_ts <= t (True) or only start_ts < t.

    Returns:
        (I, L) int32 codes in impression input order (UNKNOWN_CODE where none).
    """
    imp_room, imp_ts, slice_room, slice_start, slice_codes = _check_inputs(imp_room, imp_ts, slice_room, slice_start, slice_codes)
    L = slice_codes.shape[1]
    tracker = RoomCodeTracker(L)
    s_order = np.argsort(slice_start, kind="stable")
    out = np.full((len(imp_room), L), UNKNOWN_CODE, dtype=np.int32)
    j = 0
    for i in np.argsort(imp_ts, kind="stable"):
        t = imp_ts[i]
        while j < len(s_order) and (slice_start[s_order[j]] <= t if include_on_air else slice_start[s_order[j]] < t):
            k = s_order[j]
            tracker.add_slice(slice_room[k], slice_codes[k])
            j += 1
        out[i] = tracker.code(imp_room[i])
    return out


def room_codes(
    imp_room: Any, imp_ts: Any, slice_room: Any, slice_start: Any, slice_codes: Any, *, include_on_air: bool = True
) -> np.ndarray:
    """Vectorised ``room_codes_reference`` (same arguments, same result), O((S + I) log(S + I)).

    Per level: the running count of each slice's codeword within its room (a grouped
    cumulative count), the room's running maximum count before the slice, and the leader =
    codeword of the last slice whose count set a new record (ties do not: incumbent stays).
    Each impression then takes the leader after the room's last slice with start_ts <= t.

    Example:
        >>> room_codes([7, 7], [100, 300], [7, 7, 7], [0, 100, 200], [[3], [5], [5]])
        array([[3], [5]], dtype=int32)
        # t=100: slices at 0 and 100 count, 3 and 5 tie, the incumbent 3 stays; t=300: 5 has 2 votes
    """
    imp_room, imp_ts, slice_room, slice_start, slice_codes = _check_inputs(imp_room, imp_ts, slice_room, slice_start, slice_codes)
    S, L = slice_codes.shape
    out = np.full((len(imp_room), L), UNKNOWN_CODE, dtype=np.int32)
    if S == 0 or len(imp_room) == 0:
        return out
    pos = np.arange(S)
    order = np.lexsort((pos, slice_start, slice_room))  # by room, then start, then input order
    sr, ss, sc = slice_room[order], slice_start[order], slice_codes[order]  # (S,), (S,), (S, L)
    new_room = np.r_[True, sr[1:] != sr[:-1]]
    seg = np.cumsum(new_room) - 1  # dense room index of each sorted slice
    big = S + 1  # larger than any count, so seg * big separates rooms inside one cummax
    leaders = np.empty((S, L), dtype=np.int64)
    for level in range(L):
        c = sc[:, level]
        by_code = np.lexsort((pos, c, seg))  # group (room, codeword), time order kept inside
        kc = np.stack([seg[by_code], c[by_code]])
        group_start = np.r_[True, (kc[:, 1:] != kc[:, :-1]).any(axis=0)]
        first = np.maximum.accumulate(np.where(group_start, pos, 0))
        count = np.empty(S, dtype=np.int64)
        count[by_code] = pos - first + 1  # votes for this slice's codeword so far, itself included
        running_max = np.maximum.accumulate(count + seg * big) - seg * big
        before = np.r_[0, running_max[:-1]]
        before[new_room] = 0
        record = count > before  # strictly more votes than the leader had: a new leader
        last_record = np.maximum.accumulate(np.where(record, pos, 0))  # first slice of a room is always a record
        leaders[:, level] = c[last_record]
    # position of the room's last slice with start <= t (or < t) via one search on (room, time rank)
    times = np.unique(np.concatenate([ss, imp_ts]))
    n_times = len(times) + 1
    slice_key = seg * n_times + np.searchsorted(times, ss)
    rooms = sr[new_room]
    ridx, found = sorted_lookup(rooms, imp_room)
    imp_key = ridx * n_times + np.searchsorted(times, imp_ts)
    p = np.searchsorted(slice_key, imp_key, side="right" if include_on_air else "left") - 1
    ok = found & (p >= 0)
    ok[ok] &= seg[p[ok]] == ridx[ok]
    out[ok] = leaders[p[ok]]
    return out


@dataclasses.dataclass
class RoomCodes:
    """Room codes of a dataset's impressions, in impression order.

    Attributes:
        room_ids: (I,) room of each impression.
        codes: (I, L) int32, UNKNOWN_CODE where the room had no coded slice yet.
        stats: counts for the summary (impressions, unknown share, slices used/skipped).
    """

    room_ids: np.ndarray
    codes: np.ndarray
    stats: dict[str, Any]


def _checked_codes(codes: Any, n: int, codebook_size: int | None) -> np.ndarray:
    """(n, L) integer slice codes in [0, K): a negative code would read as UNKNOWN_CODE, a large one
    would make every later table (n-gram ids, ranker embeddings) grow to fit it."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != n:
        raise DataError(f"expected slice ids (n,) and codes (n, L), got ({n},) and {codes.shape}", table="codes")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"expected integer codes, got dtype {codes.dtype}", table="codes")
    high = codebook_size if codebook_size is not None else np.iinfo(np.int32).max
    bad = (codes < 0) | (codes >= high)
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"slice code outside the codebook [0, {high})", table="codes", column=f"c{col + 1}", row=row, value=int(codes[row, col]))
    return codes


def room_codes_for_dataset(
    dataset: Any, slice_ids: np.ndarray, slice_codes: np.ndarray, *, include_on_air: bool = True, codebook_size: int | None = None
) -> RoomCodes:
    """Room code of every impression of a canonical dataset from its slice codes.

    Args:
        dataset: a ``fluidrec.data.io.Dataset`` or its directory.
        slice_ids: (n,) slice ids of the codes (e.g. from ``read_codes``); ids of video
            slices or of slices not in the dataset are ignored.
        slice_codes: (n, L) codes.
        include_on_air: see the module docstring (default: start_ts <= t).
        codebook_size: K; when given, codes must lie in [0, K) (always >= 0).

    Example:
        >>> ids, codes = read_codes("slice_codes.parquet")
        >>> rc = room_codes_for_dataset("data/tiny", ids, codes)
        >>> rc.codes.shape        # (n_impressions, 4)
    """
    from fluidrec.data.io import Dataset
    from fluidrec.data.schema import NO_ROOM

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    slice_ids = np.asarray(slice_ids, dtype=np.int64)
    slice_codes = _checked_codes(slice_codes, len(slice_ids), codebook_size)
    sl = ds.table("slices", ["slice_id", "room_id", "start_ts"])
    s_id = sl.column("slice_id").to_numpy().astype(np.int64)
    s_room = sl.column("room_id").to_numpy().astype(np.int64)
    s_start = sl.column("start_ts").to_numpy().astype(np.int64)
    # join codes onto slices by slice_id
    code_order = np.argsort(slice_ids, kind="stable")
    sorted_ids = slice_ids[code_order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        raise DataError("duplicate slice_id in slice codes", table="codes", column="slice_id", value=int(sorted_ids[dup[0]]))
    at, has_code = sorted_lookup(sorted_ids, s_id)
    live = s_room != NO_ROOM
    use = live & has_code
    # equal start times inside a room are applied in slice_id order (documented tie rule)
    pre = np.lexsort((s_id[use], s_start[use]))
    u_room, u_start = s_room[use][pre], s_start[use][pre]
    u_codes = slice_codes[code_order[at[use]]][pre]
    imp = ds.table("impressions", ["ts", "room_id"])
    i_ts = imp.column("ts").to_numpy().astype(np.int64)
    i_room = imp.column("room_id").to_numpy().astype(np.int64)
    codes = room_codes(i_room, i_ts, u_room, u_start, u_codes, include_on_air=include_on_air)
    unknown = (codes == UNKNOWN_CODE).all(axis=1) if codes.shape[1] else np.zeros(len(codes), dtype=bool)
    stats = {
        "impressions": int(len(i_ts)),
        "levels": int(slice_codes.shape[1]),
        "unknown_share": float(unknown.mean()) if len(unknown) else 0.0,
        "live_slices": int(live.sum()),
        "live_slices_with_code": int(use.sum()),
        "live_slices_without_code": int((live & ~has_code).sum()),
        "rooms_with_code": int(len(np.unique(u_room))),
        "include_on_air": include_on_air,
    }
    return RoomCodes(room_ids=i_room, codes=codes, stats=stats)
