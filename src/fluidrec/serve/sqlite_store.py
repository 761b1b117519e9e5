"""``SQLiteStore``: the embedded default state store, one file in WAL mode.

WAL lets rank requests read while a slice is being written (readers never block the
writer, nor it them); ``synchronous=FULL`` fsyncs the log at every commit, so a slice
acknowledged to a client survives a kill -9 and a power cut (NORMAL would survive only the
first). Several processes may share the file (``--workers N``): ``BEGIN IMMEDIATE`` takes
the write lock before the room is read, so two workers can never both advance a room from
the same vote. Each thread gets its own connection (sqlite3 connections are not shared).

A room's slice and room codes are one int32 blob (decoded for all 200 candidates of a request
with one ``np.frombuffer``, ~20x faster than parsing text); slices and clicks keep their codes
as readable text ("3,1,4,1").

Example:
    >>> store = SQLiteStore("runs/serve/state.sqlite", levels=4)
    >>> store.add_slice(NewSlice(1, 7, 3, t, t + 120_000, (3, 1, 4, 1))).created
    True
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fluidrec.errors import UsageError
from fluidrec.serve.store import (
    Changes,
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, slice_id INTEGER NOT NULL UNIQUE, room_id INTEGER NOT NULL,
    author_id INTEGER NOT NULL, start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL,
    codes TEXT NOT NULL, room_codes TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS slices_by_room ON slices(room_id, seq);
CREATE TABLE IF NOT EXISTS rooms (
    room_id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL, start_ts INTEGER NOT NULL, slices INTEGER NOT NULL,
    last_slice_id INTEGER NOT NULL, last_start_ts INTEGER NOT NULL, last_end_ts INTEGER NOT NULL,
    codes BLOB NOT NULL, votes TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rooms_by_end ON rooms(last_end_ts);
CREATE TABLE IF NOT EXISTS clicks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL, ts INTEGER NOT NULL, codes TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS clicks_by_user ON clicks(user_id, seq);
"""

_ROOM_COLS = "room_id, author_id, start_ts, slices, last_slice_id, last_start_ts, last_end_ts, codes"
_SLICE_COLS = "slice_id, room_id, author_id, start_ts, end_ts, codes, room_codes, seq"
_CHUNK = 900  # SQLite's default limit is 999 bound parameters per statement


def _text(codes: Sequence[int]) -> str:
    return ",".join(str(int(c)) for c in codes)


