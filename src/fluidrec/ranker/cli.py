"""``fluidrec ranker`` subcommands: train one arm, evaluate a trained model, render diagnostics figures.

``--codes DIR`` holds ``slice_codes.parquet`` and ``room_codes.parquet`` (docs/CONTRACTS.md).
``--arm lr|gbdt`` trains a peer arm (``fluidrec.ranker.peers``); ``eval`` recognises a peer
run directory by its ``peer.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fluidrec.errors import UsageError
from fluidrec.ranker.names import PEER_ARMS
from fluidrec.utils.cli import add_json_flag, emit, finite_float, positive_int, prepare_out_dir, render_kv, seed_int

SLICE_CODES = "slice_codes.parquet"
ROOM_CODES = "room_codes.parquet"
PRESETS = ("demo", "small")  # model size presets: ranker_demo(), ranker_small()


class _DeprecatedAlias(argparse.Action):
    """``--config``, the earlier name of ``--preset``: still works, with a note on stderr."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        import sys

        print(f"fluidrec: {option_string} is deprecated, use --preset (same values)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _codes_paths(codes_dir: str) -> tuple[Path, Path]:
    d = Path(codes_dir)
    if not d.is_dir():
        raise UsageError(f"--codes {d} is not a directory (expected {SLICE_CODES} and {ROOM_CODES} inside)")
    paths = d / SLICE_CODES, d / ROOM_CODES
    for p in paths:
        if not p.exists():
            raise UsageError(f"--codes {d} has no {p.name}")
    return paths


def _train_peer(args: argparse.Namespace) -> int:
    from fluidrec.ranker.features import FeatureConfig
    from fluidrec.ranker.peers import PeerConfig, train_peer

    slice_codes, room_codes = _codes_paths(args.codes)
    out = prepare_out_dir(args.out, args.force)
    feats = FeatureConfig(test_days=args.test_days, test_fraction=args.test_fraction)
    cfg = PeerConfig(seed=args.seed, max_train_rows=args.max_rows, features=feats, progress=not args.quiet)
    print(f"wrote {train_peer(args.arm, args.dataset, slice_codes, room_codes, out, cfg, cache_dir=args.cache)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from fluidrec.ranker.arms import ARMS, build_arm
    from fluidrec.ranker.features import FeatureConfig
    from fluidrec.ranker.train import ranker_demo, ranker_small, train_arm

    if args.arm in PEER_ARMS:
        return _train_peer(args)
    if args.arm not in ARMS:
        raise UsageError(f"unknown arm {args.arm!r}; choose one of: {', '.join((*ARMS, *PEER_ARMS))}")
    build_arm(args.arm)  # fail on a bad arm name before touching the output directory
    slice_codes, room_codes = _codes_paths(args.codes)
    out = prepare_out_dir(args.out, args.force)
    cfg = ranker_demo() if args.preset == "demo" else ranker_small()
    feats = dataclasses.replace(cfg.features, test_fraction=args.test_fraction, test_days=args.test_days)
    cfg = dataclasses.replace(
        cfg,
        seed=args.seed,
        epochs=args.epochs,
        features=FeatureConfig(**dataclasses.asdict(feats)),
        max_train_rows=args.max_rows,
        batch_size=args.batch_size or cfg.batch_size,
        progress=not args.quiet,
    )
    ckpt = train_arm(args.arm, args.dataset, slice_codes, room_codes, out, cfg, cache_dir=args.cache)
    print(f"wrote {ckpt}")
    return 0


def _render_eval(r: dict) -> str:
    lines = [f"arm: {r.get('arm')}   test impressions: {r['n']}", f"{'':<12}{'task':<10}{'auc':>8}{'gauc':>8}{'logloss':>9}"]
    tasks = [k for k, v in r.items() if isinstance(v, dict) and "auc" in v]
    for scope, res in [("all", r), *r["buckets"].items()]:
        for t in tasks:
            m = res[t]
            lines.append(f"{scope:<12}{t:<10}{m['auc']:>8.4f}{m['gauc']:>8.4f}{m['logloss']:>9.4f}")
    return "\n".join(lines)


def _eval(args: argparse.Namespace) -> int:
    from fluidrec.ranker.peer_models import is_peer_dir

    if args.protocol == "streaming":
        from fluidrec.errors import UsageError
        from fluidrec.ranker.streaming import evaluate_streaming

        if is_peer_dir(args.model) or args.codes:
            raise UsageError("--protocol streaming keeps training the token ranker on its own training codes: it takes neither a peer (a batch fit) nor --codes")
        emit(evaluate_streaming(args.model, args.dataset, cache_dir=args.cache), args.json, _render_eval)
        return 0
    if is_peer_dir(args.model):
        from fluidrec.ranker.peers import evaluate_peer as evaluate
    else:
        from fluidrec.ranker.evaluate import evaluate_model as evaluate
    sc, rc = _codes_paths(args.codes) if args.codes else (None, None)
    emit(evaluate(args.model, args.dataset, sc, rc, cache_dir=args.cache), args.json, _render_eval)
    return 0


def _figures(args: argparse.Namespace) -> int:
    from fluidrec.ranker.diagnostics import write_figures

    made = write_figures(args.model)
    print(render_kv({p.name: str(p) for p in made}, "figures") if made else "no diagnostics to plot")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from fluidrec.ranker.arms import ARMS

    p = subparsers.add_parser("ranker", help="train and evaluate token-based rankers (ID, fusion and ID-free arms)")
    sub = p.add_subparsers(dest="ranker_command", metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = True

    t = sub.add_parser("train", help="train one arm on a dataset in time order")
    t.add_argument("--dataset", required=True, help="canonical dataset directory")
    t.add_argument("--codes", required=True, help=f"directory with {SLICE_CODES} and {ROOM_CODES}")
    t.add_argument("--arm", required=True, help=f"one of: {', '.join(ARMS)}; peers: {', '.join(PEER_ARMS)}")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--preset", choices=PRESETS, default="demo", help="model size preset (default demo)")
    t.add_argument("--config", dest="preset", choices=PRESETS, action=_DeprecatedAlias, help=argparse.SUPPRESS)
    t.add_argument("--seed", type=seed_int, default=0, help="random seed, an integer in [0, 2^31) (default 0)")
    t.add_argument("--epochs", type=positive_int, default=1, help="passes over the stream (default 1, online)")
    t.add_argument("--batch-size", type=positive_int, default=None)
    t.add_argument("--max-rows", type=positive_int, default=None, help="train on the first N training rows only")
    t.add_argument("--test-days", type=finite_float, default=1.0, help="last days held out as test (default 1)")
    t.add_argument("--test-fraction", type=finite_float, default=None, help="hold out the last fraction instead")
    t.add_argument("--cache", default=None, help="feature cache directory (shared by arms)")
    t.add_argument("--force", action="store_true", help="reuse a non-empty output directory")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="AUC/GAUC/logloss per task and cold-start bucket on the test period")
    e.add_argument("--model", required=True, help="directory written by `ranker train`")
    e.add_argument("--dataset", required=True)
    e.add_argument("--codes", default=None, help="codes directory (default: the one used in training)")
    e.add_argument("--cache", default=None, help="feature cache directory")
    e.add_argument(
        "--protocol", choices=("frozen", "streaming"), default="frozen",
        help="frozen: score the test period with the trained model (default); streaming: test-then-train, each batch scored before the model trains on it",
    )  # fmt: skip
    add_json_flag(e)
    e.set_defaults(func=_eval)

    f = sub.add_parser("figures", help="render the diagnostics figures (ID norm vs age, gate vs ID norm)")
    f.add_argument("--model", required=True)
    f.set_defaults(func=_figures)
