"""The batch of one rank request, built directly in the scorer's serving layout.

The plain path is ``serving_layout(ScoringContext.make_batch(...))``: ``make_batch`` copies
the user's history onto every candidate row, (B, K, L), and ``serving_layout`` then compares
all B copies to find that they are one history and keeps one. For one user's request that
is known in advance, so ``request_batch`` writes the (1, K, L) history and ``hist_group``
at once, takes the rooms' start and author from the request's ``RoomTable`` instead of
searching a context table, and looks the user up once instead of B times (the figures:
``python benchmarks/serve.py --profile``, docs/serving.md). ``tests/serve/test_features.py`` checks that every tensor equals the
plain path's (``request_batch_reference``), known and unknown rooms and users, with and
without history.

Shapes: B candidates, K history length, K' clicks given, L levels, P profile columns.

Example:
    >>> batch = request_batch(ranker, ctx, user_id=5, room_ids=rooms, table=tab, slice_codes=sc, room_codes=rc, t_ms=t, history=h)
    >>> scorer(batch)["click"]                                              # (B,)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

# the one id hash (the one ScoringContext.make_batch and Features apply to user and author ids)
from fluidrec.codes.ngram import hash_ids
from fluidrec.ranker.batching import Batch, age_bucket
from fluidrec.ranker.inference import serving_layout
from fluidrec.serve.store import RoomTable


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def request_batch(model, ctx, user_id: int, room_ids: np.ndarray, table: RoomTable, slice_codes: np.ndarray,
                  room_codes: np.ndarray, t_ms: int, history: np.ndarray | None) -> Batch:  # fmt: skip
    """One user's B candidates as the scorer reads them (see the module docstring).

    Args:
        model: the ranker (its tokenizer sizes and room vocabulary).
        ctx: the ``ScoringContext`` with the user profiles (its room table is not read).
        room_ids: (B,) distinct candidates; ``table`` their state from the store, same order.
        slice_codes, room_codes: (B, L) codes as the ranker reads them.
        history: (K', L) the user's clicks, newest first (None or empty: no history).
    """
    b = len(room_ids)
    tc = model.spec.tokenizer
    k, levels = tc.history_len, tc.levels
    upos, uknown = ctx._lookup(np.asarray([user_id], np.int64), ctx.user_ids)  # one lookup, not B
    profile = ctx.profiles[upos[0]] if uknown[0] and len(ctx.profiles) else np.zeros(ctx.profiles.shape[1], np.int64)
    start = np.where(table.known, table.start_ts, t_ms)  # a room the store never saw starts now, as offline
    author = np.where(table.known, table.author_id, -1)
    age = ((t_ms - start) / 60_000.0).astype(np.float32)
    hist = np.zeros((1, k, levels), np.int64)  # (1, K, L): the one history every row reads
    mask = np.zeros((1, k), bool)
    if history is not None and len(history):
        m = min(k, len(history))
        hist[0, :m], mask[0, :m] = history[:m], True
    user = hash_ids(np.asarray([user_id], np.int64), ctx.user_buckets)
    return Batch(
        user=_t(np.repeat(user, b)),
        profile=_t(np.repeat(profile.astype(np.int64)[None], b, axis=0)),  # (B, P)
        hour=_t(np.full(b, (t_ms // 3_600_000) % 24, np.int64)),
        position=_t(np.zeros(b, np.int64)),
        age_bucket=_t(age_bucket(age)),
        age_min=_t(age),
        exposure=_t(np.zeros(b, np.float32)),
        author=_t(hash_ids(author, ctx.author_buckets)),
        item=_t(model.room_index(room_ids)),
        slice_codes=_t(np.asarray(slice_codes, np.int64).reshape(b, levels)),  # (B, L)
        room_codes=_t(np.asarray(room_codes, np.int64).reshape(b, levels)),  # (B, L)
        hist_codes=_t(hist if b >= 2 else np.repeat(hist, b, axis=0)),
        hist_mask=_t(mask if b >= 2 else np.repeat(mask, b, axis=0)),
        hist_group=torch.zeros(b, dtype=torch.int64) if b >= 2 else None,  # serving_layout shares from 2 rows on
    )


def request_batch_reference(model, ctx, user_id: int, room_ids: np.ndarray, table: RoomTable, slice_codes: np.ndarray,
                            room_codes: np.ndarray, t_ms: int, history: np.ndarray | None) -> Batch:  # fmt: skip
    """The plain path ``request_batch`` must equal: the store's rooms as the context's room table,
    ``ScoringContext.make_batch``, then the scorer's ``serving_layout``."""
    rooms = np.asarray(room_ids, np.int64)
    by_id = np.argsort(rooms[table.known])  # ScoringContext looks rooms up in a sorted table
    ctx = dataclasses.replace(ctx, room_ids=rooms[table.known][by_id], room_start=table.start_ts[table.known][by_id],
                              room_author=table.author_id[table.known][by_id])  # fmt: skip
    hist = history if history is not None and len(history) else None
    return serving_layout(ctx.make_batch(model, user_id, rooms, slice_codes, room_codes, t_ms, history_codes=hist))
