"""The whole backbone forward as one C call, for compiled inference.

For 200 candidates every op of the backbone is small, and a compiled graph spends much
of a request between kernels. ``_fusedkernel.c``'s ``fluidrec_backbone_forward`` runs all
layers in one call: two threads take half the batch each (samples never meet), a
register-blocked GEMM runs on weights packed once by ``pack_backbone``, and the attention
and SiLU run on rows still in cache. It is registered as the torch op
``fluidrec::backbone_forward`` so a compiled scorer calls it as one extern kernel. The
reference is ``Backbone.forward``; tests compare the two.

Example:
    >>> bb = Backbone(BackboneConfig(dim=64, layers=2, heads=4), num_tokens=7).eval()
    >>> weights = pack_backbone(bb)
    >>> y = backbone_forward(torch.randn(200, 7, 64), weights, 4, 128, 2, norm_eps(bb))
"""

from __future__ import annotations

import torch

from fluidrec.ranker.backbone import Backbone
from fluidrec.utils.ckernel import PANEL, pack_panels

_LIB: object = None


def kernel_lib() -> dict | None:
    """The C functions of ``_fusedkernel`` (name -> ctypes function), or None where not built."""
    global _LIB
    if _LIB is None:
        from fluidrec.utils.ckernel import load_kernel

        _LIB = load_kernel(
            "fluidrec.ranker._fusedkernel",
            {
                "fluidrec_token_attention": (["p", "i", "i", "i", "i", "p", "i"], "i"),
                "fluidrec_backbone_forward": (["p", "i", "i", "i", "i", "i", "i", "p", "d", "p", "i", "i"], "i"),
            },
        ) or False
    return _LIB or None


def kernel_available() -> bool:
    """Whether the fused backbone kernel was built (else compiled scoring runs the torch backbone)."""
    return kernel_lib() is not None


def _fn():
    lib = kernel_lib()
    return lib["fluidrec_backbone_forward"] if lib else None


def unsupported_reason(bb: Backbone) -> str | None:
    """Why the fused kernel cannot run this backbone, or None when it can."""
    if _fn() is None:
        return "the C kernels were not built (no C compiler at install)"
    d, f = bb.cfg.dim, bb.cfg.dim * bb.cfg.ffn_mult
    if d % PANEL or (2 * f) % PANEL:
        return f"width {d} and 2 x feed-forward width {2 * f} must be multiples of {PANEL}"
    norms = [bb.norm] + [n for layer in bb.layers for n in (layer.norm1, layer.norm2)]
    if len({_eps(n) for n in norms}) > 1:
        return "the norms use different eps"
    return None


def _eps(norm: torch.nn.RMSNorm) -> float:
    """The epsilon an RMSNorm adds (None means float32's machine epsilon)."""
    return float(torch.finfo(torch.float32).eps if norm.eps is None else norm.eps)


def norm_eps(bb: Backbone) -> float:
    """The RMSNorm epsilon the kernel uses (all norms share it; see unsupported_reason)."""
    return _eps(bb.norm)


@torch.no_grad()
def pack_backbone(bb: Backbone) -> torch.Tensor:
    """All weights of ``bb`` in the kernel's order and layout (see fluidrec_backbone_forward)."""
    parts = [bb.tok_type.reshape(-1)]
    for layer in bb.layers:
        parts += [layer.norm1.weight, pack_panels(layer.qkv.weight.T), layer.qkv.bias, pack_panels(layer.out.weight.T), layer.out.bias]
        parts += [layer.norm2.weight]
        parts += [pack_panels(w) for w in layer.tok_w13]  # (D, 2F) per token
        parts += [pack_panels(w) for w in layer.tok_w2]  # (F, D) per token
    parts.append(bb.norm.weight)
    return torch.cat([p.detach().float().reshape(-1) for p in parts]).contiguous()


@torch.library.custom_op("fluidrec::backbone_forward", mutates_args=())
def backbone_forward(
    x: torch.Tensor, weights: torch.Tensor, heads: int, ffn: int, layers: int, eps: float, threads: int = 1, simd: bool = True
) -> torch.Tensor:
    """Backbone output (B, T, D) of x (B, T, D) with weights from ``pack_backbone``.

    Args:
        heads, ffn, layers: the backbone's H, F (= ffn_mult * D) and layer count.
        eps: the RMSNorm epsilon.
        threads: the batch is split over this many threads.
        simd: False forces the plain-C loops (for tests).
    """
    fn = _fn()
    if fn is None:
        raise RuntimeError("fluidrec's C kernels are not built (reinstall with a C compiler)")
    x = x.contiguous().float()
    b, t, d = x.shape
    out = torch.empty_like(x)
    if fn(x.data_ptr(), b, t, d, heads, ffn, layers, weights.data_ptr(), float(eps), out.data_ptr(), threads, int(simd)) != 0:
        raise MemoryError("fluidrec backbone kernel: could not allocate its work buffers or threads")
    return out


@backbone_forward.register_fake
def _backbone_forward_shape(x, weights, heads, ffn, layers, eps, threads=1, simd=True):
    return torch.empty_like(x)
