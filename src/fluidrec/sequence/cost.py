"""Measured cost of one training step per sample: peak activation memory and FLOPs, vs S.

Shape letters: B batch, S history length, L code levels.

- **Peak activation memory**: the CPU allocator's allocations and frees during one forward +
  backward, recorded by ``torch.profiler`` (``profile_memory=True``) and replayed in time
  order; the peak of the running sum is what the step needed on top of what existed
  before (parameters and their already-allocated gradients, which a warm-up step creates,
  are not counted). Divided by B.
- **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over the same forward + backward,
  with torch's own SDPA formulas registered for the CPU flash kernel (the counter has
  none for it and would count 0), plus the table lookups the counter does not see:
  2 x (rows gathered) x D for the forward sum and the backward scatter. Divided by B.
  Elementwise work (norms, softmax, the fold's weights) is not counted, for either arm.
- **Not seen**: semantic row ids are computed in numpy (``NgramSpec.flat_ids``), outside the
  torch allocator; that O(S) buffer is the same for every arm.

Histories are full (every slot a real event) so that S is the length actually processed.

Example:
    >>> m = measure_step(model, synthetic_batch(b=8, s=2048, levels=4, n_items=8000, codebook_size=8))
    >>> m["peak_bytes_per_sample"], m["flops_per_sample"]
"""

from __future__ import annotations

import numpy as np
import torch

from fluidrec.sequence.events import HistoryBatch


def synthetic_batch(b: int, s: int, *, levels: int, n_items: int, codebook_size: int, seed: int = 0) -> HistoryBatch:
    """A batch of ``b`` full histories of ``s`` random events (the shapes a real batch has)."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, codebook_size, (b, s, levels), generator=g)
    ts = torch.cumsum(torch.randint(1_000, 600_000, (b, s), generator=g), dim=1)
    return HistoryBatch(
        user=torch.arange(b), target_item=torch.randint(0, n_items, (b,), generator=g),
        target_codes=torch.randint(0, codebook_size, (b, levels), generator=g), label=(torch.rand(b, generator=g) < 0.3).float(),
        cold=torch.zeros(b, dtype=torch.bool), hist_item=torch.randint(0, n_items, (b, s), generator=g), hist_codes=codes,
        hist_watch=torch.rand(b, s, generator=g), hist_gap=torch.rand(b, s, generator=g) * 10, hist_ts=ts,
        hist_mask=torch.ones(b, s, dtype=torch.bool),
    )  # fmt: skip


def _step(model, batch) -> None:
    loss, _ = model.step(batch)
    loss.backward()


def peak_step_bytes(model, batch) -> int:
    """Peak bytes allocated on top of the baseline during one forward + backward (profiler replay)."""
    from torch.profiler import ProfilerActivity, profile

    _step(model, batch)  # warm-up: gradients exist afterwards, so the measured step only adds activations
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(model, batch)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for e in events:
        running += e.nbytes()  # > 0 allocation, < 0 free
        peak = max(peak, running)
    return int(peak)


def _sdpa_cpu_formulas() -> dict:
    """FLOP formulas for the CPU flash SDPA ops, which ``FlopCounterMode`` has none for (it counts 0)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def fwd(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    def bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, q, k, v)

    return {aten._scaled_dot_product_flash_attention_for_cpu: fwd, aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd}


def step_flops(model, batch) -> int:
    """FLOPs of one forward + backward (counted matmuls and attention, plus the table lookups)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_sdpa_cpu_formulas()) as counter:
        _step(model, batch)
    emb = model.embedding
    rows_per_item = 1 if emb.spec is None else emb.spec.levels
    gathered = int(batch.hist_mask.numel()) * rows_per_item + len(batch) * rows_per_item  # history + target rows
    return int(counter.get_total_flops()) + 2 * gathered * emb.dim


def step_seconds(model, batch, repeats: int) -> float:
    """Best wall time of ``repeats`` training steps (forward + backward), after the warm-up ones."""
    import time

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _step(model, batch)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_step(model, batch, repeats: int = 0) -> dict[str, float]:
    """Per-sample peak activation bytes, FLOPs and (``repeats`` > 0) wall seconds of one training step."""
    model.train()
    b = len(batch)
    out = {"peak_bytes_per_sample": peak_step_bytes(model, batch) / b, "flops_per_sample": step_flops(model, batch) / b}
    if repeats:
        out["seconds_per_sample"] = step_seconds(model, batch, repeats) / b
    model.zero_grad(set_to_none=True)
    return out


def fit_exponent(lengths: list[int], values: list[float]) -> float:
    """Slope of log(value) on log(S): the measured exponent of cost ~ S^k."""
    x, y = np.log(np.asarray(lengths, float)), np.log(np.asarray(values, float))
    return float(np.polyfit(x, y, 1)[0])


def cost_table(build, lengths: tuple[int, ...], *, batch: int, levels: int, n_items: int, codebook_size: int,
               arms: tuple[str, ...] = ("full", "compress"), repeats: int = 0, progress: bool = False) -> dict:
    """{arm: {S: measure_step(...)}} for fresh models ``build(arm)`` (seeded) at every S.

    Args:
        build: arm -> a SequenceRanker (fresh weights: the cost does not depend on them).
        lengths: S values; batch: B per measurement; levels, n_items, codebook_size: batch shapes.
        repeats: timed steps per measurement (0 = no timing).
    """
    from tqdm.auto import tqdm

    out: dict = {arm: {} for arm in arms}
    jobs = [(arm, s) for s in lengths for arm in arms]  # interleaved: load drifts hit both arms alike
    for arm, s in tqdm(jobs, desc="cost", disable=not progress, leave=False):
        torch.manual_seed(0)
        model = build(arm)
        out[arm][s] = measure_step(model, synthetic_batch(batch, s, levels=levels, n_items=n_items, codebook_size=codebook_size), repeats)
    return out
