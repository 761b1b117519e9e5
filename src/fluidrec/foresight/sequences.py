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
  segments that ended by t, ``contexts(authors)`` reads the last l entries.
- ``TimeOrderedLog``: the baseline a scorer without a store has, recomputing the live
  authors' contexts from the end-time-ordered segment log at every tick.

The tests check all three return exactly the same context for the same state.

Example:
    >>> seqs = AuthorSequences.build(author, end_ts, sids, n_authors)
    >>> state = seqs.state_at(author_of_impression, ts)          # (B,) causal states
    >>> ctx = seqs.contexts(state, l=100)                         # Contexts, (B, l) arrays
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fluidrec.errors import UsageError

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
    """Event-time store of every author's last ``l`` RLE entries and last ``l`` raw Sids.

    Args:
        end_ts, author, sids: (G,) the segment log (any order; replayed in end-time order).
        l: context entries kept per author.

    State is a few (A, l) arrays, right-aligned like ``Contexts`` (an author's latest entry
    in the last column), so ``contexts(authors)`` is one gather with no per-author Python
    loop. ``advance(t)`` ingests the segments that ended by ``t``: O(new segments x l),
    never the log. ``count[a]`` (segments ingested for author a) changes exactly when a's
    context does, including a segment that only lengthens the last run: ``LiveScorer``
    reads it to forward only the authors whose context changed.

    Example:
        >>> store = SidStore(end_ts, author, sids, l=100)
        >>> store.advance(t)
        >>> ctx = store.contexts(live_authors)
    """

    def __init__(self, end_ts: np.ndarray, author: np.ndarray, sids: np.ndarray, l: int) -> None:
        end_ts, author = np.asarray(end_ts, np.int64), np.asarray(author, np.int64)
        order = np.lexsort((np.arange(len(end_ts)), end_ts, author))
        # Replay order: by end time, ties in the log view's (author, row) order.
        order = order[np.argsort(end_ts[order], kind="stable")]
        self._ts, self._author, self._sids = end_ts[order], author[order], np.asarray(sids, np.int64)[order]
        self.l = l
        n_authors = int(author.max(initial=-1)) + 1
        self._values = np.zeros((n_authors, l), np.int64)  # (A, l)
        self._runs = np.zeros((n_authors, l), np.int64)  # (A, l)
        self._raw = np.zeros((n_authors, l), np.int64)  # (A, l)
        self._entries = np.zeros(n_authors, np.int64)  # RLE entries held (<= l)
        self.count = np.zeros(n_authors, np.int64)  # raw segments ingested so far
        self._ptr = 0
        self.t = np.iinfo(np.int64).min

    @property
    def n_authors(self) -> int:
        return len(self.count)

    def _append(self, authors: np.ndarray, sids: np.ndarray) -> None:
        """Append one segment to each of ``authors`` (distinct)."""
        same = (self._entries[authors] > 0) & (self._values[authors, -1] == sids)
        self._runs[authors[same], -1] += 1  # a repeat lengthens the last run
        new, s = authors[~same], sids[~same]
        for table, last in ((self._values, s), (self._runs, 1)):
            table[new, :-1] = table[new, 1:]  # (n, l - 1): shift out the oldest entry
            table[new, -1] = last
        self._entries[new] = np.minimum(self._entries[new] + 1, self.l)
        self._raw[authors, :-1] = self._raw[authors, 1:]
        self._raw[authors, -1] = sids
        self.count[authors] += 1

    def advance(self, t: int) -> int:
        """Ingest every segment with ``end_ts <= t``; returns how many were new."""
        if t < self.t:
            raise UsageError(f"the store moves forward in event time only (at {self.t}, asked {t})")
        end = int(np.searchsorted(self._ts, t, side="right"))
        a, s = self._author[self._ptr:end], self._sids[self._ptr:end]
        if len(a) and len(np.unique(a)) == len(a):  # the usual tick: at most one new segment per author
            self._append(a, s)
        elif len(a):
            # Round r appends every author's r-th new segment: authors are distinct in a round,
            # and each author's segments keep their replay order across rounds.
            by_author = np.argsort(a, kind="stable")
            first = np.r_[True, a[by_author][1:] != a[by_author][:-1]]
            rank = np.empty(len(a), np.int64)
            rank[by_author] = np.arange(len(a)) - np.maximum.accumulate(np.where(first, np.arange(len(a)), 0))
            by_round = np.argsort(rank, kind="stable")
            bounds = np.r_[0, np.cumsum(np.bincount(rank))]
            for r in range(len(bounds) - 1):
                rows = by_round[bounds[r]:bounds[r + 1]]
                self._append(a[rows], s[rows])
        n, self._ptr, self.t = end - self._ptr, end, t
        return n

    def contexts(self, authors: np.ndarray) -> Contexts:
        """Padded contexts of ``authors`` now (one gather; an author with no segment yet is empty)."""
        authors = _check_authors(authors, self.n_authors)
        cols = np.arange(self.l)[None, :]  # (1, l)
        mask = cols >= (self.l - self._entries[authors])[:, None]  # (B, l)
        raw_mask = cols >= (self.l - np.minimum(self.count[authors], self.l))[:, None]  # (B, l)
        return Contexts(self._values[authors], self._runs[authors], mask, self._raw[authors], raw_mask, self.count[authors].copy())


