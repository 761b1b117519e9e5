"""The event log every ``fluidrec.sequence`` model reads, and the causal history batches cut from it.

Shape letters: E events, B batch (targets), S history length, L code levels.

An :class:`EventLog` holds every user's feed events sorted by (user, ts): one row per
video impression, with the dense item index, the item's semantic code path, the
watch ratio (a history feature) and the 0/1 engagement label (the ranking target).
:func:`history_batch` cuts, for each target event, the ``S`` most recent events of the
same user strictly before the target's ts, right-aligned (most recent at ``S - 1``).

Causality rule: a target's history holds only events of the same user with
``ts < target ts`` (events in the same millisecond as the target are *not* history:
they were served in the same request and their outcome is unknown when scoring it).

Example:
    >>> log = load_event_log(Path("data/world"), Path("runs/codes"))   # fluidrec.sequence.data
    >>> idx = split_indices(log, "train")[:256]
    >>> batch = history_batch(log, idx, seq_len=512)
    >>> batch.hist_codes.shape          # (B, S, L)
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from fluidrec.errors import DataError

SPLITS = ("train", "test")
UNKNOWN_CODE = -1
MS_PER_S = 1000.0

_DTYPES = {
    "user": np.int64,
    "item": np.int64,
    "ts": np.int64,
    "watch_ratio": np.float32,
    "label": np.int8,
    "codes": np.int64,
    "is_test": np.bool_,
    "cold": np.bool_,
    "item_raw": np.int64,
}


def _fail(field: str, reason: str, row: int | None = None, value: object = None) -> None:
    raise DataError(reason, table="EventLog", column=field, row=row, value=value)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: field-wise == on arrays is ambiguous; identity instead
class EventLog:
    """Every user's feed events in (user, ts) order: the one layout fluidrec.sequence reads.

    Attributes:
        user: (E,) int64 dense user index 0..n_users-1, sorted ascending.
        item: (E,) int64 dense item index 0..n_items-1 (re-indexed; raw ids in item_raw).
        ts: (E,) int64 unix ms, non-decreasing within a user.
        watch_ratio: (E,) float32 >= 0 (watched seconds / duration, capped).
        label: (E,) int8 0/1: the engagement the ranking task predicts (docs/world.md, "Video feed").
        codes: (E, L) int64 the item's semantic code path (c1..cL), -1 where unknown.
        is_test: (E,) bool: event in the test split (last day by default).
        cold: (E,) bool: item never appears in a training event.
        item_raw: (n_items,) int64 raw item id of each dense index.
        codebook_size: N of the codes (codes are in [0, N) or -1).
        n_users: number of users.
        n_items: number of items.
    """

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    watch_ratio: np.ndarray
    label: np.ndarray
    codes: np.ndarray
    is_test: np.ndarray
    cold: np.ndarray
    item_raw: np.ndarray
    codebook_size: int
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        for name, dtype in _DTYPES.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray):
                _fail(name, f"must be a numpy array, got {type(arr).__name__}")
            if arr.dtype != dtype:
                _fail(name, f"must have dtype {np.dtype(dtype).name}, got {arr.dtype.name}")
        e = self.user.shape[0]
        for name in ("user", "item", "ts", "watch_ratio", "label", "is_test", "cold"):
            if getattr(self, name).shape != (e,):
                _fail(name, f"must have shape ({e},) like user, got {getattr(self, name).shape}")
        if self.codes.ndim != 2 or self.codes.shape[0] != e or self.codes.shape[1] < 1:
            _fail("codes", f"must have shape ({e}, L) with L >= 1, got {self.codes.shape}")
        if self.item_raw.shape != (self.n_items,):
            _fail("item_raw", f"must have shape ({self.n_items},) (n_items), got {self.item_raw.shape}")
        for name in ("codebook_size", "n_users", "n_items"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                _fail(name, "must be an int >= 1", value=v)
        self._check_values()

    def _check_values(self) -> None:
        def bad(name: str, mask: np.ndarray, reason: str) -> None:
            if mask.any():
                i = _first_bad(mask)
                _fail(name, reason, row=i, value=getattr(self, name)[i].tolist())

        bad("user", (self.user < 0) | (self.user >= self.n_users), f"must be in [0, {self.n_users})")
        bad("user", np.r_[False, self.user[1:] < self.user[:-1]], "must be sorted ascending")
        bad("item", (self.item < 0) | (self.item >= self.n_items), f"must be in [0, {self.n_items})")
        same = np.r_[False, self.user[1:] == self.user[:-1]]
        bad("ts", same & np.r_[False, self.ts[1:] < self.ts[:-1]], "must be non-decreasing within a user")
        bad("watch_ratio", ~(self.watch_ratio >= 0), "must be finite and >= 0")
        bad("label", (self.label != 0) & (self.label != 1), "must be 0 or 1")
        code_bad = ((self.codes < 0) & (self.codes != UNKNOWN_CODE)) | (self.codes >= self.codebook_size)
        bad("codes", code_bad.any(axis=1), f"must be in [0, {self.codebook_size}) or {UNKNOWN_CODE}")
        bad("cold", self.cold & ~self.is_test, "a training event cannot be cold")

    @property
    def levels(self) -> int:
        """L, the number of code levels."""
        return int(self.codes.shape[1])

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @functools.cached_property
    def user_start(self) -> np.ndarray:
        """(E,) index of the first event of each event's user (cached; cached_property works on a frozen dataclass)."""
        return np.searchsorted(self.user, self.user, side="left").astype(np.int64)

    @functools.cached_property
    def run_start(self) -> np.ndarray:
        """(E,) index of the first event with the same (user, ts): the exclusive end of each event's history."""
        e = len(self)
        boundary = np.ones(e, dtype=bool)
        if e > 1:
            boundary[1:] = (self.user[1:] != self.user[:-1]) | (self.ts[1:] != self.ts[:-1])
        return np.maximum.accumulate(np.where(boundary, np.arange(e, dtype=np.int64), 0))


