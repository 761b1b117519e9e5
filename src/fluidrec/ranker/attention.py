"""Softmax attention over the ranker's few tokens, in three interchangeable forms.

- ``"sdpa"``: ``F.scaled_dot_product_attention`` (training and eager scoring; the reference).
- ``"pairwise"``: broadcast products and sums, which fuse into one loop under ``torch.compile``.
- ``"kernel"``: ``token_attention``, a small C kernel (``_attnkernel.c``) registered as the
  torch op ``fluidrec::token_attention``, so compiled graphs call it as one extern kernel.

All three give the same result up to float rounding (tests compare them). With T ~ 7 tokens
and 16-wide heads torch's kernels are a poor fit: SDPA makes a call per (sample, head), and
inductor's fused pairwise loop reduces each 16-wide dot product horizontally. For 200
candidates of the default ranker one layer's attention took 0.66-0.72 ms as the fused
pairwise loop (2 threads) and 0.29 ms in the kernel (1 thread; ~0.49 ms inside a compiled
graph, which calls a Python op through inductor's proxy executor). ``best_inference_form()``
picks the kernel where it was built and the pairwise form otherwise.

Example:
    >>> qkv = torch.randn(200, 7, 3 * 64)                 # (B, T, 3D), fused q|k|v projection
    >>> a = attend(qkv, heads=4, form="kernel")           # (B, T, D)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FORMS = ("sdpa", "pairwise", "kernel")

_KERNEL: object = None


def _kernel():
    """The C function, or None where the extension was not built."""
    global _KERNEL
    if _KERNEL is None:
        from fluidrec.utils.ckernel import load_kernel

        fns = load_kernel("fluidrec.ranker._attnkernel", {"fluidrec_token_attention": (["p", "i", "i", "i", "i", "p", "i"], "i")})
        _KERNEL = fns["fluidrec_token_attention"] if fns else False
    return _KERNEL or None


def kernel_available() -> bool:
    """Whether the C attention kernel was built (else ``"kernel"`` is unavailable)."""
    return _kernel() is not None


def best_inference_form() -> str:
    """The fastest form for compiled inference on this install."""
    return "kernel" if kernel_available() else "pairwise"


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


@torch.library.custom_op("fluidrec::token_attention", mutates_args=())
def token_attention(qkv: torch.Tensor, heads: int, simd: bool = True) -> torch.Tensor:
    """Attention of every sample and head with the C kernel.

    Args:
        qkv: (B, T, 3D) float32, the fused q|k|v projection (D = heads * E).
        heads: H.
        simd: False forces the kernel's plain-C loop (for tests).

    Returns:
        (B, T, D): softmax(q k^T / sqrt(E)) v per head, heads side by side.
    """
    fn = _kernel()
    if fn is None:
        raise RuntimeError("fluidrec's attention kernel is not built (reinstall with a C compiler); use form='pairwise'")
    b, t, d3 = qkv.shape
    if qkv.dtype != torch.float32 or d3 % (3 * heads):
        raise ValueError(f"token_attention needs float32 (B, T, 3 * heads * E), got {tuple(qkv.shape)} {qkv.dtype} with {heads} heads")
    qkv = qkv.contiguous()
    out = qkv.new_empty((b, t, d3 // 3))
    if fn(qkv.data_ptr(), b, t, heads, d3 // (3 * heads), out.data_ptr(), int(simd)) != 0:
        raise MemoryError("fluidrec attention kernel: could not allocate its scratch buffer")
    return out


@token_attention.register_fake
def _token_attention_shape(qkv: torch.Tensor, heads: int, simd: bool = True) -> torch.Tensor:
    b, t, d3 = qkv.shape
    return qkv.new_empty((b, t, d3 // 3))


def attend(qkv: torch.Tensor, heads: int, form: str = "sdpa") -> torch.Tensor:
    """Multi-head attention from a fused projection.

    Args:
        qkv: (B, T, 3D), laid out q | k | v, each heads x E.
        heads: H.
        form: one of ``FORMS``.

    Returns:
        (B, T, D).
    """
    if form == "kernel":
        return token_attention(qkv, heads)
    b, t, d3 = qkv.shape
    q, k, v = qkv.view(b, t, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4)  # each (B, H, T, E)
    if form == "pairwise":
        a = pairwise_attention(q, k, v)
    elif form == "sdpa":
        a = F.scaled_dot_product_attention(q, k, v)
    else:
        raise ValueError(f"unknown attention form {form!r}; expected one of {FORMS}")
    return a.transpose(1, 2).reshape(b, t, d3 // 3)  # (B, T, D)
