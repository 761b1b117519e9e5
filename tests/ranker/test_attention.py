"""Attention forms against SDPA (the reference): the torch pairwise form and the C kernel's."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fluidrec.ranker.attention import FORMS, attend, pairwise_attention
from fluidrec.ranker.backbone import Backbone, BackboneConfig, with_attention
from fluidrec.ranker.fused import kernel_built, kernel_lib

# the plain-C loops run on any CPU, so these run wherever the kernel was built
needs_kernel = pytest.mark.skipif(not kernel_built(), reason="C kernels not built (no C compiler at install, or FLUIDREC_NO_KERNELS)")


def _sdpa_reference(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d3 = qkv.shape
    q, k, v = qkv.view(b, t, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d3 // 3)


def _kernel_attention(qkv: torch.Tensor, heads: int, simd: bool) -> torch.Tensor:
    """The C kernel's attention (the one inside the fused backbone) on (B, T, 3D)."""
    b, t, d3 = qkv.shape
    qkv = qkv.contiguous()
    out = torch.full((b, t, d3 // 3), np.nan)
    assert kernel_lib()["fluidrec_token_attention"](qkv.data_ptr(), b, t, heads, d3 // (3 * heads), out.data_ptr(), int(simd)) == 0
    return out


@pytest.mark.parametrize("shape", [(3, 2, 7, 8), (1, 4, 1, 16), (5, 1, 12, 4)])
def test_pairwise_attention_matches_sdpa(shape):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(shape, generator=g) * 2 for _ in range(3))
    torch.testing.assert_close(pairwise_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


# (B, T, H, E): the SIMD path (T <= 8, E % 8 == 0) and shapes that take the plain loop
@needs_kernel
@pytest.mark.parametrize("b,t,h,e", [(200, 7, 4, 16), (3, 8, 2, 8), (5, 1, 1, 8), (4, 12, 3, 16), (6, 5, 2, 6), (2, 3, 1, 1)])
@pytest.mark.parametrize("simd", [True, False])
def test_kernel_attention_is_as_close_to_float64_as_sdpa(b, t, h, e, simd):
    g = torch.Generator().manual_seed(b * 100 + t)
    qkv = torch.randn(b, t, 3 * h * e, generator=g) * 3  # large scores: the softmax max-shift matters
    exact = _sdpa_reference(qkv.double(), h)
    sdpa_err = (_sdpa_reference(qkv, h) - exact).abs().max().item()
    kernel_err = (_kernel_attention(qkv, h, simd) - exact).abs().max().item()
    assert kernel_err <= max(2 * sdpa_err, 1e-6)


@needs_kernel
def test_kernel_softmax_handles_far_apart_scores_and_ties():
    qkv = torch.zeros(2, 4, 3 * 8)
    qkv[0, :, :8] = 30.0  # queries
    qkv[0, 2, 8:16] = 30.0  # key 2 scores far above the others: their weights underflow to 0
    qkv[0, :, 16:] = torch.arange(4.0)[:, None]  # value row j = j
    qkv[1, :, :8] = 1.0
    qkv[1, 1, 8:16] = qkv[1, 3, 8:16] = 2.0  # keys 1 and 3 tie
    qkv[1, :, 16:] = torch.arange(4.0)[:, None]
    for simd in (True, False):
        out = _kernel_attention(qkv, 1, simd)
        torch.testing.assert_close(out[0], torch.full((4, 8), 2.0))  # all weight on key 2
        torch.testing.assert_close(out, _sdpa_reference(qkv, 1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_gives_the_backbone_the_same_output_compiled(form):
    torch.manual_seed(0)
    bb = Backbone(BackboneConfig(dim=32, layers=2, heads=4), num_tokens=7).eval()
    x = torch.randn(50, 7, 32)
    with torch.no_grad():
        want = bb(x)
        other = with_attention(bb, form)
        assert all(layer.attention == "sdpa" for layer in bb.layers)  # bb itself is unchanged
        torch._dynamo.reset()
        got = torch.compile(other)(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_unknown_form_is_rejected():
    with pytest.raises(ValueError, match="unknown attention form 'flash'"):
        attend(torch.randn(2, 3, 12), heads=2, form="flash")
