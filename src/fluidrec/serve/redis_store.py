"""``RedisStore``: the state store for several workers or machines (``redis://HOST:PORT[/DB]``).

Ingest is an optimistic transaction: WATCH the slice and room keys, read the room's vote,
advance it in Python (``next_room_state``: the one rule, no Lua copy of it), then
MULTI/EXEC the slice, the room and the indexes together; a concurrent writer to the same
room makes EXEC fail and the update is retried from the new vote. A MULTI/EXEC block is
applied whole or not at all, also when Redis itself dies while appending it to its AOF
(Redis drops an unfinished transaction at the end of the file when it loads it).

Durability is Redis's: run it with ``--appendonly yes --appendfsync always`` so that an
acknowledged EXEC is on disk (``everysec`` may lose the last second if Redis itself dies;
a kill -9 of the fluidrec service loses nothing either way). ``fluidrec.serve.process.RedisProcess``
starts one configured like that.

Keys (prefix ``fluidrec:``): ``slice:{id}`` and ``room:{id}`` hashes, ``room_slices:{id}``
list (ingest order), ``rooms`` sorted set (room id by its latest slice's end: the live
index), ``hist:{user}`` list (newest first), ``users`` set, ``seq`` and ``slices`` counters,
``meta`` hash.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from fluidrec.errors import DataError, UsageError
from fluidrec.serve.store import (
    IngestResult,
    NewSlice,
    RoomState,
    RoomTable,
    SliceConflict,
    SliceRecord,
    Store,
    _expect_levels,
    next_room_state,
)
from fluidrec.serve.votes import VoteState

PREFIX = "fluidrec:"
MAX_RETRIES = 100  # optimistic retries of one ingest under contention on its room
LOADING_WAIT_S = 120.0  # how long opening waits for a Redis that is still loading its AOF
_ROOM_FIELDS = ("author_id", "start_ts", "slices", "last_slice_id", "last_start_ts", "last_end_ts", "slice_codes", "room_codes")
_SLICE_FIELDS = ("room_id", "author_id", "start_ts", "end_ts", "codes", "room_codes", "seq")


def _text(codes: Sequence[int]) -> str:
    return ",".join(str(int(c)) for c in codes)


def _codes(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


def _redis():
    try:
        import redis
    except ImportError:  # pragma: no cover - declared dependency
        raise UsageError("the Redis store needs the redis client: pip install redis") from None
    return redis


class RedisStore(Store):
    """``Store`` on a Redis server (see the module docstring).

    Args:
        url: ``redis://HOST:PORT[/DB]``.
        levels: L of the code model; a database written for another L is refused.
        history_len: clicks kept per user.
    """

    def __init__(self, url: str, levels: int, *, history_len: int = 64) -> None:
        redis = _redis()
        self.url, self.levels, self.history_len = url, levels, history_len
        deadline = time.monotonic() + LOADING_WAIT_S
        while True:
            try:
                self.r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=30, socket_connect_timeout=5)
                self.r.hsetnx(self._k("meta"), "levels", levels)
                stored = self.r.hget(self._k("meta"), "levels")
                break
            except redis.BusyLoadingError:  # a restarted Redis replaying its AOF: wait for it
                if time.monotonic() > deadline:
                    raise UsageError(f"the state store {url} is still loading its data after {LOADING_WAIT_S} s") from None
                time.sleep(0.1)
            except (redis.RedisError, ValueError) as exc:
                raise UsageError(f"cannot use the state store {url}: {exc}") from None
        _expect_levels(int(stored), levels, url)

    @staticmethod
    def _k(*parts: object) -> str:
        return PREFIX + ":".join(str(p) for p in parts)

    def _slice(self, slice_id: int, h: dict) -> SliceRecord:
        return SliceRecord(slice_id, int(h["room_id"]), int(h["author_id"]), int(h["start_ts"]), int(h["end_ts"]),
                           _codes(h["codes"]), _codes(h["room_codes"]), int(h["seq"]))  # fmt: skip

    def _room(self, room_id: int, values: Sequence[str | None], votes: str | None) -> RoomState:
        a, st, n, ls, lst, le, sc, rc = values
        v = VoteState.from_json(votes, self.levels) if votes is not None else None
        return RoomState(room_id, int(a), int(st), int(n), int(ls), int(lst), int(le), _codes(sc), _codes(rc), v)

    def add_slice(self, s: NewSlice) -> IngestResult:
        redis = _redis()
        self._check_codes(s.codes)
        skey, rkey = self._k("slice", s.slice_id), self._k("room", s.room_id)
        with self.r.pipeline() as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    pipe.watch(skey, rkey)
                    existing = pipe.hgetall(skey)
                    if existing:
                        pipe.unwatch()
                        stored = self._slice(s.slice_id, existing)
                        if stored.room_id != s.room_id:
                            raise SliceConflict(s.slice_id, stored.room_id, s.room_id)
                        return IngestResult(stored, created=False)
                    values = pipe.hmget(rkey, [*_ROOM_FIELDS, "votes"])
                    room = None if values[0] is None else self._room(s.room_id, values[:-1], values[-1])
                    new = next_room_state(room, s, self.levels)
                    seq = int(self.r.incr(self._k("seq")))  # outside the transaction: a gap after a retry only spaces the order
                    pipe.multi()
                    pipe.hset(skey, mapping={"room_id": s.room_id, "author_id": s.author_id, "start_ts": s.start_ts, "end_ts": s.end_ts,
                                             "codes": _text(s.codes), "room_codes": _text(new.room_codes), "seq": seq})  # fmt: skip
                    pipe.hset(rkey, mapping={
                        "author_id": new.author_id, "start_ts": new.start_ts, "slices": new.slices, "last_slice_id": new.last_slice_id,
                        "last_start_ts": new.last_start_ts, "last_end_ts": new.last_end_ts, "slice_codes": _text(new.slice_codes),
                        "room_codes": _text(new.room_codes), "votes": new.votes.to_json()})  # fmt: skip
                    pipe.rpush(self._k("room_slices", s.room_id), s.slice_id)
                    pipe.zadd(self._k("rooms"), {str(s.room_id): new.last_end_ts})
                    pipe.incr(self._k("slices"))
                    pipe.execute()
                    rec = SliceRecord(s.slice_id, s.room_id, s.author_id, s.start_ts, s.end_ts, tuple(s.codes), new.room_codes, seq)
                    return IngestResult(rec, created=True)
                except redis.WatchError:
                    continue
        raise DataError(f"room {s.room_id} changed under {MAX_RETRIES} attempts to ingest slice {s.slice_id}; retry", column="room_id", value=s.room_id)

    def get_slice(self, slice_id: int) -> SliceRecord | None:
        h = self.r.hgetall(self._k("slice", slice_id))
        return self._slice(slice_id, h) if h else None

    def room_slices(self, room_id: int) -> list[SliceRecord]:
        ids = [int(i) for i in self.r.lrange(self._k("room_slices", room_id), 0, -1)]
        with self.r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self._k("slice", i))
            return [self._slice(i, h) for i, h in zip(ids, pipe.execute()) if h]

    def rooms(self, room_ids: Sequence[int], *, with_votes: bool = False) -> dict[int, RoomState]:
        ids = list(dict.fromkeys(int(r) for r in room_ids))
        fields = [*_ROOM_FIELDS, "votes"] if with_votes else list(_ROOM_FIELDS)
        with self.r.pipeline(transaction=False) as pipe:  # one round trip for the whole request
            for i in ids:
                pipe.hmget(self._k("room", i), fields)
            rows = pipe.execute()
        return {i: self._room(i, v[: len(_ROOM_FIELDS)], v[-1] if with_votes else None) for i, v in zip(ids, rows) if v[0] is not None}

    def room_table(self, room_ids: Sequence[int]) -> RoomTable:
        ids = [int(r) for r in room_ids]
        with self.r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hmget(self._k("room", i), ["author_id", "start_ts", "slice_codes", "room_codes"])
            rows = pipe.execute()
        hit = [(i, v) for i, v in zip(ids, rows) if v[0] is not None]
        text = ",".join(f"{v[2]},{v[3]}" for _, v in hit)  # one parse for all rooms, not 2B tuples
        # (n_hit, 2, L): slice and room codes of each room found
        codes = np.array(text.split(","), np.int64).reshape(len(hit), 2, self.levels) if hit else np.zeros((0, 2, self.levels), np.int64)  # (R, 2, L): slice and room codes per hit
        return RoomTable.from_rows(ids, self.levels, [i for i, _ in hit], [int(v[0]) for _, v in hit], [int(v[1]) for _, v in hit], codes)

    def live_rooms(self, t_ms: int, grace_ms: int, limit: int) -> list[int]:
        ids = [int(i) for i in self.r.zrangebyscore(self._k("rooms"), f"({t_ms - grace_ms}", "+inf")]
        with self.r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(self._k("room", i), "last_start_ts")
            starts = pipe.execute()
        on_air = [(-int(st), i) for i, st in zip(ids, starts) if st is not None and int(st) <= t_ms]
        return [i for _, i in sorted(on_air)[:limit]]

    def all_room_ids(self) -> list[int]:
        return sorted(int(i) for i in self.r.zrange(self._k("rooms"), 0, -1))

    def add_click(self, user_id: int, codes: Sequence[int], ts: int) -> int:
        self._check_codes(codes)
        key = self._k("hist", user_id)
        with self.r.pipeline() as pipe:  # MULTI/EXEC: push and trim together
            pipe.lpush(key, _text(codes))
            pipe.ltrim(key, 0, self.history_len - 1)
            pipe.sadd(self._k("users"), user_id)
            pipe.llen(key)
            return int(pipe.execute()[-1])

    def history(self, user_id: int, k: int) -> list[tuple[int, ...]]:
        return [_codes(c) for c in self.r.lrange(self._k("hist", user_id), 0, k - 1)]

    def counts(self) -> dict[str, int]:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.zcard(self._k("rooms"))
            pipe.get(self._k("slices"))
            pipe.scard(self._k("users"))
            rooms, slices, users = pipe.execute()
        return {"rooms": int(rooms), "slices": int(slices or 0), "users": int(users)}

    def close(self) -> None:
        self.r.close()
