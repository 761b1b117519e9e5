"""Low-latency scoring: a frozen, compiled copy of a trained ranker.

``compile_scorer(model)`` snapshots the model and compiles its forward pass with
``torch.compile`` (inductor, weights frozen as constants, a C++ wrapper around the
kernels). Eager PyTorch spends most of a 200-candidate request on per-op overhead for
these small tensors. Which backbone the compiled copy runs is chosen explicitly:

- ``backbone="torch"`` (default): the torch backbone with its pairwise attention
  (``fluidrec.ranker.backbone.with_attention``), which fuses under inductor; runs anywhere.
- ``backbone="fused"`` (opt-in): the whole backbone as one C call
  (``fluidrec.ranker.fused.fuse_backbone``: all layers, the kernel's own threads over
  slices of the batch). Refused with the reason where its SIMD loops do not run or the
  widths do not fit (``fluidrec.ranker.fused.unsupported_reason``).
- ``backbone="auto"``: ``"fused"`` where it can run, else ``"torch"``; ``Scorer.backbone``
  says which was chosen.

The tokenizer and heads are inductor kernels either way. The trained model is never
changed: the scorer keeps a frozen eager copy (the reference, SDPA attention) and a fast
copy with the swapped backbone. ``benchmarks/ranker.py`` prints the latencies.

The first call for each batch size compiles (tens of seconds on 2 cores; inductor caches
the result on disk for later processes). Serving usually scores a fixed number of
candidates, so graphs are specialised to the batch size by default (one graph shared by
all sizes, ``dynamic=True``, was slower per call on the earlier, all-torch scorer); torch's recompile limit
(8 graphs) then applies, past which calls run eagerly. A batch whose rows all have one
history (one user's candidates) is scored with that history stored once
(``serving_layout``), any other with one history per row: two graphs per size at most.
Compilation needs a C++ compiler; where it fails the scorer warns once and scores
eagerly with the reference copy, so a scorer always works.

Example:
    >>> scorer = compile_scorer(load_checkpoint("runs/fluid/model.pt"))
    >>> fast = compile_scorer(model, backbone="auto", threads=2)   # the C backbone where its SIMD path runs
    >>> p = scorer(batch)["click"]                      # (B,) probabilities
    >>> p = score_candidates(scorer, ctx, user_ids=7, room_ids=live, slice_codes=sc, room_codes=rc, t_ms=t)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import warnings
from typing import Callable

import numpy as np
import torch

from fluidrec.errors import UsageError
from fluidrec.ranker.backbone import with_attention
from fluidrec.ranker.batching import Batch
from fluidrec.ranker.fused import fuse_backbone, unsupported_reason
from fluidrec.ranker.model import Ranker


BACKBONES = ("torch", "fused", "auto")  # see the module docstring
_BATCH_TENSORS = tuple(f.name for f in dataclasses.fields(Batch) if f.name != "labels")
_INDUCTOR_OPTIONS = {"freezing": True, "cpp_wrapper": True}
# What a failed compilation raises: torch wraps compiler failures in RuntimeError subclasses
# (torch._dynamo.exc.TorchDynamoException: BackendCompilerFailed, InductorError; and
# torch._inductor.exc.CppCompileError, InvalidCxxCompiler), and OSError is a compiler or cache
# directory that cannot be run or written before torch wraps it. Anything else (a bug, a
# KeyboardInterrupt, an input error such as UsageError) propagates as it is.
_COMPILE_ERRORS = (RuntimeError, OSError)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """torch's own ops on n threads for the block (None: unchanged); see ``Scorer._run``."""
    if n is None or n == torch.get_num_threads():  # the usual case when serving: nothing to switch
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _DropShimNotice(logging.Filter):
    """Hides inductor's per-compile notice that embedding lookups run through its proxy
    executor under the C++ wrapper (expected here, and not actionable by a user)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "missing a c-shim implementation" not in record.getMessage()


class Scorer:
    """Task probabilities for batches, from a frozen copy of a ranker (compiled when possible).

    Args:
        model: a trained ranker; later changes to it do not reach the scorer (snapshot).
        compile: compile with inductor (False: eager, same numbers up to float rounding).
        dynamic: one compiled graph for every batch size instead of one per size (slower).
        backbone: ``"torch"``, ``"fused"`` or ``"auto"`` (see the module docstring).
        threads: threads of the fused backbone kernel (None: ``torch.get_num_threads()``).

    Attributes:
        compiled: whether calls currently run the compiled graph.
        backbone: the backbone the fast copy runs, ``"torch"`` or ``"fused"``.
        tasks: task names, in the order of the returned dict.

    Raises:
        UsageError: an unknown ``backbone``, or ``"fused"`` where the kernel cannot run.
    """

    def __init__(
        self, model: Ranker, *, compile: bool = True, dynamic: bool = False, backbone: str = "torch", threads: int | None = None
    ) -> None:
        if backbone not in BACKBONES:
            raise UsageError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.model = _frozen(copy.deepcopy(model))  # the eager reference (SDPA), also the fallback
        if backbone == "auto":
            backbone = "fused" if unsupported_reason(self.model.backbone) is None else "torch"
        self.backbone = backbone
        self.tasks = tuple(t.name for t in self.model.tasks)
        self.compiled = compile
        self._fast = _fast_copy(self.model, backbone, compile, torch.get_num_threads() if threads is None else threads)
        self._compiled_fn: Callable[..., torch.Tensor] | None = None
        if compile:
            ir_log = logging.getLogger("torch._inductor.ir")
            if not any(isinstance(f, _DropShimNotice) for f in ir_log.filters):
                ir_log.addFilter(_DropShimNotice())
            # freezing: weights become constants (prepacked for MKL); cpp_wrapper: the graph's kernel
            # calls run from C++ rather than Python. Given as compile options, not a config patch
            # around every call: the patch cost a visible share of a 200-candidate call and only
            # matters when a graph is compiled.
            self._compiled_fn = torch.compile(self._fast_probabilities, dynamic=dynamic, options=_INDUCTOR_OPTIONS)

    def _fast_probabilities(self, *tensors: torch.Tensor) -> torch.Tensor:
        return _probabilities(self._fast, tensors)

    def _tensors(self, batch: Batch) -> list[torch.Tensor | None]:
        """The batch as positional inputs, in the serving layout; labels are not needed to score."""
        batch = serving_layout(batch)
        return [getattr(batch, name) for name in _BATCH_TENSORS]

    def _run(self, batch: Batch) -> torch.Tensor:
        # The fused kernel runs its own threads; torch's OpenMP threads would spin-wait after each
        # of their parallel regions and take the cores from it. The layout's compares run on one
        # thread too: on torch's pool they cost more than they gain.
        with _torch_threads(1 if self.backbone == "fused" else None):
            tensors = self._tensors(batch)
            if self._compiled_fn is None:
                return _probabilities(self._fast, tensors)
            try:
                return self._compiled_fn(*tensors)
            except _COMPILE_ERRORS as err:
                failure = err
        # Compiling failed (at the first call of a graph), or torch refused the input: the eager
        # reference tells them apart (an input error raises here, with its own message, and the
        # compiled path stays for the next, valid batch)
        probs = _probabilities(self.model, tensors)
        warnings.warn(
            f"fluidrec: compiling the ranker failed ({type(failure).__name__}: {str(failure).splitlines()[0][:200]}); "
            "scoring eagerly (slower, same results)",
            RuntimeWarning,
            stacklevel=3,
        )
        self._compiled_fn = None
        self._fast = self.model
        self.compiled = False
        self.backbone = "torch"
        return probs

    def __call__(self, batch: Batch) -> dict[str, np.ndarray]:
        """Task name -> (B,) predicted probabilities."""
        with torch.no_grad():
            p = self._run(batch).numpy()
        return {name: p[:, i] for i, name in enumerate(self.tasks)}


def _frozen(model: Ranker) -> Ranker:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _probabilities(model: Ranker, tensors: tuple | list) -> torch.Tensor:
    # The batch goes in as plain tensors and is rebuilt inside: guards on a dataclass's
    # attributes cost a visible share of a request (measured), on positional tensors little.
    batch = Batch(**dict(zip(_BATCH_TENSORS, tensors)))
    return torch.sigmoid(model(batch).logits)  # (B, n_tasks)


def _fast_copy(model: Ranker, backbone: str, compile: bool, threads: int) -> Ranker:
    """``model`` with its backbone swapped for the fast one (tokenizer and heads shared, not copied).

    Eager torch scoring keeps the reference itself: the pairwise attention only pays once compiled.
    """
    if backbone == "torch" and not compile:
        return model
    fast_bb = fuse_backbone(model.backbone, threads=threads) if backbone == "fused" else with_attention(model.backbone, "pairwise")
    fast = Ranker(model.tokenizer, fast_bb, model.heads, model.room_vocab.numpy())
    fast.spec = model.spec
    return _frozen(fast)


def serving_layout(batch: Batch) -> Batch:
    """``batch`` with its history stored once when every row has the same one (one user's
    candidates), else one history per row.

    A request scores one user's candidates, so the tokenizer embeds that user's K clicks
    once instead of once per candidate (``Batch.hist_group``): most of the tokenizer's work
    at K = 64 (docs/ranker.md has the figures). Only these two layouts reach the compiled graph: each
    is one graph per batch size with static shapes, where a general grouping would make the
    grid width data-dependent. Both give the same scores.
    """
    if batch.hist_group is not None:
        return batch if batch.hist_codes.shape[0] == 1 else batch.with_row_histories()
    codes, mask = batch.hist_codes, batch.hist_mask  # (B, K, L), (B, K)
    if len(batch) < 2 or bool((codes != codes[:1]).any() | (mask != mask[:1]).any()):
        return batch
    one = torch.zeros(len(batch), dtype=torch.int64, device=codes.device)  # every row reads history 0
    # copies, not views of the (B, K, L) rows: whether an input is a view is part of the compiled
    # graph's guards, so a view here and a plain tensor from another caller (fluidrec.serve's
    # request batches) would each compile a graph (a stall of tens of seconds at the first request)
    return dataclasses.replace(batch, hist_codes=codes[:1].clone(), hist_mask=mask[:1].clone(), hist_group=one)


def compile_scorer(
    model: Ranker, *, compile: bool = True, dynamic: bool = False, backbone: str = "torch", threads: int | None = None
) -> Scorer:
    """A low-latency ``Scorer`` for a trained ranker (arguments: see ``Scorer`` and the module docstring)."""
    return Scorer(model, compile=compile, dynamic=dynamic, backbone=backbone, threads=threads)
