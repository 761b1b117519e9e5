"""Per-author Sid sequences in event time: the log view (``AuthorSequences``) and the store.

Shape letters: G segments, A authors, B batch, l context entries.

An author's raw sequence is the Sids of their segments across all their rooms, ordered by
segment end time; its RLE (``rle.rle_encode``) is the compressed sequence. A *state* is
"author a after their first k segments ended" (k = 0..n_a), and every consumer asks for
the context of a state, so causality is one rule: an impression (or a scoring tick) at
time t sees the state whose k counts the author's segments with ``end_ts <= t``.

- ``AuthorSequences``: built once from the whole segment log, gives the RLE context of any
  batch of states as padded arrays (training, evaluation, ranker features).
- ``SidStore``: the in-process event-time store for scoring: ``advance(t)`` appends the
  segments that ended by t, ``contexts(authors)`` reads the last l entries. The tests check
  it returns exactly what ``AuthorSequences`` returns for the same state.

Example:
    >>> seqs = AuthorSequences.build(author, end_ts, sids, n_authors)
    >>> state = seqs.state_at(author_of_impression, ts)          # (B,) causal states
    >>> ctx = seqs.contexts(state, l=100)                         # Contexts, (B, l) arrays
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from fluidrec.errors import UsageError
from fluidrec.foresight.rle import rle_encode

_KEY = np.int64(1) << np.int64(42)  # author * _KEY + ts: one sort key (ts < 2^42 ms, year 2109)


@dataclasses.dataclass(frozen=True)
class Contexts:
    """Right-aligned padded contexts of B states (padding on the left, mask False there).

    values/runs/mask: (B, l) RLE entries; raw/raw_mask: (B, l) the last l raw Sids;
    length: (B,) raw segments seen so far by each state.
    """

    values: np.ndarray
    runs: np.ndarray
    mask: np.ndarray
    raw: np.ndarray
    raw_mask: np.ndarray
    length: np.ndarray


@dataclasses.dataclass(frozen=True)
class AuthorSequences:
    """Every author's raw and RLE Sid sequence (flat arrays, authors contiguous).

    Attributes:
        order: (G,) segment row of each raw position (sorted by author, end_ts, row).
        raw_start: (A + 1,) offsets of each author's raw positions.
        sids, end_ts, author: (G,) per raw position.
        values, runs: (E,) RLE entries, authors contiguous; entry_start: (A + 1,) offsets.
        entry_of: (G,) RLE entry holding each raw position; entry_first: (E,) its first raw position.
    """

    order: np.ndarray
    raw_start: np.ndarray
    sids: np.ndarray
    end_ts: np.ndarray
    author: np.ndarray
    values: np.ndarray
    runs: np.ndarray
    entry_start: np.ndarray
    entry_of: np.ndarray
    entry_first: np.ndarray

    @classmethod
    def build(cls, author: np.ndarray, end_ts: np.ndarray, sids: np.ndarray, n_authors: int) -> AuthorSequences:
        """From per-segment (author, end_ts, Sid) arrays in any order."""
        author = np.asarray(author, np.int64)
        end_ts = np.asarray(end_ts, np.int64)
        order = np.lexsort((np.arange(len(author)), end_ts, author))
        a, t, s = author[order], end_ts[order], np.asarray(sids, np.int64)[order]
        raw_start = np.searchsorted(a, np.arange(n_authors + 1)).astype(np.int64)
        # RLE per author: a new entry where the Sid changes or a new author begins.
        new_entry = np.r_[True, (s[1:] != s[:-1]) | (a[1:] != a[:-1])] if len(s) else np.zeros(0, bool)
        entry_first = np.flatnonzero(new_entry)
        entry_of = np.cumsum(new_entry) - 1
        runs = np.diff(np.r_[entry_first, len(s)]).astype(np.int64)
        entry_start = np.searchsorted(a[entry_first], np.arange(n_authors + 1)).astype(np.int64)
        return cls(order, raw_start, s, t, a, s[entry_first], runs, entry_start, entry_of.astype(np.int64), entry_first)

    @property
    def n_authors(self) -> int:
        return len(self.raw_start) - 1

    def state_at(self, author: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """(B,) global state ids: ``author_state0 + #segments of author with end_ts <= ts``.

        State ids run over ``state_offset(a) .. state_offset(a) + n_a`` (``n_states`` in all).
        """
        author = np.asarray(author, np.int64)
        if len(author) and (author.min() < 0 or author.max() >= self.n_authors):
            raise UsageError(f"author ids must be in [0, {self.n_authors})")
        keys = self.author * _KEY + self.end_ts
        pos = np.searchsorted(keys, author * _KEY + np.asarray(ts, np.int64), side="right")  # raw position p (exclusive)
        return pos + author  # author a's states are shifted by a: one extra (empty) state per author

    def state_offset(self, author: np.ndarray) -> np.ndarray:
        return self.raw_start[np.asarray(author, np.int64)] + np.asarray(author, np.int64)

    @property
    def n_states(self) -> int:
        return len(self.sids) + self.n_authors

    def split_state(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(author, p): the author of each state and its exclusive raw end position."""
        state = np.asarray(state, np.int64)
        author = np.searchsorted(self.raw_start + np.arange(self.n_authors + 1), state, side="right") - 1
        return author, state - author

    def contexts(self, state: np.ndarray, l: int) -> Contexts:
        """The last ``l`` RLE entries (the last one's run cut at the state) and last ``l`` raw Sids."""
        author, p = self.split_state(state)
        b = len(author)
        lo = self.raw_start[author]
        length = p - lo
        has = length > 0
        q = np.where(has, p - 1, 0)  # last visible raw position
        j = np.where(has, self.entry_of[q] if len(self.entry_of) else 0, 0)  # its RLE entry
        back = np.arange(l - 1, -1, -1)  # column c looks back l-1-c entries
        idx = j[:, None] - back[None, :]  # (B, l)
        mask = has[:, None] & (idx >= self.entry_start[author][:, None])
        safe = np.where(mask, idx, 0)
        values = np.where(mask, self.values[safe] if len(self.values) else 0, 0)
        runs = np.where(mask, self.runs[safe] if len(self.runs) else 0, 0)
        runs[:, -1] = np.where(has, q - self.entry_first[j] + 1 if len(self.entry_first) else 0, 0)  # partial last run
        ridx = p[:, None] - 1 - back[None, :]  # (B, l)
        raw_mask = ridx >= lo[:, None]
        raw = np.where(raw_mask, self.sids[np.where(raw_mask, ridx, 0)] if len(self.sids) else 0, 0)
        return Contexts(values.astype(np.int64), runs.astype(np.int64), mask, raw.astype(np.int64), raw_mask, length)

    def next_sid(self, state: np.ndarray) -> np.ndarray:
        """(B,) the Sid of the author's next segment after each state; -1 at the author's end."""
        author, p = self.split_state(state)
        ok = p < self.raw_start[author + 1]
        return np.where(ok, self.sids[np.where(ok, p, 0)], -1)


