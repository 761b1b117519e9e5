"""The fused C backbone against the torch Backbone (the reference), and its use in the Scorer."""

import pytest
import torch

from fluidrec.ranker.backbone import Backbone, BackboneConfig
from fluidrec.ranker.fused import backbone_forward, kernel_available, norm_eps, pack_backbone, unsupported_reason

pytestmark = pytest.mark.skipif(not kernel_available(), reason="C kernels not built (no C compiler at install)")


def _backbone(dim: int, layers: int, heads: int, ffn_mult: int, tokens: int, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    bb = Backbone(BackboneConfig(dim=dim, layers=layers, heads=heads, ffn_mult=ffn_mult), num_tokens=tokens).eval()
    with torch.no_grad():  # non-trivial weights everywhere (some start small or at zero)
        for p in bb.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return bb


# the benchmark's default; other widths, head counts, token counts (> 8: the plain
# attention loop), one layer; batch sizes that leave partial 6-row GEMM blocks
@pytest.mark.parametrize(
    "dim,layers,heads,ffn_mult,tokens,batch",
    [(64, 2, 4, 2, 7, 200), (32, 1, 2, 1, 3, 13), (16, 3, 1, 3, 9, 7), (48, 2, 3, 2, 5, 1), (64, 1, 8, 4, 8, 31)],
)
@pytest.mark.parametrize("threads,simd", [(1, True), (2, True), (3, False)])
def test_fused_backbone_matches_the_torch_backbone(dim, layers, heads, ffn_mult, tokens, batch, threads, simd):
    bb = _backbone(dim, layers, heads, ffn_mult, tokens)
    assert unsupported_reason(bb) is None
    x = torch.randn(batch, tokens, dim) * 2
    with torch.no_grad():
        want = bb(x)
        exact = bb.double()(x.double())
        bb.float()
    got = backbone_forward(x, pack_backbone(bb), heads, dim * ffn_mult, layers, norm_eps(bb), threads, simd)
    torch_err = (want.double() - exact).abs().max().item()
    assert (got.double() - exact).abs().max().item() <= max(4 * torch_err, 1e-5)  # as close to float64 as torch
    assert got.shape == want.shape and torch.isfinite(got).all()


def test_backbone_uses_the_fused_weights_only_when_set():
    bb = _backbone(32, 2, 4, 2, 6)
    x = torch.randn(20, 6, 32)
    with torch.no_grad():
        want = bb(x)
        bb.fused, bb.fused_threads = pack_backbone(bb), 2
        got = bb(x)
        with torch.no_grad():
            bb.layers[0].qkv.weight.add_(1.0)  # the packed copy does not follow later edits ...
        torch.testing.assert_close(bb(x), got)
        bb.fused = None  # ... the torch path does
        assert not torch.allclose(bb(x), want, atol=1e-3)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_unsupported_widths_and_eps_are_named():
    assert "multiples of 16" in unsupported_reason(Backbone(BackboneConfig(dim=12, heads=2), num_tokens=3))
    bb = Backbone(BackboneConfig(dim=16), num_tokens=3)
    bb.layers[0].norm1.eps = 1e-5
    assert unsupported_reason(bb) == "the norms use different eps"


def test_a_nan_stays_in_its_own_sample_as_in_torch():
    bb = _backbone(32, 2, 4, 2, 5)
    x = torch.randn(8, 5, 32)
    x[3, 1, 7] = float("nan")
    with torch.no_grad():
        want = bb(x)
    for simd in (True, False):
        got = backbone_forward(x, pack_backbone(bb), 4, 64, 2, norm_eps(bb), 2, simd)
        assert torch.isnan(got[3]).all() and torch.isnan(want[3]).all()  # NaN, not a silent number
        keep = torch.arange(8) != 3
        torch.testing.assert_close(got[keep], want[keep], atol=2e-5, rtol=2e-5)
