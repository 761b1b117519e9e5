"""The low-latency Scorer: compiled graph, snapshot and fallback behaviour."""

import numpy as np
import pytest
import torch

import fluidrec.ranker.inference as inference
from fluidrec.errors import UsageError
from fluidrec.ranker.arms import build_arm
import fluidrec.ranker.fused as fused
from fluidrec.ranker.fused import FusedBackbone, kernel_available
from fluidrec.ranker.evaluate import ScoringContext, score, score_candidates
from fluidrec.ranker.inference import compile_scorer, serving_layout
from fluidrec.ranker.model import build_ranker
from fluidrec.ranker.train import RankerModelConfig, RankerTrainConfig, ranker_spec

CFG = RankerTrainConfig(batch_size=256, progress=False, model=RankerModelConfig(dim=16, layers=2, heads=2, head_hidden=16))


@pytest.fixture()
def model(toy_features):
    torch.manual_seed(0)
    plan = build_arm("fluid")
    m = build_ranker(ranker_spec(CFG, toy_features, plan, plan.stages[-1]), toy_features.room_vocab).eval()
    with torch.no_grad():  # non-trivial weights everywhere (some start at zero)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def test_eager_scorer_equals_score_and_is_a_snapshot(model, toy_features):
    batch = toy_features.batch(slice(0, 50))
    scorer = compile_scorer(model, compile=False)
    want = score(model, batch)
    got = score(scorer, batch)
    assert list(got) == list(want) == [t.name for t in model.tasks]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    with torch.no_grad():
        model.heads.out.weight.add_(1.0)  # a later change to the model ...
    after = scorer(batch)
    for name in want:
        np.testing.assert_array_equal(after[name], want[name])  # ... does not reach the scorer
    assert not np.allclose(score(model, batch)["click"], want["click"])


def test_eager_scorer_shares_one_users_history(model, toy_features):
    request = _one_user_request(toy_features, slice(3000, 3040))
    got, want = compile_scorer(model, compile=False)(request), score(model, request)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7)


def _one_user_request(toy_features, rows: slice):
    """Candidates of one user, as ScoringContext.make_batch builds them: the user's history copied onto every row."""
    batch = toy_features.batch(rows, share_histories=False)
    i = int(np.flatnonzero(toy_features.hist_rows[rows.start : rows.stop].max(1) >= 0)[-1])  # a user with history
    batch.user = batch.user[i].repeat(len(batch))
    batch.hist_codes = batch.hist_codes[i : i + 1].repeat(len(batch), 1, 1)
    batch.hist_mask = batch.hist_mask[i : i + 1].repeat(len(batch), 1)
    return batch


def test_compiled_scorer_matches_eager(model, toy_features):
    scorer = compile_scorer(model)
    for rows in (slice(0, 64), slice(64, 64 + 64)):  # the second call reuses the graph
        batch = toy_features.batch(rows)
        got, want = scorer(batch), score(model, batch)
        assert scorer.compiled, "inductor could not compile (is a C++ compiler installed?)"
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6)
    # one user's candidates: the scorer embeds the shared history once (its own graph), same scores
    request = _one_user_request(toy_features, slice(3000, 3064))
    assert serving_layout(request).hist_codes.shape[0] == 1
    got, want = scorer(request), score(model, request)
    assert scorer.compiled
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6)


def _failing_compile(fn, **kwargs):
    def run(*args):
        raise RuntimeError("no C++ compiler found\nlong details")

    return run


def test_compile_failure_falls_back_to_eager_with_one_warning(model, toy_features, monkeypatch):
    monkeypatch.setattr(inference.torch, "compile", _failing_compile)
    scorer = compile_scorer(model)
    batch = toy_features.batch(slice(0, 30))
    with pytest.warns(RuntimeWarning, match=r"compiling the ranker failed \(RuntimeError: no C\+\+ compiler found\); scoring eagerly"):
        got = scorer(batch)
    assert not scorer.compiled and scorer.backbone == "torch"
    assert scorer._fast is scorer.model  # later calls run the eager reference ...
    assert all(layer.attention == "sdpa" for layer in scorer.model.backbone.layers)  # ... with SDPA
    want = score(model, batch)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7)