class SidStore:
    """Event-time store of every author's last ``l`` RLE entries (and last ``l`` raw Sids).

    Args:
        end_ts, author, sids: (G,) the segment log (any order; sorted here by end time).
        l: context entries kept per author.

    ``advance(t)`` ingests the segments that ended by ``t`` (in end-time order), O(new
    segments); ``contexts(authors)`` returns padded ``Contexts`` without touching the log.

    Example:
        >>> store = SidStore(end_ts, author, sids, l=100)
        >>> store.advance(t)
        >>> ctx = store.contexts(live_authors)
    """

    def __init__(self, end_ts: np.ndarray, author: np.ndarray, sids: np.ndarray, l: int) -> None:
        order = np.lexsort((np.arange(len(end_ts)), np.asarray(end_ts, np.int64), np.asarray(author, np.int64)))
        # Replay order: by end time, ties in the log view's (author, row) order.
        order = order[np.argsort(np.asarray(end_ts, np.int64)[order], kind="stable")]
        self._ts = np.asarray(end_ts, np.int64)[order]
        self._author = np.asarray(author, np.int64)[order]
        self._sids = np.asarray(sids, np.int64)[order]
        self.l = l
        self._ptr = 0
        self.t = np.iinfo(np.int64).min
        self._entries: dict[int, deque] = {}  # author -> deque of [sid, run]
        self._raw: dict[int, deque] = {}
        self._count: dict[int, int] = {}

    def append(self, author: int, sid: int) -> None:
        entries = self._entries.setdefault(author, deque(maxlen=self.l))
        if entries and entries[-1][0] == sid:
            entries[-1][1] += 1
        else:
            entries.append([sid, 1])
        self._raw.setdefault(author, deque(maxlen=self.l)).append(sid)
        self._count[author] = self._count.get(author, 0) + 1

    def advance(self, t: int) -> int:
        """Ingest every segment with ``end_ts <= t``; returns how many were new."""
        if t < self.t:
            raise UsageError(f"the store moves forward in event time only (at {self.t}, asked {t})")
        end = int(np.searchsorted(self._ts, t, side="right"))
        for i in range(self._ptr, end):
            self.append(int(self._author[i]), int(self._sids[i]))
        n, self._ptr, self.t = end - self._ptr, end, t
        return n

    def contexts(self, authors: np.ndarray) -> Contexts:
        l = self.l
        b = len(authors)
        values, runs = np.zeros((b, l), np.int64), np.zeros((b, l), np.int64)
        raw = np.zeros((b, l), np.int64)
        mask, raw_mask = np.zeros((b, l), bool), np.zeros((b, l), bool)
        length = np.zeros(b, np.int64)
        for i, a in enumerate(np.asarray(authors, np.int64).tolist()):
            entries = self._entries.get(a)
            if not entries:
                continue
            k = len(entries)
            values[i, l - k:] = [e[0] for e in entries]
            runs[i, l - k:] = [e[1] for e in entries]
            mask[i, l - k:] = True
            r = self._raw[a]
            raw[i, l - len(r):] = r
            raw_mask[i, l - len(r):] = True
            length[i] = self._count[a]
        return Contexts(values, runs, mask, raw, raw_mask, length)


def contexts_from_log(end_ts: np.ndarray, author: np.ndarray, sids: np.ndarray, authors: np.ndarray, t: int, l: int) -> Contexts:
    """Recompute each author's context at ``t`` straight from the segment log (the slow reference).

    What a scorer without a store does: filter the log per author, sort, RLE, cut to l.
    """
    b = len(authors)
    values, runs = np.zeros((b, l), np.int64), np.zeros((b, l), np.int64)
    raw = np.zeros((b, l), np.int64)
    mask, raw_mask = np.zeros((b, l), bool), np.zeros((b, l), bool)
    length = np.zeros(b, np.int64)
    for i, a in enumerate(np.asarray(authors, np.int64).tolist()):
        rows = np.flatnonzero((author == a) & (end_ts <= t))
        rows = rows[np.argsort(end_ts[rows], kind="stable")]
        seq = sids[rows]
        v, r = rle_encode(seq)
        k = min(len(v), l)
        if k:
            values[i, l - k:], runs[i, l - k:], mask[i, l - k:] = v[-k:], r[-k:], True
        kr = min(len(seq), l)
        if kr:
            raw[i, l - kr:], raw_mask[i, l - kr:] = seq[-kr:], True
        length[i] = len(seq)
    return Contexts(values, runs, mask, raw, raw_mask, length)
