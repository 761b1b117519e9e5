"""Hand-written ops for the ranker's hot path, each with the plain op it must equal.

``gather_rows(weight, idx)`` is ``F.embedding(idx, weight)`` with a cheaper backward for
dense tables on CPU: the gradient is built with one ``index_add_`` into a zero table
instead of ``embedding_dense_backward`` (sort-based, and slower for the small code and
side tables at the demo's batch sizes). The reference is ``F.embedding``
(tests compare values and gradients).

Example:
    >>> w = torch.randn(100, 8, requires_grad=True)
    >>> y = gather_rows(w, torch.tensor([[1, 2], [3, 1]]))   # (2, 2, 8)
"""

from __future__ import annotations

import torch


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        flat = idx.reshape(-1)  # (n,)
        ctx.save_for_backward(flat)
        ctx.rows = weight.shape[0]
        return weight.index_select(0, flat).view(*idx.shape, weight.shape[1])  # (..., D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (flat,) = ctx.saved_tensors
        d = grad.shape[-1]
        gw = grad.new_zeros(ctx.rows, d).index_add_(0, flat, grad.reshape(-1, d))  # (rows, D)
        return gw, None


def gather_rows(weight: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of a dense (R, D) table at int64 ``idx`` of any shape -> (*idx.shape, D).

    Same values and gradient as ``F.embedding(idx, weight)`` (no padding_idx, no max_norm).
    Indices are not range-checked beyond what ``index_select`` does (it raises on out-of-range).

    Args:
        weight: (R, D) table.
        idx: int64 indices in [0, R).

    Example:
        >>> gather_rows(torch.eye(3), torch.tensor([2, 0]))
        tensor([[0., 0., 1.],
                [1., 0., 0.]])
    """
    if not torch.is_grad_enabled() or not weight.requires_grad:
        return weight.index_select(0, idx.reshape(-1)).view(*idx.shape, weight.shape[1])  # (..., D)
    return _GatherRows.apply(weight, idx)


__all__ = ["gather_rows"]
