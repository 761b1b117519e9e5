"""The whole backbone forward as one C call: ``FusedBackbone``, swapped in by ``fuse_backbone``.

For 200 candidates every op of the backbone is small, and a compiled graph spends much
of a request between kernels. ``_fusedkernel.c``'s ``fluidrec_backbone_forward`` runs all
layers in one call: threads take slices of the batch (samples never meet), a
register-blocked GEMM runs on weights packed once by ``pack_backbone``, and the attention
and SiLU run on rows still in cache. It is registered as the torch op
``fluidrec::backbone_forward`` so a compiled scorer calls it as one extern kernel.

The plain ``Backbone`` knows nothing of this module: ``fuse_backbone(backbone)`` builds a
``FusedBackbone`` from a trained one (a snapshot of its weights), and a caller swaps it in
(``fluidrec.ranker.inference.compile_scorer(model, backbone="fused")``). It is chosen only
where the kernel's SIMD loops run (``simd_available()``, asked of the C side); its plain-C
loops exist for other CPUs and for tests, and lose to torch. The reference is
``Backbone.forward``; tests compare the two.

Example:
    >>> bb = Backbone(BackboneConfig(dim=64, layers=2, heads=4), num_tokens=7).eval()
    >>> fast = fuse_backbone(bb, threads=2)        # raises where unsupported_reason(bb) is set
    >>> y = fast(torch.randn(200, 7, 64))          # (B, T, D), as bb(x) up to float rounding
"""

from __future__ import annotations

import torch
from torch import nn

from fluidrec.errors import UsageError
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
                "fluidrec_backbone_simd": ([], "i"),
            },
        ) or False
    return _LIB or None


def kernel_built() -> bool:
    """Whether the C kernel was built (its plain-C loops run on any CPU; tests use them)."""
    return kernel_lib() is not None


def simd_available() -> bool:
    """Whether the kernel's SIMD loops were compiled in and this CPU runs them (the C side says)."""
    lib = kernel_lib()
    return bool(lib and lib["fluidrec_backbone_simd"]())


def kernel_available() -> bool:
    """Whether the fused backbone is worth choosing here: built, with its SIMD loops running."""
    return simd_available()


def _fn():
    lib = kernel_lib()
    return lib["fluidrec_backbone_forward"] if lib else None


def unsupported_reason(bb: Backbone) -> str | None:
    """Why the fused kernel cannot run this backbone, or None when it can."""
    if _fn() is None:
        return "the C kernels were not built (no C compiler at install, or FLUIDREC_NO_KERNELS is set)"
    if not simd_available():
        return "the kernel's SIMD loops do not run here (x86-64 with AVX2/FMA and GCC/clang only); its plain-C loops are slower than torch"
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
    parts = [bb.tok_type.reshape(-1)]  # (T*D,)
    for layer in bb.layers:
        parts += [layer.norm1.weight, pack_panels(layer.qkv.weight.T), layer.qkv.bias, pack_panels(layer.out.weight.T), layer.out.bias]
        parts += [layer.norm2.weight]
        parts += [pack_panels(w) for w in layer.tok_w13]  # (D, 2F) per token
        parts += [pack_panels(w) for w in layer.tok_w2]  # (F, D) per token
    parts.append(bb.norm.weight)
    return torch.cat([p.detach().float().reshape(-1) for p in parts]).contiguous()  # (n_weights,), flat


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


class FusedBackbone(nn.Module):
    """A frozen ``Backbone`` run as one C call (build it with ``fuse_backbone``).

    Holds a packed snapshot of the weights: later changes to the source backbone do not
    reach it. Inference only (the op has no backward).
    """

    def __init__(self, weights: torch.Tensor, *, num_tokens: int, heads: int, ffn: int, layers: int, eps: float, threads: int = 1) -> None:
        super().__init__()
        self.register_buffer("weights", weights)
        self.num_tokens = num_tokens
        self.heads, self.ffn, self.layers, self.eps, self.threads = heads, ffn, layers, eps, threads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return backbone_forward(x, self.weights, self.heads, self.ffn, self.layers, self.eps, self.threads)  # (B, T, D)


def fuse_backbone(backbone: Backbone, *, threads: int = 1) -> FusedBackbone:
    """A ``FusedBackbone`` computing ``backbone``'s forward (same results up to float rounding).

    Args:
        backbone: a trained ``Backbone`` (it is not changed).
        threads: the batch is split over this many threads of the kernel's own.

    Raises:
        UsageError: the kernel cannot run it here (``unsupported_reason`` says why).
    """
    reason = unsupported_reason(backbone)
    if reason is not None:
        raise UsageError(f"cannot fuse the ranker backbone: {reason}")
    if threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    c = backbone.cfg
    return FusedBackbone(
        pack_backbone(backbone), num_tokens=backbone.num_tokens, heads=c.heads, ffn=c.dim * c.ffn_mult, layers=c.layers,
        eps=norm_eps(backbone), threads=threads,
    )
