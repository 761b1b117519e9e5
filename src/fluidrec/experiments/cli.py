"""``fluidrec reproduce``: the main job."""

from __future__ import annotations

import argparse

from fluidrec.experiments.config import ENCODER_PRESETS, TABLE3_ROWS
from fluidrec.utils.cli import add_json_flag, emit, non_negative_int, positive_int, seed_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run FLUID end to end on the synthetic world and write a report (what `make demo` runs)",
        description="world -> encoder -> embeddings -> codes (+ true-topic codes) -> truth rows -> every ranker arm "
        "(Table 3's neural rows once per ranker seed) -> lr and gbdt peers -> evaluation -> simulated online A/B -> "
        "encoder ablation with the lsa and oracle rows -> report.md + results.json + figures/.",
    )
    p.add_argument("--scale", default="small", choices=("tiny", "small", "medium", "large"), help="synthetic world size (default small)")
    p.add_argument("--seed", type=seed_int, default=0, help="seeds every stage, an integer in [0, 2^31) (default 0)")
    p.add_argument("--out", required=True, help="run directory (results, report, figures, cached stages)")
    p.add_argument("--resume", action="store_true", help="skip stages already finished in --out whose settings are unchanged (changed ones rerun, with every stage after them)")
    p.add_argument("--force", action="store_true", help="start over in an --out that already holds a run (without --resume)")
    p.add_argument(
        "--encoder-preset", default=None, choices=ENCODER_PRESETS,
        help="encoder whose embeddings become the codes: demo (1-layer MiniLM), tiny (tests) or lsa (TF-IDF + SVD); "
        "default tiny at --scale tiny, lsa otherwise (slightly ahead of the demo encoder at a tenth of the cost; docs/encoder.md)",
    )  # fmt: skip
    p.add_argument(
        "--seeds", type=positive_int, default=None,
        help="ranker seeds of Table 3's neural rows (seed, seed+1, ...; world, encoder and codes stay those of --seed); "
        "default 3, 2 at --scale tiny",
    )  # fmt: skip
    p.add_argument("--encoder-steps", type=non_negative_int, default=None, help="override the encoder's training steps")
    p.add_argument("--ablation-steps", type=non_negative_int, default=None, help="steps per encoder-ablation run (0 skips Table 6)")
    p.add_argument("--ablation-seeds", type=positive_int, default=None, help="seeds of every Table 6 row (default 3, 1 at --scale tiny)")
    p.add_argument("--ab-requests", type=non_negative_int, default=None, help="held-out requests replayed in the A/B test")
    p.add_argument(
        "--paper", choices=("fluid", "foresight", "long-sequence"), default="fluid",
        help="fluid: the FLUID tables (default, what `make demo` runs); foresight: the foresight paper's (same as `fluidrec foresight reproduce`); "
        "long-sequence: the semantic-native long-sequence paper's (same as `fluidrec sequence reproduce`)",
    )  # fmt: skip
    p.add_argument("--dataset", default=None, help="with --paper foresight: an imported KuaiLive-M3 dataset instead of the synthetic world")
    add_json_flag(p)
    p.set_defaults(func=_reproduce)

    bench = sub.add_parser("bench", help="benchmarks on real data")
    bsub = bench.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    bsub.required = True
    b = bsub.add_parser(
        "real",
        help="item ID vs ID+code vs code only on an imported dataset (warm and cold test items)",
        description="Embed item text with all-MiniLM-L6-v2, fit RQ-KMeans codes, train the id, id_code and code "
        "arms with the same ranker, and report AUC/GAUC on warm and cold test items.",
    )
    b.add_argument("--dataset", required=True, help="canonical dataset (from `fluidrec data import`)")
    b.add_argument("--out", required=True, help="output directory (results.json, results.md, models)")
    b.add_argument("--seed", type=seed_int, default=0, help="seed, an integer in [0, 2^31) (default 0)")
    b.add_argument("--holdout-items", type=float, default=0.2, help="share of items kept out of training (default 0.2)")
    b.add_argument("--lm-layers", type=int, default=None, help="MiniLM layers used for text embedding (default all 6)")
    b.add_argument("--max-rows", type=int, default=None, help="use only the first N impressions")
    add_json_flag(b)
    b.set_defaults(func=_bench_real)