def test_bad_input_raises_its_own_error_and_keeps_the_compiled_path(model, toy_features, monkeypatch):
    monkeypatch.setattr(inference.torch, "compile", _failing_compile)
    scorer = compile_scorer(model)
    batch = toy_features.batch(slice(0, 30))
    batch.slice_codes = batch.slice_codes[:, :1]  # wrong number of code levels
    with pytest.raises(UsageError, match="codes have 1 levels, the model expects 3"):
        scorer(batch)
    assert scorer.compiled and scorer._compiled_fn is not None  # an input error is not a compiler failure
    assert all(layer.attention == "pairwise" for layer in scorer._fast.backbone.layers)
    assert all(layer.attention == "sdpa" for layer in model.backbone.layers)  # the trained model is not touched


def test_the_backbone_choice_is_explicit(model, toy_features, monkeypatch):
    assert compile_scorer(model, compile=False).backbone == "torch"  # the default runs anywhere
    with pytest.raises(UsageError, match="backbone must be one of"):
        compile_scorer(model, backbone="flash")
    monkeypatch.setattr(fused, "simd_available", lambda: False)  # a CPU where the kernel's SIMD loops do not run
    assert compile_scorer(model, compile=False, backbone="auto").backbone == "torch"
    with pytest.raises(UsageError, match="cannot fuse the ranker backbone: the (kernel's SIMD loops do not run here|C kernels were not built)"):
        compile_scorer(model, compile=False, backbone="fused")


@pytest.mark.skipif(not kernel_available(), reason="the fused backbone runs only where its SIMD loops do (not built, or no AVX2/FMA)")
def test_fused_scorer_matches_the_reference(model, toy_features):
    scorer = compile_scorer(model, compile=False, backbone="auto", threads=2)
    assert scorer.backbone == "fused" and isinstance(scorer._fast.backbone, FusedBackbone)
    assert scorer._fast.backbone.threads == 2
    assert type(scorer.model.backbone).__name__ == "Backbone" and type(model.backbone).__name__ == "Backbone"
    batch = toy_features.batch(slice(0, 50))
    got, want = scorer(batch), score(model, batch)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6)


def test_score_candidates_accepts_a_scorer(model, toy):
    ds, _ = toy
    ctx = ScoringContext.from_dataset(ds, model)
    rooms = np.array([1000, 1001, 1002, 5000])  # 5000: unknown room (cold)
    codes = np.array([[1, 2, 3], [0, 0, 0], [7, 6, 5], [1, 1, 1]])
    args = dict(user_ids=3, room_ids=rooms, slice_codes=codes, room_codes=codes, t_ms=1_700_000_100_000)
    want = score_candidates(model, ctx, **args)
    got = score_candidates(compile_scorer(model, compile=False), ctx, **args)
    np.testing.assert_array_equal(got["click"], want["click"])
    assert got["click"].shape == (4,)


def _compile_raising(exc: BaseException, seen: dict):
    def fake_compile(fn, **kwargs):
        seen.update(kwargs)

        def run(*args):
            raise exc

        return run

    return fake_compile


def test_only_compiler_failures_fall_back_to_eager(model, toy_features, monkeypatch):
    """A bug in the compiled call (here a KeyError) is not a compiler failure: it propagates as it
    is, with no warning, no eager retry, and the compiled path kept; compile options are passed once."""
    import warnings

    seen: dict = {}
    monkeypatch.setattr(inference.torch, "compile", _compile_raising(KeyError("a bug"), seen))
    scorer = compile_scorer(model, dynamic=True)
    assert seen == {"dynamic": True, "options": {"freezing": True, "cpp_wrapper": True}}
    eager_calls = []
    original = inference._probabilities
    monkeypatch.setattr(inference, "_probabilities", lambda *a: eager_calls.append(1) or original(*a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyError, match="a bug"):
            scorer(toy_features.batch(slice(0, 30)))
    assert eager_calls == [] and scorer.compiled and scorer._compiled_fn is not None
    assert all(layer.attention == "pairwise" for layer in scorer._fast.backbone.layers)


def test_a_compiler_that_cannot_run_falls_back_to_eager(model, toy_features, monkeypatch):
    monkeypatch.setattr(inference.torch, "compile", _compile_raising(FileNotFoundError("g++: not found"), {}))
    scorer = compile_scorer(model)
    batch = toy_features.batch(slice(0, 30))
    with pytest.warns(RuntimeWarning, match=r"compiling the ranker failed \(FileNotFoundError: g\+\+: not found\)"):
        got = scorer(batch)
    assert not scorer.compiled
    want = score(model, batch)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7)
