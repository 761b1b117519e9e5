"""``fluidrec data import SOURCE ...``: turn a published log into a canonical dataset.

``fluidrec.data.cli`` (the ``data`` group) calls :func:`register_import` with its
subparsers. Handlers stay thin: parse -> build options -> call one importer -> print.

Examples:
    fluidrec data import microlens --path ../shared/data/microlens_50k --out runs/ml50k --negatives 4
    fluidrec data import mind --path MINDsmall_train --out runs/mind
    fluidrec data import kuailive-m3 --path /data/klm3 --out runs/klm3 --max-users 2000
    fluidrec data import csv --interactions log.csv --items items.csv --user-col user \\
        --item-col item --time-col ts --text-cols title,description --out runs/mine
"""

from __future__ import annotations

import argparse

from fluidrec.data.importers.common import MAX_NEGATIVES
from fluidrec.data.validate import TIME_MAX_MS
from fluidrec.errors import UsageError
from fluidrec.utils.cli import add_json_flag, bounded_int, emit, finite_float, non_negative_int, output_dir, positive_int, render_kv, seed_int

SOURCES = ("microlens", "kuailive-m3", "mind", "csv")


def _delimiter(text: str) -> str:
    value = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(text, text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (or '\\t' / 'tab'), got {text!r}")
    return value


def register_import(dsub: argparse._SubParsersAction) -> None:
    """Add the ``import`` subcommand to the ``data`` command group."""
    p = dsub.add_parser(
        "import",
        help="import a published log (microlens, kuailive-m3, mind) or your own csv as a canonical dataset",
        description="Import a published log or your own CSV into a validated canonical dataset. See docs/real_data.md.",
    )
    p.add_argument("source", choices=SOURCES, help="source format")
    p.add_argument("--path", help="source directory (microlens, kuailive-m3, mind)")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--force", action="store_true", help="replace what a non-empty output directory holds (the old dataset stays whole until the new one is validated)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed for negative sampling (default 0)")
    p.add_argument("--negatives", type=bounded_int(0, MAX_NEGATIVES), default=0, metavar="K", help=f"sample K negatives per positive from the items live at that moment (at most {MAX_NEGATIVES})")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows (counted in the summary) instead of failing")
    p.add_argument("--max-users", type=positive_int, help="keep only the first N users in file order (quick subsets)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json_flag(p)

    g = p.add_argument_group("microlens")
    g.add_argument("--step-ms", type=bounded_int(1, TIME_MAX_MS - 1), default=60_000, help="pseudo-time between a user's consecutive items (default 60000)")
    g = p.add_argument_group("mind and csv")
    g.add_argument("--drop-items-without-text", action="store_true", help="drop interactions whose item has no row in the news / items file")
    g.add_argument("--history-events", action="store_true", help="mind: also add each user's click history to the video feed "
                   "(video_impressions) as clicks at synthetic times before the log window (history news become items)")
    g = p.add_argument_group("kuailive-m3")
    g.add_argument("--long-view-s", type=finite_float, default=30.0, help="watch seconds from which a session is a long view (default 30)")
    g.add_argument("--keep-rooms-without-segments", action="store_true", help="keep rooms with no segment embedding (one slice without embedding)")
    g.add_argument("--max-videos", type=non_negative_int, help="import at most N short videos")

    g = p.add_argument_group("csv")
    g.add_argument("--interactions", help="interaction log file")
    g.add_argument("--items", help="item table file")
    g.add_argument("--delimiter", type=_delimiter, default=",", help="field separator: one character, or '\\t' / tab (default ',')")
    g.add_argument("--header", action=argparse.BooleanOptionalAction, default=True, help="first line holds column names (default); with --no-header name columns by 0-based index")
    g.add_argument("--encoding", default="utf-8", help="text encoding (default utf-8)")
    g.add_argument("--user-col", help="user id column")
    g.add_argument("--item-col", help="item id column (interactions; also the items file unless --items-id-col)")
    g.add_argument("--items-id-col", help="item id column of the items file (default: --item-col with a header, 0 without)")
    g.add_argument("--time-col", help="time column: integer ms (see --time-unit) or ISO-8601; absent: row order")
    g.add_argument("--time-unit", choices=("ms", "s"), default="ms", help="unit of integer times (default ms)")
    g.add_argument("--label-col", help="numeric label column; >= --positive-threshold is a click, else a logged negative")
    g.add_argument("--positive-threshold", type=finite_float, default=1.0, help="see --label-col (default 1)")
    g.add_argument("--text-cols", help="comma-separated item text columns, joined into the title")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from fluidrec.data.importers import CsvFormat, ImportOptions, import_csv, import_kuailive_m3, import_microlens, import_mind

    options = ImportOptions(
        seed=args.seed,
        negatives=args.negatives,
        skip_bad_rows=args.skip_bad_rows,
        max_users=args.max_users,
        progress=not args.no_progress,
    )
    if args.source == "csv":
        missing = [f for f, v in (("--interactions", args.interactions), ("--items", args.items), ("--user-col", args.user_col), ("--item-col", args.item_col), ("--text-cols", args.text_cols)) if not v]
        if missing:
            raise UsageError(f"data import csv needs {', '.join(missing)}")
        fmt = CsvFormat(
            interactions=args.interactions,
            items=args.items,
            user_col=args.user_col,
            item_col=args.item_col,
            text_cols=tuple(c.strip() for c in args.text_cols.split(",") if c.strip()),
            delimiter=args.delimiter,
            header=args.header,
            encoding=args.encoding,
            time_col=args.time_col,
            time_unit=args.time_unit,
            label_col=args.label_col,
            positive_threshold=args.positive_threshold,
            items_id_col=args.items_id_col,
            drop_items_without_text=args.drop_items_without_text,
        )
        with output_dir(args.out, args.force) as out:
            summary = import_csv(fmt, out, options)
    else:
        if not args.path:
            raise UsageError(f"data import {args.source} needs --path (the source directory)")
        with output_dir(args.out, args.force) as out:
            if args.source == "microlens":
                summary = import_microlens(args.path, out, options, step_ms=args.step_ms)
            elif args.source == "mind":
                summary = import_mind(args.path, out, options, drop_items_without_text=args.drop_items_without_text,
                                      history_events=args.history_events)
            else:
                summary = import_kuailive_m3(
                    args.path,
                    out,
                    options,
                    long_view_s=args.long_view_s,
                    keep_rooms_without_segments=args.keep_rooms_without_segments,
                    max_videos=args.max_videos,
                )
    emit(summary, args.json, lambda s: render_kv(s.flat(), title=f"imported {s.source} -> {s.out} (validated)"))
    return 0
