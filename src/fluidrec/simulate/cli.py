"""``fluidrec simulate ab``: the simulated online A/B test on a finished main-job run.

    fluidrec simulate ab --run runs/demo --mode closed --assignment user
    fluidrec simulate ab --run runs/demo --mode replay --json
"""

from __future__ import annotations

import argparse

from fluidrec.utils.cli import add_json_flag, emit, finite_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulated online experiments on a main-job run")
    ssub = p.add_subparsers(dest="simulate_command", metavar="COMMAND", parser_class=type(p))
    ssub.required = True
    ab = ssub.add_parser(
        "ab",
        help="A/B test of the Table 3 arms against the world's ground truth",
        description="replay: frozen arms rank held-out requests with their logged histories. closed: every test-day "
        "request in event time; each arm learns online from the impressions it served (oracle and random ride along).",
    )
    ab.add_argument("--run", required=True, help="a finished `fluidrec reproduce` run directory (world, codes, rankers)")
    ab.add_argument("--mode", choices=("closed", "replay"), default="closed", help="closed loop (default) or replay")
    ab.add_argument("--assignment", choices=("user", "mirror"), default="user", help="closed loop: hash split of users (default) or every arm serves everyone")
    ab.add_argument("--window-minutes", type=finite_float, default=None, help="closed loop: online-training interval (default: the run's)")
    ab.add_argument("--requests", type=positive_int, default=None, help="replay: requests replayed (default: the run's)")
    add_json_flag(ab)
    ab.set_defaults(func=_ab)


def _ab(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from fluidrec.errors import UsageError
    from fluidrec.experiments.config import ReproduceConfig
    from fluidrec.experiments.online import run_closed_ab, run_online_ab
    from fluidrec.experiments.reproduce import RunPaths, _features
    from fluidrec.utils.io import read_json, write_json

    paths = RunPaths(Path(args.run))
    if not (paths.root / "config.json").is_file() or not paths.ranker("baseline").is_dir():
        raise UsageError(f"{paths.root} is not a finished main-job run (no config.json or rankers/baseline); run `fluidrec reproduce` first")
    cfg = ReproduceConfig(**read_json(paths.root / "config.json")["reproduce"])
    if args.window_minutes is not None:
        cfg = dataclasses.replace(cfg, closed_window_minutes=args.window_minutes)
    if args.requests is not None:
        cfg = dataclasses.replace(cfg, ab_requests=args.requests)
    features = _features(cfg, paths)
    if args.mode == "closed":
        result = run_closed_ab(cfg, paths, features, assignment=args.assignment, progress=not args.json)
        out = paths.root / f"ab_closed_{args.assignment}.json"
    else:
        result = run_online_ab(cfg, paths, features)
        out = paths.root / "ab_replay.json"
    write_json(out, result)
    emit(result, args.json, lambda r: render_ab(r, out))
    return 0


def render_ab(r: dict, out) -> str:
    """Each arm's change vs the control with its 95% CI, half-width and minimum detectable effect."""
    lines = [f"{r['n_requests']:,} requests, {r['n_users']:,} users" + (f", users per arm {r['users_per_arm']}" if "users_per_arm" in r else "")]
    for arm, metrics in r["arms"].items():
        lines.append(f"\n{arm} vs baseline")
        for m, d in metrics.items():
            sig = "" if d["significant"] else "  n.s."
            lines.append(
                f"  {m:<33} {d['delta'] * 100:+7.2f}% [{d['ci_low'] * 100:+.2f}, {d['ci_high'] * 100:+.2f}]"
                f"  half-width {d['half_width'] * 100:.1f} pts, MDE {d['mde'] * 100:.1f} pts{sig}"
            )
    lines.append(f"\nwritten: {out}")
    return "\n".join(lines)
