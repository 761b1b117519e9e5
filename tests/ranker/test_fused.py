"""The fused C backbone against the torch Backbone (the reference), and how it is chosen."""

import ast
import inspect
import os
import platform

import pytest
import torch

import fluidrec.ranker.backbone as backbone_module
import fluidrec.ranker.fused as fused
from fluidrec.errors import UsageError
from fluidrec.ranker.backbone import Backbone, BackboneConfig
from fluidrec.ranker.fused import FusedBackbone, backbone_forward, fuse_backbone, kernel_built, norm_eps, pack_backbone, unsupported_reason

# the plain-C loops run on any CPU, so the comparisons run wherever the kernel was built
needs_kernel = pytest.mark.skipif(not kernel_built(), reason="C kernels not built (no C compiler at install, or FLUIDREC_NO_KERNELS)")
needs_simd = pytest.mark.skipif(not fused.simd_available(), reason="the kernel's SIMD loops do not run here (not built, or no x86-64 AVX2/FMA)")


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
@needs_kernel
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


@needs_simd
def test_fuse_backbone_builds_a_snapshot_and_leaves_the_backbone_alone():
    bb = _backbone(32, 2, 4, 2, 6)
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    x = torch.randn(20, 6, 32)
    fast = fuse_backbone(bb, threads=2)
    assert isinstance(fast, FusedBackbone) and fast.threads == 2 and fast.num_tokens == 6
    with torch.no_grad():
        want = bb(x)
        got = fast(x)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
        bb.layers[0].qkv.weight.add_(1.0)  # a later edit of the backbone ...
        torch.testing.assert_close(fast(x), got)  # ... does not reach the fused snapshot
        assert not torch.allclose(bb(x), want, atol=1e-3)
    assert set(bb.state_dict()) == set(before) and not hasattr(bb, "fused")  # nothing was added to it


def test_the_plain_backbone_does_not_import_the_fused_one():
    """No import cycle: fused.py imports backbone.py, never the other way round (not even lazily)."""
    tree = ast.parse(inspect.getsource(backbone_module))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and "fused" in m], imported


def _cpu_has_avx2_fma() -> bool | None:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    return "avx2" in flags and "fma" in flags


@needs_kernel
def test_simd_available_says_what_the_c_side_runs():
    has = _cpu_has_avx2_fma()
    if has is None or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("checked against /proc/cpuinfo on x86-64 Linux only")
    assert fused.simd_available() == has
    assert fused.kernel_available() == has  # chosen only where the SIMD loops run


@needs_kernel
def test_without_simd_the_fused_backbone_is_refused_with_the_reason(monkeypatch):
    bb = _backbone(32, 1, 2, 2, 4)
    monkeypatch.setattr(fused, "simd_available", lambda: False)
    assert "SIMD" in unsupported_reason(bb)
    with pytest.raises(UsageError, match="cannot fuse the ranker backbone: the kernel's SIMD loops do not run here"):
        fuse_backbone(bb)


@pytest.mark.skipif(not os.environ.get("FLUIDREC_NO_KERNELS"), reason="checks the FLUIDREC_NO_KERNELS=1 run")
def test_without_kernels_fusing_is_refused_with_the_reason():
    assert not kernel_built() and not fused.simd_available()
    with pytest.raises(UsageError, match="C kernels were not built"):
        fuse_backbone(_backbone(32, 1, 2, 2, 4))


@needs_simd
def test_unsupported_widths_and_eps_are_named():
    assert "multiples of 16" in unsupported_reason(Backbone(BackboneConfig(dim=12, heads=2), num_tokens=3))
    bb = Backbone(BackboneConfig(dim=16), num_tokens=3)
    bb.layers[0].norm1.eps = 1e-5
    assert unsupported_reason(bb) == "the norms use different eps"


@needs_kernel
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
