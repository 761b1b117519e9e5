"""``fluidrec world generate``: write the synthetic world as a canonical dataset."""

from __future__ import annotations

import argparse

from fluidrec.utils.cli import add_json_flag, emit, output_dir, render_kv, seed_int


def register(subparsers) -> None:
    p = subparsers.add_parser("world", help="the synthetic livestream world (embedded default dataset)")
    sub = p.add_subparsers(dest="world_command", metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = True
    g = sub.add_parser(
        "generate",
        help="generate a world and write it as a canonical dataset",
        description="Generate the synthetic livestream world (rooms, slices with text and frames, short videos, "
        "users, impressions with labels from the ground truth, queries) into DIR. The hidden truth goes to "
        "DIR/world/ and is read by fluidrec.data.world.World.load(DIR). Same seed, same bytes.",
    )
    g.add_argument("--scale", required=True, help="size preset: tiny (seconds, tests), small (demo, ~1M impressions), "
                   "medium (~10M), large (~100M)")
    g.add_argument("--seed", type=seed_int, default=0, help="random seed, an integer in [0, 2^31) (default 0)")
    g.add_argument("--out", required=True, metavar="DIR", help="output directory (must be empty unless --force)")
    g.add_argument("--force", action="store_true", help="replace what a non-empty output directory holds (the old dataset stays whole until the new one is)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g.add_argument("--video-feed", action="store_true", help="also write the short-video feed with long per-user "
                   "watch histories (video_impressions.parquet; docs/world.md, 'Video feed'); off by default")
    add_json_flag(g)
    g.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from fluidrec.data.world.config import WorldConfig
    from fluidrec.data.world.generate import generate_world_summary

    feed = {"video_feed": True} if args.video_feed else {}  # absent when off: the default world's config is unchanged
    cfg = WorldConfig.for_scale(args.scale, seed=args.seed, **feed)  # ConfigError (exit 2) on an unknown scale
    with output_dir(args.out, args.force) as out:
        s = generate_world_summary(cfg, out, progress=not args.no_progress)
    result = {"out": str(s.out_dir), "scale": cfg.scale, "seed": cfg.seed, "rows": s.rows,
              "ctr": round(s.ctr, 5), "seconds": round(s.seconds, 2)}
    if s.video_feed is not None:
        result["video_feed"] = s.video_feed
    emit(result, args.json, _render)
    return 0


def _render(r: dict) -> str:
    flat = {f"rows.{k}": v for k, v in r["rows"].items()}
    text = render_kv({"out": r["out"], "scale": r["scale"], "seed": r["seed"], **flat, "ctr": r["ctr"],
                      "seconds": r["seconds"]}, title="synthetic world written")
    if "video_feed" in r:
        from fluidrec.data.world.video_feed import stats_line

        text += "\n" + stats_line(r["video_feed"])
    return text
