"""Token-mixing backbone (Zenith-like): token fusion + token boost, repeated.

Each layer: token fusion = multi-head self-attention over the T tokens (weights shared
across tokens), then token boost = a SwiGLU feed-forward with its own weights per token.
Per-token weights are stacked (T, ...) and applied with one batched matmul; parameter
names start with ``tok_`` so checkpoints can be remapped by token name when tokens are
added or removed (see ``fluidrec.ranker.model.init_from``).

Shape letters: B batch, T tokens, D width, F feed-forward width, H heads.

Example:
    >>> bb = Backbone(BackboneConfig(dim=32, layers=2, heads=2), num_tokens=7)
    >>> y = bb(torch.randn(16, 7, 32))   # (B, T, D)
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.errors import check
from fluidrec.ranker.attention import FORMS, attend


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Args: dim D; layers; heads H (D % H == 0); ffn_mult F = ffn_mult * D."""

    dim: int = 32
    layers: int = 2
    heads: int = 2
    ffn_mult: int = 2

    def __post_init__(self) -> None:
        check(self.dim >= 4, f"dim must be >= 4, got {self.dim}")
        check(self.layers >= 1, f"layers must be >= 1, got {self.layers}")
        check(self.heads >= 1 and self.dim % self.heads == 0, f"heads must divide dim ({self.dim}), got {self.heads}")
        check(self.ffn_mult >= 1, f"ffn_mult must be >= 1, got {self.ffn_mult}")


def token_swiglu(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Per-token SwiGLU, batched over tokens.

    Args:
        x: (B, T, D); w13: (T, D, 2F) fused gate|up weights; w2: (T, F, D).

    Returns:
        (B, T, D).
    """
    xt = x.transpose(0, 1)  # (T, B, D)
    gate, up = torch.bmm(xt, w13).chunk(2, dim=-1)  # (T, B, F) each
    return torch.bmm(F.silu(gate) * up, w2).transpose(0, 1)  # (B, T, D)


def token_swiglu_reference(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Plain loop over tokens (reference for ``token_swiglu``)."""
    outs = []
    for t in range(x.shape[1]):
        gate, up = (x[:, t] @ w13[t]).chunk(2, dim=-1)  # (B, F)
        outs.append((F.silu(gate) * up) @ w2[t])  # (B, D)
    return torch.stack(outs, dim=1)


class Layer(nn.Module):
    def __init__(self, cfg: BackboneConfig, num_tokens: int, attention: str = "sdpa") -> None:
        super().__init__()
        d, f = cfg.dim, cfg.dim * cfg.ffn_mult
        self.heads = cfg.heads
        self.attention = attention  # a form of fluidrec.ranker.attention (see Backbone)
        self.norm1 = nn.RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.RMSNorm(d)
        self.tok_w13 = nn.Parameter(torch.randn(num_tokens, d, 2 * f) * d**-0.5)
        # Small residual-branch init keeps the stack close to identity at the start.
        self.tok_w2 = nn.Parameter(torch.randn(num_tokens, f, d) * (0.5 * f**-0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = attend(self.qkv(self.norm1(x)), self.heads, self.attention)  # (B, T, D)
        x = x + self.out(a)  # (B, T, D)
        return x + token_swiglu(self.norm2(x), self.tok_w13, self.tok_w2)


class Backbone(nn.Module):
    """Stack of token-fusion / token-boost layers over T tokens with learned token-type vectors.

    Args:
        cfg: sizes.
        num_tokens: T.
        attention: the attention form of every layer (``fluidrec.ranker.attention.FORMS``):
            SDPA for training and eager scoring; a compiled scorer builds a pairwise copy
            with ``with_attention`` (same results, faster once compiled).
    """

    def __init__(self, cfg: BackboneConfig, num_tokens: int, *, attention: str = "sdpa") -> None:
        super().__init__()
        check(num_tokens >= 1, "the backbone needs at least one token")
        check(attention in FORMS, f"attention must be one of {FORMS}, got {attention!r}")
        self.cfg = cfg
        self.num_tokens = num_tokens
        self.attention = attention
        self.tok_type = nn.Parameter(torch.randn(num_tokens, cfg.dim) * 0.02)
        self.layers = nn.ModuleList(Layer(cfg, num_tokens, attention) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tok_type  # (B, T, D)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def flops_per_sample(self) -> int:
        """Forward multiply-add FLOPs per sample (x2 for multiply and add); backward is about 2x this."""
        t, d, f = self.num_tokens, self.cfg.dim, self.cfg.dim * self.cfg.ffn_mult
        per_layer = 2 * t * d * 3 * d + 2 * t * d * d + 2 * 2 * t * t * d + 2 * t * d * 2 * f + 2 * t * f * d
        return self.cfg.layers * per_layer


def with_attention(backbone: Backbone, form: str) -> Backbone:
    """A copy of ``backbone`` (weights copied; ``backbone`` is not changed) whose layers use
    attention ``form``."""
    check(form in FORMS, f"attention must be one of {FORMS}, got {form!r}")
    out = copy.deepcopy(backbone)  # a copy, not a rebuild: keeps every setting and draws no random numbers
    out.attention = form
    for layer in out.layers:
        layer.attention = form
    return out
