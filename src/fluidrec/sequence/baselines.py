"""Baseline history encoders with the same tokens, target and head as the compression model.

Shape letters: B batch, S history events, D width.

Every encoder maps (tokens (B, S, D), mask (B, S), target (B, D)) to a user vector (B, D):

- :class:`MeanPoolEncoder`: masked mean of the event tokens (0 for an empty history).
- :class:`DINEncoder`: DIN's activation unit (Zhou et al. 2018): an MLP over
  [h, t, h - t, h * t] scores each event against the target; the weights are normalised
  with a masked softmax (DIN leaves them unnormalised; at S in the thousands the raw sum
  grows with S and destabilises training, so we normalise, as DIEN and most re-implementations do).
- :class:`FullAttentionEncoder`: L pre-norm self-attention layers over all S event tokens
  (torch SDPA), then the target readout: the quadratic baseline.

Example:
    >>> enc = DINEncoder(dim=32)
    >>> user = enc(tokens, mask, target)     # (B, D)
"""

from __future__ import annotations

import torch
from torch import nn

from fluidrec.sequence.layers import Block, TargetReadout


class MeanPoolEncoder(nn.Module):
    """Masked mean of the history tokens, then a LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(tokens.dtype)  # (B, S, 1)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1)  # (B, D)
        return self.norm(pooled)


class DINEncoder(nn.Module):
    """DIN-style target attention: activation-unit MLP scores, masked softmax, weighted sum.

    Args:
        dim: D.
        hidden: hidden width of the activation unit.
    """

    def __init__(self, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.unit = nn.Sequential(nn.Linear(4 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = target.unsqueeze(1).expand_as(tokens)  # (B, S, D)
        scores = self.unit(torch.cat([tokens, t, tokens - t, tokens * t], dim=-1)).squeeze(-1)  # (B, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        top = scores.max(dim=1, keepdim=True).values.clamp(min=-1e4)  # (B, 1); finite for an empty row
        w = torch.exp(scores - top) * mask  # (B, S), exactly 0 on pads
        w = w / w.sum(1, keepdim=True).clamp(min=1e-12)
        return self.norm((w.unsqueeze(-1) * tokens).sum(1))  # (B, D)


class FullAttentionEncoder(nn.Module):
    """Self-attention over the whole uncompressed history (O(S^2) per layer), then the target readout.

    Args:
        dim: D; layers: attention layers; heads: heads; ffn_mult: feed-forward width / D.
    """

    def __init__(self, dim: int, layers: int, heads: int, ffn_mult: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, ffn_mult) for _ in range(layers))
        self.readout = TargetReadout(dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z = tokens
        for block in self.blocks:
            z = block(z, mask)  # (B, S, D)
        return self.readout(z, mask, target)
