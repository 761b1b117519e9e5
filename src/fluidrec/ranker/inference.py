"""Low-latency scoring: a frozen, compiled copy of a trained ranker.

``compile_scorer(model)`` snapshots the model and compiles its forward pass with
``torch.compile`` (inductor, weights frozen as constants, a C++ wrapper around the
kernels). Eager PyTorch spends most of a 200-candidate request on per-op overhead for
these small tensors. In the compiled graph the backbone is one call of a C kernel
(``fluidrec.ranker.fused``: all layers, two threads over halves of the batch) where it was
built and the widths fit, else the torch backbone with its pairwise attention, which
fuses; the tokenizer and heads are inductor kernels. ``benchmarks/ranker.py`` prints both
latencies.

The first call for each batch size compiles (about 10-40 s on 2 cores; inductor caches
the result on disk for later processes). Serving usually scores a fixed number of
candidates, so graphs are specialised to the batch size by default (measured on the
earlier, all-torch scorer: p50 8.3 vs 8.9 ms for one graph shared by all sizes,
``dynamic=True``); torch's recompile limit
(8 graphs) then applies, past which calls run eagerly. A batch whose rows all have one
history (one user's candidates) is scored with that history stored once
(``serving_layout``), any other with one history per row: two graphs per size at most.
Compilation needs a C++ compiler; where it fails the scorer warns once and scores
eagerly, so a scorer always works.

Example:
    >>> scorer = compile_scorer(load_checkpoint("runs/fluid/model.pt"))
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

from fluidrec.ranker.batching import Batch
from fluidrec.ranker.fused import pack_backbone, unsupported_reason
from fluidrec.ranker.model import Ranker


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
    """torch's own ops on n threads for the block (None: unchanged). With the fused backbone
    running its own two threads, torch's OpenMP threads would spin-wait after each of their
    parallel regions and take the cores from it (measured 50% slower)."""
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

    Attributes:
        compiled: whether calls currently run the compiled graph.
        tasks: task names, in the order of the returned dict.
    """

    def __init__(self, model: Ranker, *, compile: bool = True, dynamic: bool = False) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tasks = tuple(t.name for t in self.model.tasks)
        self.compiled = compile
        self._compiled_fn: Callable[..., torch.Tensor] | None = None
        self._packed: torch.Tensor | None = None
        if compile:
            ir_log = logging.getLogger("torch._inductor.ir")
            if not any(isinstance(f, _DropShimNotice) for f in ir_log.filters):
                ir_log.addFilter(_DropShimNotice())
            bb = self.model.backbone
            self._packed = pack_backbone(bb) if unsupported_reason(bb) is None else None
            bb.fused_threads = torch.get_num_threads()
            self._set_compiled_forms(True)
            # freezing: weights become constants (prepacked for MKL); cpp_wrapper: the graph's kernel
            # calls run from C++ rather than Python. Given as compile options, not a config patch
            # around every call: the patch cost a tenth of a 200-candidate call and only matters
            # when a graph is compiled.
            self._compiled_fn = torch.compile(self._probabilities, dynamic=dynamic, options=_INDUCTOR_OPTIONS)

    def _set_compiled_forms(self, on: bool) -> None:
        """Compiled graphs run the backbone as one C call (fluidrec.ranker.fused) where it was
        built and fits, else the pairwise attention, which fuses; eager runs use SDPA."""
        bb = self.model.backbone
        bb.fused = self._packed if on else None
        for layer in bb.layers:
            layer.attention = "pairwise" if on else "sdpa"

    def _probabilities(self, *tensors: torch.Tensor) -> torch.Tensor:
        # The batch goes in as plain tensors and is rebuilt inside: guards on a dataclass's
        # attributes cost ~0.4 ms of a 7 ms request (measured), on positional tensors little.
        batch = Batch(**dict(zip(_BATCH_TENSORS, tensors)))
        return torch.sigmoid(self.model(batch).logits)  # (B, n_tasks)

    def _tensors(self, batch: Batch) -> list[torch.Tensor | None]:
        """The batch as positional inputs, in the serving layout; labels are not needed to score."""
        batch = serving_layout(batch)
        return [getattr(batch, name) for name in _BATCH_TENSORS]

    def _run(self, batch: Batch) -> torch.Tensor:
        if self._compiled_fn is None:
            return self._probabilities(*self._tensors(batch))
        threads = 1 if self.model.backbone.fused is not None else None
        # the layout's compares on one thread too: on torch's pool they cost more than they gain
        with _torch_threads(threads):
            tensors = self._tensors(batch)
            try:
                return self._compiled_fn(*tensors)
            except _COMPILE_ERRORS as err:
                failure = err
        # Compiling failed (at the first call of a graph), or torch refused the input: eager tells them apart
        self._set_compiled_forms(False)
        try:
            probs = self._probabilities(*tensors)  # an input error raises here, with its own message
        except BaseException:  # not handled here: restore the compiled path for the next, valid batch, re-raise
            self._set_compiled_forms(True)
            raise
        warnings.warn(
            f"fluidrec: compiling the ranker failed ({type(failure).__name__}: {str(failure).splitlines()[0][:200]}); "
            "scoring eagerly (slower, same results)",
            RuntimeWarning,
            stacklevel=3,
        )
        self._compiled_fn = None
        self.compiled = False
        return probs

    def __call__(self, batch: Batch) -> dict[str, np.ndarray]:
        """Task name -> (B,) predicted probabilities."""
        with torch.no_grad():
            p = self._run(batch).numpy()
        return {name: p[:, i] for i, name in enumerate(self.tasks)}


def serving_layout(batch: Batch) -> Batch:
    """``batch`` with its history stored once when every row has the same one (one user's
    candidates), else one history per row.

    A request scores one user's candidates, so the tokenizer embeds that user's K clicks
    once instead of once per candidate (``Batch.hist_group``). At K = 64 that took the
    tokenizer of a 200-candidate ``ranker_small`` call from 2.7 to 1.0 ms compiled, 8.7 to
    2.7 ms eager (measured, 1 thread). Only these two layouts reach the compiled graph: each
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


def compile_scorer(model: Ranker, *, compile: bool = True, dynamic: bool = False) -> Scorer:
    """A low-latency ``Scorer`` for a trained ranker (see the module docstring)."""
    return Scorer(model, compile=compile, dynamic=dynamic)