@dataclasses.dataclass
class HistoryBatch:
    """Targets and the S events of the same user strictly before each target's ts (right-aligned: most recent at S-1).

    Attributes:
        user: (B,) long dense user index.
        target_item: (B,) long dense item index of the target.
        target_codes: (B, L) long code path of the target (-1 unknown).
        label: (B,) float32 engagement label of the target.
        cold: (B,) bool target item never seen in training.
        hist_item: (B, S) long, 0 where padded.
        hist_codes: (B, S, L) long, -1 where padded or unknown.
        hist_watch: (B, S) float32 watch ratio, 0 where padded.
        hist_gap: (B, S) float32 log1p(seconds from the event's ts to the target's ts), 0 where padded.
        hist_ts: (B, S) long unix ms, 0 where padded (for time-span folding).
        hist_mask: (B, S) bool, True = a real event.
    """

    user: torch.Tensor
    target_item: torch.Tensor
    target_codes: torch.Tensor
    label: torch.Tensor
    cold: torch.Tensor
    hist_item: torch.Tensor
    hist_codes: torch.Tensor
    hist_watch: torch.Tensor
    hist_gap: torch.Tensor
    hist_ts: torch.Tensor
    hist_mask: torch.Tensor

    def to(self, device: torch.device | str) -> HistoryBatch:
        """A copy with every tensor on ``device``."""
        return HistoryBatch(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def history_slice(self, lo: int, hi: int) -> HistoryBatch:
        """The same targets with history positions ``lo:hi`` only (views, no copy): (B, hi - lo) columns."""
        cut = {f.name: getattr(self, f.name)[:, lo:hi] for f in dataclasses.fields(self) if f.name.startswith("hist_")}
        return dataclasses.replace(self, **cut)


def _check_request(log: EventLog, target_idx: np.ndarray, seq_len: int) -> np.ndarray:
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise DataError("seq_len must be an int >= 1", table="history_batch", column="seq_len", value=seq_len)
    idx = np.asarray(target_idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise DataError(
            f"target_idx must be a 1-d integer array, got shape {idx.shape} dtype {idx.dtype}", table="history_batch", column="target_idx"
        )
    idx = idx.astype(np.int64)
    out = (idx < 0) | (idx >= len(log))
    if out.any():
        i = _first_bad(out)
        raise DataError(f"must be in [0, {len(log)})", table="history_batch", column="target_idx", row=i, value=int(idx[i]))
    return idx


def _targets(log: EventLog, idx: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "user": torch.from_numpy(log.user[idx]),
        "target_item": torch.from_numpy(log.item[idx]),
        "target_codes": torch.from_numpy(log.codes[idx]),  # (B, L)
        "label": torch.from_numpy(log.label[idx].astype(np.float32)),
        "cold": torch.from_numpy(log.cold[idx]),
    }


def history_batch(log: EventLog, target_idx: np.ndarray, seq_len: int) -> HistoryBatch:
    """The causal, right-aligned histories of ``target_idx`` (vectorised: one gather per field).

    Because events are sorted by (user, ts), a target's history is the contiguous run
    ``[max(user_start, end - S), end)`` where ``end`` is the first event of the target's
    (user, ts) run; positions before the user's first event are padding.

    Args:
        log: the event log.
        target_idx: (B,) event indices of the targets.
        seq_len: S, the history length.

    Example:
        >>> b = history_batch(log, np.arange(8), seq_len=4)
        >>> b.hist_mask.sum(1)              # (B,) real events per history
    """
    idx = _check_request(log, target_idx, seq_len)
    s = int(seq_len)
    end = log.run_start[idx]  # (B,) exclusive end of the history
    lo = log.user_start[idx]  # (B,) first event of the user
    pos = end[:, None] - s + np.arange(s, dtype=np.int64)[None, :]  # (B, S) event index at each slot
    mask = pos >= lo[:, None]  # (B, S)
    safe = np.where(mask, pos, 0)  # (B, S) any valid index where padded; zeroed below
    gap_s = (log.ts[idx][:, None] - log.ts[safe]).astype(np.float64) / MS_PER_S  # (B, S)
    codes = np.where(mask[:, :, None], log.codes[safe], UNKNOWN_CODE)  # (B, S, L)
    return HistoryBatch(
        **_targets(log, idx),
        hist_item=torch.from_numpy(np.where(mask, log.item[safe], 0)),
        hist_codes=torch.from_numpy(codes),
        hist_watch=torch.from_numpy(np.where(mask, log.watch_ratio[safe], np.float32(0))),
        hist_gap=torch.from_numpy(np.where(mask, np.log1p(np.maximum(gap_s, 0.0)), 0.0).astype(np.float32)),
        hist_ts=torch.from_numpy(np.where(mask, log.ts[safe], 0)),
        hist_mask=torch.from_numpy(mask),
    )


def history_batch_reference(log: EventLog, target_idx: np.ndarray, seq_len: int) -> HistoryBatch:
    """Plain-loop reference of :func:`history_batch`: scan the user's events, keep ts < target ts, take the last S."""
    idx = _check_request(log, target_idx, seq_len)
    b, s, lv = idx.shape[0], int(seq_len), log.levels
    hist_item = np.zeros((b, s), dtype=np.int64)
    hist_codes = np.full((b, s, lv), UNKNOWN_CODE, dtype=np.int64)
    hist_watch = np.zeros((b, s), dtype=np.float32)
    hist_gap = np.zeros((b, s), dtype=np.float32)
    hist_ts = np.zeros((b, s), dtype=np.int64)
    hist_mask = np.zeros((b, s), dtype=bool)
    for r, t in enumerate(idx):
        events = [j for j in range(len(log)) if log.user[j] == log.user[t] and log.ts[j] < log.ts[t]]
        events = events[-s:]
        for k, j in enumerate(events):
            slot = s - len(events) + k
            hist_item[r, slot] = log.item[j]
            hist_codes[r, slot] = log.codes[j]
            hist_watch[r, slot] = log.watch_ratio[j]
            hist_gap[r, slot] = np.float32(np.log1p(float(log.ts[t] - log.ts[j]) / MS_PER_S))
            hist_ts[r, slot] = log.ts[j]
            hist_mask[r, slot] = True
    arrays = {"hist_item": hist_item, "hist_codes": hist_codes, "hist_watch": hist_watch}
    arrays |= {"hist_gap": hist_gap, "hist_ts": hist_ts, "hist_mask": hist_mask}
    return HistoryBatch(**_targets(log, idx), **{k: torch.from_numpy(v) for k, v in arrays.items()})


def split_indices(log: EventLog, split: str) -> np.ndarray:
    """(n,) int64 indices of the target events of ``split`` ("train" | "test"), in log order.

    Example:
        >>> test = split_indices(log, "test"); log.is_test[test].all()
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}", table="split_indices", column="split", value=split)
    want = split == "test"
    return np.flatnonzero(log.is_test == want).astype(np.int64)
