"""Compression transformer vs full self-attention: peak activation memory and FLOPs per sample vs S.

The figures we claim (issue 17): at S = 2048 the compression model (GACT: the R latest
events kept as they are, the older ones folded into T tokens, + G global queries) needs
>= 10x less peak activation memory than full self-attention over the uncompressed history
(torch SDPA), and its cost grows at most linearly in S (fitted exponent <= 1.1 over S in
512..8192).

Both models are the long-sequence run's (``sequence_config("small").model``: semantic
histories at depth 4, D = 32, one attention layer, R = 64, T = 8, G = 4) with fresh weights (the
cost does not depend on them), on batches of full histories. Measured per training step
(forward + backward), per sample (``fluidrec.sequence.cost``): peak memory from the torch
CPU allocator's events (``torch.profiler``, ``profile_memory=True``), FLOPs from
``torch.utils.flop_counter.FlopCounterMode`` (+ table lookups). ``cost_exponent`` is the
larger of the compression model's memory and FLOPs exponents.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/sequence.py --json
    OMP_NUM_THREADS=1 python benchmarks/sequence.py --json --tokens 16          # another compression setting
"""

from __future__ import annotations

import argparse
import dataclasses
import json

MEM_TARGET = 10.0
EXPONENT_TARGET = 1.1


def main() -> None:
    from fluidrec.sequence.config import sequence_config
    from fluidrec.sequence.cost import cost_table, fit_exponent
    from fluidrec.sequence.models import build_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="128,512,2048,8192", help="comma-separated S values")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    # the compression model's settings (default: the run's); the full-attention model ignores them
    ap.add_argument("--tokens", type=int, default=None, help="T folded tokens (per kind with --fold-mode prefix_window)")
    ap.add_argument("--recent", type=int, default=None, help="R events kept unfolded")
    ap.add_argument("--globals", dest="globals_", type=int, default=None, help="G global queries")
    ap.add_argument("--fold-mode", default=None, choices=("window", "time", "prefix", "prefix_window"))
    ap.add_argument("--fold-level", type=int, default=None, help="prefix levels of the prefix folds")
    args = ap.parse_args()
    lengths = tuple(int(s) for s in args.lengths.split(","))

    chosen = {k: getattr(args, k) for k in ("tokens", "recent", "globals_", "fold_mode", "fold_level") if getattr(args, k) is not None}
    base = dataclasses.replace(sequence_config("small").model, history="semantic", depth=4, **chosen)
    n_items, codebook, levels = 8000, 8, 4  # the small world's feed: ~8k videos, true codes N = 8, L = 4

    def build(arm: str):
        return build_model(dataclasses.replace(base, arm=arm), n_items=n_items, codebook_size=codebook)

    table = cost_table(build, lengths, batch=args.batch, levels=levels, n_items=n_items, codebook_size=codebook, repeats=1)
    fit = [s for s in lengths if s >= 512] or list(lengths)
    exps = {arm: {k: fit_exponent(fit, [table[arm][s][k] for s in fit]) for k in ("peak_bytes_per_sample", "flops_per_sample", "seconds_per_sample")}
            for arm in table}
    ref = 2048 if 2048 in lengths else lengths[-1]
    out = {
        "model": base.name, "tokens": base.tokens, "recent": base.recent, "globals": base.globals_, "fold_mode": base.fold_mode,
        "fold_level": base.fold_level, "batch": args.batch, "lengths": list(lengths),
        "per_sample": {arm: {str(s): v for s, v in d.items()} for arm, d in table.items()},
        f"peak_mem_ratio_{ref}": table["full"][ref]["peak_bytes_per_sample"] / table["compress"][ref]["peak_bytes_per_sample"],
        f"flops_ratio_{ref}": table["full"][ref]["flops_per_sample"] / table["compress"][ref]["flops_per_sample"],
        "cost_exponent": max(exps["compress"]["peak_bytes_per_sample"], exps["compress"]["flops_per_sample"]),
        "exponents": exps, "exponent_lengths": fit, "mem_target": MEM_TARGET, "exponent_target": EXPONENT_TARGET,
    }
    out["meets_mem_target"] = out.get("peak_mem_ratio_2048", 0.0) >= MEM_TARGET
    out["meets_exponent_target"] = out["cost_exponent"] <= EXPONENT_TARGET
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
