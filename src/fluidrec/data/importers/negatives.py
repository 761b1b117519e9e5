"""Negative sampling for the importers: the fast sampler, its plain reference, and the step
that appends sampled negatives to an importer's impression columns.

A negative for a positive at time ``t`` by user ``u`` is an item live at ``t`` that the user
has no positive on anywhere in the log (docs/real_data.md).

Shape letters: P positives, K negatives per positive, I items.

Example:
    >>> neg = sample_negatives(ts, users, ids, start, end, users, items, 4, np.random.default_rng(0))  # (P, 4)
    >>> imp, n_added = add_sampled_negatives(imp, ids, start, end, ImportOptions(negatives=4))
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from fluidrec.data.importers.common import ImportOptions
from fluidrec.utils.lookup import sorted_lookup


def _pair_keys(users: np.ndarray, items: np.ndarray, item_vocab: np.ndarray, user_vocab: np.ndarray) -> np.ndarray:
    """Unique int64 keys for (user, item) pairs: dense user index * I + dense item index.

    Dense indices, not raw ids: a raw user id near 2^63 times I would wrap around int64 and
    make unrelated pairs collide (a live item wrongly excluded, or a positive sampled).
    """
    dense_item = np.searchsorted(item_vocab, items).astype(np.int64)
    dense_user = np.searchsorted(user_vocab, users).astype(np.int64)
    return dense_user * np.int64(len(item_vocab)) + dense_item


def sample_negatives(
    ts: np.ndarray,
    users: np.ndarray,
    item_ids: np.ndarray,
    item_start: np.ndarray,
    item_end: np.ndarray,
    pos_users: np.ndarray,
    pos_items: np.ndarray,
    k: int,
    rng: np.random.Generator,
    max_rounds: int = 32,
) -> np.ndarray:
    """Sample ``k`` negatives for each positive from the items live at its time.

    An item is a candidate for a positive at time ``t`` by user ``u`` when it is live
    (``item_start <= t <= item_end``: never before it exists, never after it ends),
    the user has no positive on it anywhere in the log (``(pos_users, pos_items)``:
    so never a positive of that user at that time, and no false negatives from the
    user's future either) and it is not already drawn for that row. Rows with fewer
    than ``k`` candidates get all of them; missing slots are ``-1``.

    Fast path: rejection sampling from the prefix of items sorted by start time,
    vectorised over rows; rows still unfilled after ``max_rounds`` fall back to the
    exact per-row enumeration of :func:`sample_negatives_reference`.

    Args:
        ts, users: (P,) time and user of each positive.
        item_ids, item_start, item_end: (I,) the items and their live intervals.
        pos_users, pos_items: all positive (user, item) pairs of the log.
        k: negatives per positive.
        rng: numpy Generator (seeded by the caller).

    Returns:
        (P, K) int64 item ids, ``-1`` where fewer than ``k`` candidates existed.

    Example:
        >>> neg = sample_negatives(ts, users, ids, start, end, users, items, 4, np.random.default_rng(0))
    """
    p = len(ts)
    out = np.full((p, k), -1, dtype=np.int64)
    if p == 0 or k == 0 or len(item_ids) == 0:
        return out
    vocab = np.sort(item_ids)
    user_vocab = np.unique(np.concatenate([users, pos_users]))
    pos_keys = np.unique(_pair_keys(pos_users, pos_items, vocab, user_vocab))
    order = np.argsort(item_start, kind="stable")
    s_ids, s_start, s_end = item_ids[order], item_start[order], item_end[order]
    prefix = np.searchsorted(s_start, ts, side="right")  # (P,) items started by t

    def allowed(rows: np.ndarray, cand_idx: np.ndarray, slot: int) -> np.ndarray:
        cand = s_ids[cand_idx]
        ok = s_end[cand_idx] >= ts[rows]
        keys = _pair_keys(users[rows], cand, vocab, user_vocab)
        _, is_positive = sorted_lookup(pos_keys, keys)
        ok &= ~is_positive
        if slot:
            ok &= ~(out[rows, :slot] == cand[:, None]).any(axis=1)
        return ok

    exhausted = np.zeros(p, dtype=bool)
    for slot in range(k):
        need = np.flatnonzero((prefix > 0) & ~exhausted)
        for _ in range(max_rounds):
            if not len(need):
                break
            idx = (rng.random(len(need)) * prefix[need]).astype(np.int64)  # uniform over the started prefix
            ok = allowed(need, idx, slot)
            out[need[ok], slot] = s_ids[idx[ok]]
            need = need[~ok]
        for row in need:  # rare: few live candidates left; enumerate exactly
            cand_idx = np.arange(prefix[row])
            cand_idx = cand_idx[allowed(np.full(len(cand_idx), row), cand_idx, slot)]
            if len(cand_idx):
                out[row, slot] = s_ids[cand_idx[rng.integers(len(cand_idx))]]
            else:
                exhausted[row] = True
    return out


def sample_negatives_reference(
    ts: np.ndarray,
    users: np.ndarray,
    item_ids: np.ndarray,
    item_start: np.ndarray,
    item_end: np.ndarray,
    pos_users: np.ndarray,
    pos_items: np.ndarray,
    k: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Plain per-row reference of :func:`sample_negatives` (same contract, slow)."""
    positives: dict[int, set[int]] = collections.defaultdict(set)
    for u, i in zip(pos_users.tolist(), pos_items.tolist()):
        positives[u].add(i)
    out = np.full((len(ts), k), -1, dtype=np.int64)
    for row, (t, u) in enumerate(zip(ts.tolist(), users.tolist())):
        cands = [int(i) for i, s, e in zip(item_ids, item_start, item_end) if s <= t <= e and int(i) not in positives[u]]
        take = rng.permutation(len(cands))[:k]
        out[row, : len(take)] = [cands[j] for j in take]
    return out




def add_sampled_negatives(
    imp: dict[str, np.ndarray],
    item_ids: np.ndarray,
    item_start: np.ndarray,
    item_end: np.ndarray,
    options: ImportOptions,
    slice_of: Any = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Append ``options.negatives`` sampled negatives per positive (click == 1) to ``imp``.

    ``imp`` holds impression columns (ts, user_id, room_id, slice_id, request_id,
    labels). Sampled rows copy the positive's ts, user and request_id, carry all
    labels 0 and ``watch_s`` 0. ``slice_of(room_ids, ts)`` gives the slice on air
    (default: one-slice rooms, slice_id == room_id). Returns (columns, rows added).
    """
    k = options.negatives
    if k == 0:
        return imp, 0
    pos = np.flatnonzero(imp["click"] == 1)
    rng = np.random.default_rng(options.seed)
    neg = sample_negatives(
        imp["ts"][pos], imp["user_id"][pos], item_ids, item_start, item_end, imp["user_id"][pos], imp["room_id"][pos], k, rng
    )  # (P, K)
    rows, _ = np.nonzero(neg >= 0)
    rooms = neg[neg >= 0]
    src = pos[rows]
    n = len(src)
    add: dict[str, np.ndarray] = {}
    for name, col in imp.items():
        if name in ("ts", "user_id", "request_id"):
            add[name] = col[src]
        elif name == "room_id":
            add[name] = rooms
        elif name == "slice_id":
            add[name] = rooms if slice_of is None else slice_of(rooms, imp["ts"][src])
        else:
            add[name] = np.zeros(n, dtype=col.dtype)
    merged = {name: np.concatenate([imp[name], add[name]]) for name in imp}
    return merged, n
