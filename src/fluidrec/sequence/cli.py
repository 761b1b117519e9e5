"""``fluidrec sequence train|eval|reproduce``: long-history rankers on a dataset's video feed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fluidrec.utils.cli import add_json_flag, bounded_int, emit, finite_float, non_negative_int, output_dir, positive_int, render_kv, seed_int

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="canonical dataset holding video_impressions.parquet")
    codes = p.add_mutually_exclusive_group()
    codes.add_argument("--codes", default=None, help="directory with slice_codes.parquet (`fluidrec codes assign`)")
    codes.add_argument("--true-codes", action="store_true", help="codes from the world's true topic path (synthetic world)")
    p.add_argument("--test-days", type=finite_float, default=1.0, help="the last N days are the test split (default 1)")
    p.add_argument("--label", default="long_view", choices=("long_view", "like"), help="the engagement label (default long_view)")


def _load(args_or_cfg: dict):
    from fluidrec.sequence.data import load_event_log

    codes = args_or_cfg["codes"]
    return load_event_log(Path(args_or_cfg["dataset"]), Path(codes) if codes else None, args_or_cfg["test_days"],
                          true_codes=args_or_cfg["true_codes"], label=args_or_cfg["label"])


def _train(args: argparse.Namespace) -> int:
    from fluidrec.sequence.config import SequenceModelConfig, SequenceTrainConfig
    from fluidrec.sequence.train import evaluate, sample_targets, save_model, train_model
    from fluidrec.utils.io import write_json

    model_cfg = SequenceModelConfig(history=args.history, depth=args.depth, arm=args.arm, dim=args.dim, layers=args.layers,
                                    heads=args.heads, tokens=args.tokens, fold=args.fold, globals_=args.globals_, recent=args.recent,
                                    fold_mode=args.fold_mode, fold_level=args.fold_level)
    train_cfg = SequenceTrainConfig(seq_len=args.seq_len, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                    max_train=args.max_train, max_test=args.max_test, min_history=args.min_history, seed=args.seed)
    data = {"dataset": args.dataset, "codes": args.codes, "true_codes": args.true_codes, "test_days": args.test_days, "label": args.label}
    log = _load(data)
    train_idx, test_idx = sample_targets(log, train_cfg)
    with output_dir(args.out, args.force) as out:
        model, info = train_model(log, model_cfg, train_cfg, train_idx, progress=not args.no_progress)
        metrics = {**evaluate(model, log, test_idx, train_cfg.seq_len), "train": info, "table_rows": model.embedding.rows,
                   "table_bytes": model.embedding.table_bytes}
        write_json(out / CONFIG_FILE, {"data": data, "model": model_cfg, "train": train_cfg})
        save_model(model, log, out / MODEL_FILE, train_cfg)
        write_json(out / METRICS_FILE, metrics)
    emit({"out": str(out), "model": model_cfg.name, **{k: metrics[k] for k in ("auc", "gauc", "cold_auc", "logloss", "n", "n_cold")},
          "seconds": info["seconds"]}, args.json, lambda r: render_kv(r, f"sequence train {model_cfg.name}"))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from fluidrec.errors import UsageError
    from fluidrec.sequence.config import SequenceTrainConfig
    from fluidrec.sequence.train import check_log_matches, evaluate, load_model, sample_targets
    from fluidrec.utils.io import read_json

    run = Path(args.run)
    if not (run / CONFIG_FILE).is_file():
        raise UsageError(f"{run} is not a `fluidrec sequence train` run (no {CONFIG_FILE})")
    cfg = read_json(run / CONFIG_FILE)
    data = dict(cfg["data"])
    if args.dataset:
        data["dataset"] = args.dataset
    model, ckpt = load_model(run / MODEL_FILE)
    log = _load(data)
    check_log_matches(ckpt, log, run / MODEL_FILE)
    train_cfg = SequenceTrainConfig(**cfg["train"])
    _, test_idx = sample_targets(log, train_cfg)
    seq_len = args.seq_len or train_cfg.seq_len
    metrics = evaluate(model, log, test_idx, seq_len)
    emit({"run": str(run), "model": model.cfg.name, "seq_len": seq_len, **metrics}, args.json, lambda r: render_kv(r, "sequence eval"))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from fluidrec.sequence.config import sequence_config
    from fluidrec.sequence.run import reproduce_long_sequence

    results = reproduce_long_sequence(sequence_config(args.scale, seed=args.seed), Path(args.out),
                                      dataset=Path(args.dataset) if args.dataset else None, codes_dir=Path(args.codes) if args.codes else None,
                                      resume=args.resume, progress=not args.no_progress)
    emit(summary(results), args.json, lambda r: json.dumps(r, indent=1))
    return 0


def summary(results: dict) -> dict:
    """The one-screen summary of a reproduce run: Table 1 AUCs, the cost ratios, the budget curve."""
    t1 = {row: {a: round(c["auc"], 4) for a, c in cells.items()} for row, cells in results["table1"].items() if "skipped" not in cells}
    ratios = {k: round(v, 2) for k, v in results["costs"]["ratios"].items()}
    curve = {a: {"best_auc": d["best_auc"], "best_len": d["best_len"]} for a, d in results["curve"]["arms"].items()}
    return {"table1_auc": t1, "cost_ratios": ratios, "curve": curve, "seconds": results["seconds"]}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sequence", help="semantic-native long user histories and the compression transformer (semantic_native_long_sequence.txt)")
    ssub = p.add_subparsers(dest="sequence_command", metavar="COMMAND", parser_class=type(p))
    ssub.required = True

    t = ssub.add_parser("train", help="train one history ranker on a video feed and evaluate it on the test days")
    _data_args(t)
    t.add_argument("--out", required=True, help="run directory (model.pt, config.json, metrics.json)")
    t.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    t.add_argument("--history", default="semantic", choices=("id", "semantic"), help="item IDs or semantic code prefixes (default semantic)")
    t.add_argument("--depth", type=bounded_int(1, 16), default=2, help="semantic prefix depth d (default 2)")
    t.add_argument("--arm", default="compress", choices=("mean", "din", "full", "compress"), help="history encoder (default compress)")
    t.add_argument("--seq-len", type=bounded_int(1, 1 << 20), default=64, help="history length S (default 64)")
    t.add_argument("--tokens", type=bounded_int(1, 1 << 16), default=8, help="compression: folded tokens T (f = ceil((S - R) / T); default 8)")
    t.add_argument("--recent", type=bounded_int(0, 1 << 20), default=64,
                   help="compression: the R most recent events kept unfolded, the older S - R folded (default 64; 0 folds all)")
    t.add_argument("--fold", type=bounded_int(0, 1 << 20), default=0, help="compression: a fixed fold f instead of --tokens")
    t.add_argument("--fold-mode", default="prefix_window", choices=("window", "time", "prefix", "prefix_window"),
                   help="compression: fold the older events by windows of consecutive events split by code prefix (default; "
                        "plain windows on ID histories), by windows, by time spans, or by code prefix")
    t.add_argument("--fold-level", type=bounded_int(1, 16), default=1, help="compression, --fold-mode prefix|prefix_window: prefix levels (N^level + 1 tokens per window)")
    t.add_argument("--globals", dest="globals_", type=bounded_int(0, 1024), default=4, help="compression: global queries G (default 4)")
    t.add_argument("--dim", type=bounded_int(2, 4096), default=32)
    t.add_argument("--layers", type=bounded_int(1, 64), default=1)
    t.add_argument("--heads", type=bounded_int(1, 64), default=2)
    t.add_argument("--epochs", type=positive_int, default=1)
    t.add_argument("--batch-size", type=bounded_int(1, 1 << 20), default=256)
    t.add_argument("--lr", type=finite_float, default=1e-2)
    t.add_argument("--max-train", type=non_negative_int, default=0, help="cap on training targets (seeded sample; 0 = all)")
    t.add_argument("--max-test", type=non_negative_int, default=0, help="cap on test targets (seeded sample; 0 = all)")
    t.add_argument("--min-history", type=non_negative_int, default=1, help="targets with fewer history events are left out")
    t.add_argument("--seed", type=seed_int, default=0)
    t.add_argument("--no-progress", action="store_true")
    add_json_flag(t)
    t.set_defaults(func=_train)

    e = ssub.add_parser("eval", help="evaluate a trained run on its test split (optionally another dataset or S)")
    e.add_argument("--run", required=True, help="a `fluidrec sequence train` run directory")
    e.add_argument("--dataset", default=None, help="evaluate on this dataset instead of the run's (same items and codes)")
    e.add_argument("--seq-len", type=bounded_int(1, 1 << 20), default=None, help="history length at evaluation (default: the training S)")
    add_json_flag(e)
    e.set_defaults(func=_eval)

    r = ssub.add_parser("reproduce", help="the paper's tables: {ID, semantic d} x {mean, DIN, full, compression}, cost vs S, budget curve")
    r.add_argument("--scale", choices=("tiny", "small", "medium", "large"), default="small")
    r.add_argument("--seed", type=seed_int, default=0)
    r.add_argument("--out", required=True, help="run directory (results.json, report.md, figures/, config.json)")
    r.add_argument("--dataset", default=None, help="use this dataset's video_impressions.parquet instead of generating the world")
    r.add_argument("--codes", default=None, help="directory with slice_codes.parquet (default: the true topic path where the dataset has one)")
    r.add_argument("--resume", action="store_true", help="reuse the world of an earlier run in --out with the same config")
    r.add_argument("--no-progress", action="store_true")
    add_json_flag(r)
    r.set_defaults(func=_reproduce)
