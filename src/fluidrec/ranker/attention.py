"""Softmax attention over the ranker's few tokens, in two interchangeable torch forms.

- ``"sdpa"``: ``F.scaled_dot_product_attention`` (training and eager scoring; the reference).
- ``"pairwise"``: broadcast products and sums, which fuse into one loop under ``torch.compile``
  (faster than SDPA at the ranker's few tokens when compiled; see ``benchmarks/ranker.py``).

Both give the same result up to float rounding (tests compare them). A compiled scorer
runs the pairwise form (``fluidrec.ranker.backbone.with_attention``), or, with the fused
backbone chosen, neither: the whole backbone as one C call (``fluidrec.ranker.fused``),
whose attention is tested against SDPA too.

Example:
    >>> qkv = torch.randn(200, 7, 3 * 64)                 # (B, T, 3D), fused q|k|v projection
    >>> a = attend(qkv, heads=4, form="pairwise")         # (B, T, D)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FORMS = ("sdpa", "pairwise")


def pairwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention written as broadcast products and sums, for compiled inference.

    Same result as ``F.scaled_dot_product_attention(q, k, v)``. Eager PyTorch would
    materialise the (B, H, T, T, D/H) products, so training keeps SDPA; under
    ``torch.compile`` the product and the sum fuse into one loop.

    Args:
        q, k, v: (B, H, T, E).

    Returns:
        (B, H, T, E).
    """
    s = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) * q.shape[-1] ** -0.5  # (B, H, T, T)
    return (torch.softmax(s, dim=-1).unsqueeze(-1) * v.unsqueeze(2)).sum(3)  # (B, H, T, E)


def attend(qkv: torch.Tensor, heads: int, form: str = "sdpa") -> torch.Tensor:
    """Multi-head attention from a fused projection.

    Args:
        qkv: (B, T, 3D), laid out q | k | v, each heads x E.
        heads: H.
        form: one of ``FORMS``.

    Returns:
        (B, T, D).
    """
    b, t, d3 = qkv.shape
    q, k, v = qkv.view(b, t, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4)  # each (B, H, T, E)
    if form == "pairwise":
        a = pairwise_attention(q, k, v)
    elif form == "sdpa":
        a = F.scaled_dot_product_attention(q, k, v)
    else:
        raise ValueError(f"unknown attention form {form!r}; expected one of {FORMS}")
    return a.transpose(1, 2).reshape(b, t, d3 // 3)  # (B, T, D)
