"""Query-to-item InfoNCE with in-batch negatives and false-negative masking (FLUID 3.1.3).

Shape letters: B batch (pairs), D embedding width.

Pair ``i`` is (query i, item i); every other item in the batch is a negative for query i.
Two queries that mean the same thing ("piano cover" and "piano covers") make each other's
items false negatives, so a negative pair (i, j) is dropped when the two *query* embeddings
have cosine similarity above a threshold (or when both rows hold the same item). Dropped
pairs get logit -inf, i.e. they leave the softmax's denominator entirely.

``info_nce_reference`` is the plain per-row computation the fast path is tested against.

Example:
    >>> keep = false_negative_mask(q, threshold=0.9, item_ids=ids)   # (B, B) bool
    >>> loss = info_nce(q, z, temperature=0.05, keep=keep, symmetric=True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def false_negative_mask(q: torch.Tensor, threshold: float, item_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Which (query i, item j) pairs take part in the loss: (B, B) bool, True = keep.

    Args:
        q: (B, D) L2-normalised query embeddings (detached: the mask is not differentiated).
        threshold: drop negatives whose query cosine is above this (>= 1 keeps all).
        item_ids: (B,) optional item ids; rows holding the same item are never negatives.
    """
    with torch.no_grad():
        sim = q @ q.T  # (B, B) query-query cosine
        drop = sim > threshold
        if item_ids is not None:
            drop |= item_ids[:, None] == item_ids[None, :]
        eye = torch.eye(q.shape[0], dtype=torch.bool, device=q.device)
        return ~drop | eye  # the positive (diagonal) always stays


def info_nce(
    q: torch.Tensor,
    z: torch.Tensor,
    temperature: float,
    *,
    keep: torch.Tensor | None = None,
    symmetric: bool = False,
) -> torch.Tensor:
    """Mean InfoNCE of (B, D) queries against (B, D) items, positives on the diagonal.

    Args:
        q, z: L2-normalised (B, D) query and item embeddings.
        temperature: logits = cosine / temperature.
        keep: (B, B) bool mask from ``false_negative_mask`` (None keeps everything).
        symmetric: average Q2I with the I2Q term (items as anchors, queries as candidates).
    """
    logits = (q @ z.T) / temperature  # (B, B): row = query, column = item
    if keep is not None:
        logits = logits.masked_fill(~keep, float("-inf"))
    target = torch.arange(q.shape[0], device=q.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        # The mask is symmetric in the query-similarity part; its transpose keeps item-side duplicates out too.
        loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
    return loss


def info_nce_reference(q, z, temperature: float, keep=None, symmetric: bool = False) -> float:
    """Plain-python InfoNCE (loops, math.exp) for testing ``info_nce``."""
    b = len(q)
    dot = [[float(sum(a * c for a, c in zip(q[i], z[j]))) / temperature for j in range(b)] for i in range(b)]

    def kept(i: int, j: int) -> bool:
        return True if keep is None else bool(keep[i][j])

    def term(row_logits: list[float], row_keep: list[bool], pos: int) -> float:
        denom = sum(math.exp(v) for v, k in zip(row_logits, row_keep) if k)
        return -(row_logits[pos] - math.log(denom))

    q2i = sum(term(dot[i], [kept(i, j) for j in range(b)], i) for i in range(b)) / b
    if not symmetric:
        return q2i
    i2q = sum(term([dot[i][j] for i in range(b)], [kept(i, j) for i in range(b)], j) for j in range(b)) / b
    return 0.5 * (q2i + i2q)
