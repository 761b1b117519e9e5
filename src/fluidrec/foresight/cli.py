"""``fluidrec foresight reproduce``: the foresight paper's tables on the synthetic world or imported KuaiLive-M3 data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fluidrec.data.world import SCALES
from fluidrec.utils.cli import emit


def _reproduce(args: argparse.Namespace) -> int:
    from fluidrec.foresight.config import foresight_config
    from fluidrec.foresight.run import reproduce_foresight

    cfg = foresight_config(args.scale, seed=args.seed)
    dataset = Path(args.dataset) if args.dataset else None
    results = reproduce_foresight(cfg, Path(args.out), dataset=dataset, resume=args.resume, progress=not args.no_progress)
    t3 = results["table3"]
    summary = {
        "out": args.out, "seconds": results["seconds"],
        "table3": {s: round(t3[s]["acc"], 4) for s in ("model", "last", "max_freq", "max_weight")},
        "table1_auc": {arm: {t: _round(v["auc"]) for t, v in d.items() if isinstance(v, dict)} for arm, d in results["table1"].items()},
    }
    emit(summary, args.json, lambda r: json.dumps(r, indent=1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("foresight", help="segment Sids, next-Sid prediction and foresight features (live_foresight_sid.txt)")
    fsub = p.add_subparsers(dest="foresight_command", metavar="COMMAND", parser_class=type(p))
    fsub.required = True
    r = fsub.add_parser("reproduce", help="world -> Sids -> next-Sid model vs rules -> MMoE arms -> report")
    r.add_argument("--scale", choices=SCALES, default="small", help="world size; with --dataset, the model sizes (default small)")
    r.add_argument("--dataset", default=None,
                   help="an imported KuaiLive-M3 dataset (fluidrec data import kuailive-m3) instead of the world: its segment "
                   "vectors become the Sids; Table 2 and Figure 3's moment kinds need the world and are skipped")
    r.add_argument("--seed", type=_seed, default=0)
    r.add_argument("--out", required=True, help="run directory (results.json, report.md, figures/, config.json)")
    r.add_argument("--resume", action="store_true", help="reuse the world and Sids of an earlier run in --out with the same config")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--json", action="store_true", help="one-line JSON summary on stdout")
    r.set_defaults(func=_reproduce)


def _round(x: float) -> float | None:
    return None if x != x else round(x, 4)  # NaN: a task with one class in the test part


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v
