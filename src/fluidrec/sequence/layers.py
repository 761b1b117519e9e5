"""Attention pieces shared by full attention and the compression transformer.

Shape letters: B batch, N tokens attended over, H heads, D width, E = D / H.

- :func:`masked_attention`: ``torch.nn.functional.scaled_dot_product_attention`` with a
  (B, 1, 1, N) key-padding mask. The broadcast mask keeps PyTorch on its fused (flash)
  kernel on CPU, whose memory is linear in N; a (B, 1, N, N) mask would materialise the
  N x N scores. A row with no valid key at all (an empty history) attends to every key
  instead of to none (which would be NaN); its outputs are never read (the readout masks
  them), they only have to stay finite.
- :func:`attention_reference`: the same thing as a plain loop over samples and heads with an
  explicit softmax; a test compares them.
- :class:`Block`: a pre-norm transformer layer (attention + feed-forward).
- :class:`TargetReadout`: the user vector as one target-aware attention over the encoded
  tokens plus a learned sentinel token (always valid), so an empty history reads the
  sentinel instead of dividing by zero.

Example:
    >>> block = Block(dim=32, heads=2, ffn_mult=2)
    >>> z = block(z, mask)                     # (B, N, D)
    >>> user = TargetReadout(32)(z, mask, target)   # (B, D)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _safe_keys(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) key mask where a row with no valid key gets all keys (finite, unread outputs)."""
    return mask | ~mask.any(dim=1, keepdim=True)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multi-head attention over valid keys: q, k, v (B, H, N, E), mask (B, N) -> (B, H, N, E)."""
    keys = _safe_keys(mask)[:, None, None, :]  # (B, 1, 1, N)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keys)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Plain loop of :func:`masked_attention` (softmax over valid keys, per sample and head)."""
    keys = _safe_keys(mask)
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        valid = keys[b]
        for h in range(q.shape[1]):
            scores = q[b, h] @ k[b, h, valid].T / math.sqrt(q.shape[-1])  # (N, n_valid)
            out[b, h] = torch.softmax(scores, dim=-1) @ v[b, h, valid]
    return out


class Block(nn.Module):
    """Pre-norm transformer layer: z + Attn(LN z), then + FFN(LN z), attending over valid tokens.

    Args:
        dim: D.
        heads: H.
        ffn_mult: feed-forward hidden width / D.
        attention: the attention function (``masked_attention`` or ``attention_reference``).
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int = 2, attention=masked_attention) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.attention = attention

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = z.shape
        qkv = self.qkv(self.norm1(z)).reshape(b, n, 3, self.heads, d // self.heads)  # (B, N, 3, H, E)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, E)
        att = self.attention(q, k, v, mask).transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        z = z + self.proj(att)
        return z + self.ffn(self.norm2(z))


class TargetReadout(nn.Module):
    """User vector = single-head attention of the target token over [sentinel; tokens] (valid ones).

    Keys are ``k(LayerNorm(token))``, values the tokens themselves.

    Args:
        dim: D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.sentinel = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, z: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        mem = torch.cat([self.sentinel.expand(b, 1, -1), z], dim=1)  # (B, 1+N, D)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=z.device), mask], dim=1)  # (B, 1+N)
        # keys are normalised, values are not: a folded token's magnitude (how much of a kind of
        # item was watched in its window) is information; a LayerNorm on the values cost the
        # compression model 5 points of AUC on the small feed (0.72 -> 0.78 without it)
        scores = (self.k(self.norm(mem)) @ self.q(target).unsqueeze(-1)).squeeze(-1) / math.sqrt(z.shape[-1])  # (B, 1+N)
        w = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)  # (B, 1+N); the sentinel keeps it finite
        return (w.unsqueeze(-1) * mem).sum(1)  # (B, D)