def _check_authors(authors: np.ndarray, n_authors: int) -> np.ndarray:
    authors = np.asarray(authors, np.int64)
    if len(authors) and (authors.min() < 0 or authors.max() >= n_authors):
        raise UsageError(f"author ids must be in [0, {n_authors}), got {int(authors.min())}..{int(authors.max())}")
    return authors


@dataclasses.dataclass(frozen=True)
class TimeOrderedLog:
    """The segment log as an append-only stream holds it: in end-time order (the baseline).

    ``contexts(authors, t, l)`` is what a scorer without a store does at every tick:
    recompute each author's sequence from the log, vectorised over all asked authors in
    one pass over the segments that ended by ``t`` (select their rows, group by author,
    RLE, keep the last l). It returns exactly what ``SidStore`` and ``AuthorSequences``
    return (tested); ``benchmarks/foresight.py`` times it against the store.

    Example:
        >>> log = TimeOrderedLog.build(end_ts, author, sids)
        >>> ctx = log.contexts(live_authors, t, l=100)
    """

    end_ts: np.ndarray
    author: np.ndarray
    sids: np.ndarray
    n_authors: int

    @classmethod
    def build(cls, end_ts: np.ndarray, author: np.ndarray, sids: np.ndarray) -> TimeOrderedLog:
        """From per-segment arrays in any order (sorted once here by end time, ties by row)."""
        end_ts, author = np.asarray(end_ts, np.int64), np.asarray(author, np.int64)
        order = np.argsort(end_ts, kind="stable")
        return cls(end_ts[order], author[order], np.asarray(sids, np.int64)[order], int(author.max(initial=-1)) + 1)

    def contexts(self, authors: np.ndarray, t: int, l: int) -> Contexts:
        """Padded contexts of ``authors`` at ``t`` (repeats allowed), recomputed from the log."""
        uniq, inv = np.unique(_check_authors(authors, self.n_authors), return_inverse=True)
        u = len(uniq)
        n = int(np.searchsorted(self.end_ts, t, side="right"))  # the log as it stood at t
        slot = np.full(self.n_authors, -1, np.int64)
        slot[uniq] = np.arange(u)
        rows = np.flatnonzero(slot[self.author[:n]] >= 0)
        b = slot[self.author[rows]]
        by = np.argsort(b, kind="stable")  # grouped by author, each in end-time order
        b, s = b[by], self.sids[rows[by]]
        values, runs, raw = (np.zeros((u, l), np.int64) for _ in range(3))
        mask, raw_mask = np.zeros((u, l), bool), np.zeros((u, l), bool)
        raw_end = np.searchsorted(b, np.arange(u), side="right")
        back = raw_end[b] - 1 - np.arange(len(b))  # 0 = the author's latest segment
        k = back < l
        raw[b[k], l - 1 - back[k]], raw_mask[b[k], l - 1 - back[k]] = s[k], True
        first = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]) | (b[1:] != b[:-1])]) if len(s) else np.zeros(0, np.int64)
        eb = b[first]
        back = np.searchsorted(eb, np.arange(u), side="right")[eb] - 1 - np.arange(len(eb))
        k = back < l
        values[eb[k], l - 1 - back[k]] = s[first][k]
        runs[eb[k], l - 1 - back[k]] = np.diff(np.r_[first, len(s)])[k]
        mask[eb[k], l - 1 - back[k]] = True
        length = np.bincount(b, minlength=u).astype(np.int64)
        return Contexts(values[inv], runs[inv], mask[inv], raw[inv], raw_mask[inv], length[inv])