def _reproduce(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from fluidrec.errors import UsageError
    from fluidrec.experiments.config import ReproduceConfig
    from fluidrec.experiments.reproduce import reproduce

    if args.dataset is not None and args.paper != "foresight":
        raise UsageError("--dataset needs --paper foresight (an imported KuaiLive-M3 dataset)")
    if args.paper == "foresight":
        from fluidrec.foresight.config import foresight_config
        from fluidrec.foresight.run import reproduce_foresight

        dataset = Path(args.dataset) if args.dataset else None
        results = reproduce_foresight(foresight_config(args.scale, seed=args.seed), Path(args.out), dataset=dataset,
                                      resume=args.resume, progress=not args.json)
        emit({k: results[k] for k in ("table1", "table3", "seconds") if k in results}, args.json, lambda r: json.dumps(r, indent=1))
        return 0
    if args.paper == "long-sequence":
        from fluidrec.sequence.cli import summary
        from fluidrec.sequence.config import sequence_config
        from fluidrec.sequence.run import reproduce_long_sequence

        results = reproduce_long_sequence(sequence_config(args.scale, seed=args.seed), Path(args.out), resume=args.resume, progress=not args.json)
        emit(summary(results), args.json, lambda r: json.dumps(r, indent=1))
        return 0
    cfg = ReproduceConfig.tiny(args.seed) if args.scale == "tiny" else ReproduceConfig(scale=args.scale, seed=args.seed)
    overrides = {
        "encoder_preset": args.encoder_preset, "seeds": args.seeds, "encoder_steps": args.encoder_steps,
        "ablation_steps": args.ablation_steps, "ablation_seeds": args.ablation_seeds, "ab_requests": args.ab_requests,
    }  # fmt: skip
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    results = reproduce(cfg, Path(args.out), resume=args.resume, force=args.force)
    emit({k: results[k] for k in ("table3", "table4", "table5", "table7", "seconds")}, args.json, _render)
    return 0


def _bench_real(args: argparse.Namespace) -> int:
    from fluidrec.experiments.real import RealBenchConfig, bench_real, render_real

    cfg = RealBenchConfig(seed=args.seed, holdout_items=args.holdout_items, lm_layers=args.lm_layers, max_rows=args.max_rows)
    result = bench_real(args.dataset, args.out, cfg, progress=not args.json)
    emit(result, args.json, render_real)
    return 0


def _render(r: dict) -> str:
    def num(x, digits: int = 4) -> str:
        return "—" if x is None or x != x else f"{x:.{digits}f}"

    lines = ["", "Table 3 (CTR, test day; mean ± sd over ranker seeds)", f"{'row':<17} {'AUC':<16} {'headroom':<9} {'logloss':<8} AUC new rooms"]
    t3 = r["table3"]
    for row in [k for k in TABLE3_ROWS if k in t3] + sorted(k for k in t3 if k not in TABLE3_ROWS):  # results.json sorts keys
        v = t3[row]
        auc = num(v["auc"]) if v.get("deterministic") else f"{num(v['auc'])} ± {num(v.get('auc_sd'))}"
        lines.append(f"{row:<17} {auc:<16} {num(v.get('headroom_share'), 3):<9} {num(v.get('logloss')):<8} {num(v['auc_new_room'])}")
    if r["table4"]:
        lines.append("\nTable 4 (simulated A/B, FLUID vs baseline)")
        for m, d in r["table4"]["fluid"].items():
            sig = "" if d["significant"] else "  n.s."
            lines.append(f"{m:<24} {d['delta'] * 100:+.2f}% [{d['ci_low'] * 100:+.2f}, {d['ci_high'] * 100:+.2f}]{sig}")
    lines.append(f"\ntotal seconds: {sum(r['seconds'].values()):.0f}")
    return "\n".join(lines)
