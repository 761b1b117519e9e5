"""Attention forms: pairwise and the C kernel against SDPA (the reference), and the op under torch.compile."""

import pytest
import torch
import torch.nn.functional as F

from fluidrec.ranker.attention import FORMS, attend, kernel_available, pairwise_attention, token_attention
from fluidrec.ranker.backbone import Backbone, BackboneConfig

needs_kernel = pytest.mark.skipif(not kernel_available(), reason="attention kernel not built (no C compiler at install)")


def _sdpa_reference(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d3 = qkv.shape
    q, k, v = qkv.view(b, t, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d3 // 3)


@pytest.mark.parametrize("shape", [(3, 2, 7, 8), (1, 4, 1, 16), (5, 1, 12, 4)])
def test_pairwise_attention_matches_sdpa(shape):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(shape, generator=g) * 2 for _ in range(3))
    torch.testing.assert_close(pairwise_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


# (B, T, H, E): the SIMD path (T <= 8, E % 8 == 0) and shapes that take the plain loop
@needs_kernel
@pytest.mark.parametrize("b,t,h,e", [(200, 7, 4, 16), (3, 8, 2, 8), (5, 1, 1, 8), (4, 12, 3, 16), (6, 5, 2, 6), (2, 3, 1, 1)])
@pytest.mark.parametrize("simd", [True, False])
def test_kernel_matches_sdpa(b, t, h, e, simd):
    g = torch.Generator().manual_seed(b * 100 + t)
    qkv = torch.randn(b, t, 3 * h * e, generator=g) * 3  # large scores: the softmax max-shift matters
    exact = _sdpa_reference(qkv.double(), h)
    sdpa_err = (_sdpa_reference(qkv, h) - exact).abs().max().item()
    kernel_err = (token_attention(qkv, h, simd) - exact).abs().max().item()
    assert kernel_err <= max(2 * sdpa_err, 1e-6)  # as close to float64 as torch's own float32 SDPA


@needs_kernel
def test_kernel_softmax_handles_far_apart_scores():
    # one key dominates (exp underflows for the rest) and two keys tie exactly
    qkv = torch.zeros(2, 4, 3 * 8)
    qkv[0, :, :8] = 30.0  # queries
    qkv[0, 2, 8:16] = 30.0  # key 2 scores 30*30*8/sqrt(8) higher than the others
    qkv[0, :, 16:] = torch.arange(4.0)[:, None]  # value row j = j
    qkv[1, :, :8] = 1.0
    qkv[1, 1, 8:16] = qkv[1, 3, 8:16] = 2.0  # keys 1 and 3 tie
    qkv[1, :, 16:] = torch.arange(4.0)[:, None]
    for simd in (True, False):
        out = token_attention(qkv, 1, simd)
        torch.testing.assert_close(out[0], torch.full((4, 8), 2.0))  # all weight on key 2
        torch.testing.assert_close(out, _sdpa_reference(qkv, 1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_gives_the_backbone_the_same_output_compiled(form):
    if form == "kernel" and not kernel_available():
        pytest.skip("attention kernel not built")
    torch.manual_seed(0)
    bb = Backbone(BackboneConfig(dim=32, layers=2, heads=4), num_tokens=7).eval()
    x = torch.randn(50, 7, 32)
    with torch.no_grad():
        want = bb(x)
        for layer in bb.layers:
            layer.attention = form
        torch._dynamo.reset()
        got = torch.compile(bb)(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_unknown_form_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="unknown attention form 'flash'"):
        attend(torch.randn(2, 3, 12), heads=2, form="flash")
    if kernel_available():
        with pytest.raises(ValueError, match=r"needs float32 \(B, T, 3 \* heads \* E\), got \(2, 3, 10\)"):
            token_attention(torch.randn(2, 3, 10), 2)