def _codes(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


def _blob(slice_codes: Sequence[int], room_codes: Sequence[int]) -> bytes:
    return np.asarray([*slice_codes, *room_codes], "<i4").tobytes()


def _unblob(blob: bytes, levels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    c = np.frombuffer(blob, "<i4").tolist()
    return tuple(c[:levels]), tuple(c[levels:])


def _slice(row: tuple) -> SliceRecord:
    return SliceRecord(row[0], row[1], row[2], row[3], row[4], _codes(row[5]), _codes(row[6]), row[7])


class SQLiteStore(Store):
    """``Store`` on one SQLite file (see the module docstring).

    Args:
        path: the database file (created with its directory).
        levels: L of the code model; a file written for another L is refused.
        history_len: clicks kept per user.
    """

    def __init__(self, path: str | Path, levels: int, *, history_len: int = 64) -> None:
        self.path = Path(path)
        self.levels = levels
        self.history_len = history_len
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._con()
            con.executescript(SCHEMA)  # idempotent; several workers may run it at once
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot open the state store {self.path}: {exc}") from None
        with self._write(con):
            row = con.execute("SELECT value FROM meta WHERE key = 'levels'").fetchone()
            _expect_levels(int(row[0]) if row else None, levels, self.url)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('levels', ?)", (str(levels),))

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=True)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        return con

    class _write:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the write lock is taken before reading)."""

        def __init__(self, con: sqlite3.Connection) -> None:
            self.con = con

        def __enter__(self) -> sqlite3.Connection:
            self.con.execute("BEGIN IMMEDIATE")
            return self.con

        def __exit__(self, kind, exc, tb) -> None:
            self.con.execute("COMMIT" if kind is None else "ROLLBACK")

    def add_slice(self, s: NewSlice) -> IngestResult:
        self._check_codes(s.codes)
        con = self._con()
        with self._write(con):
            row = con.execute(f"SELECT {_SLICE_COLS} FROM slices WHERE slice_id = ?", (s.slice_id,)).fetchone()
            if row is not None:
                stored = _slice(row)
                if stored.room_id != s.room_id:
                    raise SliceConflict(s.slice_id, stored.room_id, s.room_id)
                return IngestResult(stored, created=False)
            room = next_room_state(self._rooms(con, [s.room_id], True).get(s.room_id), s, self.levels)
            cur = con.execute(
                "INSERT INTO slices (slice_id, room_id, author_id, start_ts, end_ts, codes, room_codes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (s.slice_id, s.room_id, s.author_id, s.start_ts, s.end_ts, _text(s.codes), _text(room.room_codes)),
            )
            con.execute(
                f"INSERT OR REPLACE INTO rooms ({_ROOM_COLS}, votes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (room.room_id, room.author_id, room.start_ts, room.slices, room.last_slice_id, room.last_start_ts,
                 room.last_end_ts, _blob(room.slice_codes, room.room_codes), room.votes.to_json()),
            )  # fmt: skip
        rec = SliceRecord(s.slice_id, s.room_id, s.author_id, s.start_ts, s.end_ts, tuple(s.codes), room.room_codes, cur.lastrowid)
        return IngestResult(rec, created=True)

    def get_slice(self, slice_id: int) -> SliceRecord | None:
        row = self._con().execute(f"SELECT {_SLICE_COLS} FROM slices WHERE slice_id = ?", (slice_id,)).fetchone()
        return None if row is None else _slice(row)

    def room_slices(self, room_id: int) -> list[SliceRecord]:
        rows = self._con().execute(f"SELECT {_SLICE_COLS} FROM slices WHERE room_id = ? ORDER BY seq", (room_id,))
        return [_slice(r) for r in rows]

    def _rooms(self, con: sqlite3.Connection, room_ids: Sequence[int], with_votes: bool) -> dict[int, RoomState]:
        out: dict[int, RoomState] = {}
        cols = _ROOM_COLS + (", votes" if with_votes else "")
        ids = list(dict.fromkeys(int(r) for r in room_ids))
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            for r in con.execute(f"SELECT {cols} FROM rooms WHERE room_id IN ({','.join('?' * len(part))})", part):
                votes = VoteState.from_json(r[8], self.levels) if with_votes else None
                out[r[0]] = RoomState(*r[:7], *_unblob(r[7], self.levels), votes)
        return out

    def rooms(self, room_ids: Sequence[int], *, with_votes: bool = False) -> dict[int, RoomState]:
        return self._rooms(self._con(), room_ids, with_votes)

    def room_table(self, room_ids: Sequence[int]) -> RoomTable:
        con, ids, rows = self._con(), [int(r) for r in room_ids], []
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            rows += con.execute(f"SELECT room_id, author_id, start_ts, codes FROM rooms WHERE room_id IN ({','.join('?' * len(part))})", part).fetchall()
        codes = np.frombuffer(b"".join(r[3] for r in rows), "<i4").reshape(len(rows), 2, self.levels)  # (n, 2, L): one decode
        return RoomTable.from_rows(ids, self.levels, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], codes)

    def live_rooms(self, t_ms: int, grace_ms: int, limit: int) -> list[int]:
        rows = self._con().execute(
            "SELECT room_id FROM rooms WHERE last_end_ts > ? AND last_start_ts <= ? ORDER BY last_start_ts DESC, room_id LIMIT ?",
            (t_ms - grace_ms, t_ms, limit),
        )
        return [r[0] for r in rows]

    def all_room_ids(self) -> list[int]:
        return [r[0] for r in self._con().execute("SELECT room_id FROM rooms ORDER BY room_id")]

    def add_click(self, user_id: int, codes: Sequence[int], ts: int) -> int:
        self._check_codes(codes)
        k = self.history_len
        con = self._con()
        with self._write(con):
            con.execute("INSERT INTO clicks (user_id, ts, codes) VALUES (?, ?, ?)", (user_id, ts, _text(codes)))
            # keep the newest k: older clicks can never reach a ranker that reads k
            con.execute(
                "DELETE FROM clicks WHERE user_id = ? AND seq < (SELECT MIN(seq) FROM (SELECT seq FROM clicks WHERE user_id = ? ORDER BY seq DESC LIMIT ?))",
                (user_id, user_id, k),
            )
            n = con.execute("SELECT COUNT(*) FROM clicks WHERE user_id = ?", (user_id,)).fetchone()[0]
        return int(n)

    def history(self, user_id: int, k: int) -> list[tuple[int, ...]]:
        rows = self._con().execute("SELECT codes FROM clicks WHERE user_id = ? ORDER BY seq DESC LIMIT ?", (user_id, k))
        return [_codes(r[0]) for r in rows]

    def changes(self, cursor: tuple[int, ...] | None) -> Changes:
        """Slices and clicks after the cursor, read by their ``seq``: every write takes the write lock
        (``BEGIN IMMEDIATE``) before it draws its seq, so seqs commit in increasing order and a
        reader that saw seq n has seen every write before it. Two range reads on the rowid, in
        one read transaction (one snapshot for both)."""
        con = self._con()
        con.execute("BEGIN")
        try:
            if cursor is None:
                s = con.execute("SELECT COALESCE(MAX(seq), 0) FROM slices").fetchone()[0]
                c = con.execute("SELECT COALESCE(MAX(seq), 0) FROM clicks").fetchone()[0]
                return Changes((int(s), int(c)))
            slices = con.execute("SELECT seq, room_id FROM slices WHERE seq > ? ORDER BY seq", (cursor[0],)).fetchall()
            clicks = con.execute("SELECT seq, user_id FROM clicks WHERE seq > ? ORDER BY seq", (cursor[1],)).fetchall()
        finally:
            con.execute("COMMIT")
        new = (slices[-1][0] if slices else cursor[0], clicks[-1][0] if clicks else cursor[1])
        return Changes(new, tuple(r[1] for r in slices), tuple(r[1] for r in clicks))

    def counts(self) -> dict[str, int]:
        con = self._con()
        one = lambda q: int(con.execute(q).fetchone()[0])  # noqa: E731
        return {"rooms": one("SELECT COUNT(*) FROM rooms"), "slices": one("SELECT COUNT(*) FROM slices"),
                "users": one("SELECT COUNT(DISTINCT user_id) FROM clicks")}  # fmt: skip

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
