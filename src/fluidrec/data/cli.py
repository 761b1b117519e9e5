"""``fluidrec data ...``: validate, stats, import."""

from __future__ import annotations

import argparse

from fluidrec.utils.cli import add_json_flag, emit, render_kv


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, validate and import canonical datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True

    p = dsub.add_parser("validate", help="check a dataset's manifest, checksums, tables, types, keys, references and time order")
    p.add_argument("dataset", help="dataset directory (holds manifest.json and <table>.parquet)")
    p.add_argument("--no-checksums", action="store_true", help="skip verifying each file's SHA-256 against the manifest (row counts are still checked)")
    add_json_flag(p)
    p.set_defaults(func=_validate)

    p = dsub.add_parser("stats", help="summary statistics of a dataset (room lives, CTR, cold-start shares)")
    p.add_argument("dataset", help="dataset directory")
    add_json_flag(p)
    p.set_defaults(func=_stats)

    try:
        from fluidrec.data.importers.cli import register_import
    except ModuleNotFoundError as exc:  # importers are optional only while being developed
        if exc.name != "fluidrec.data.importers.cli":
            raise
    else:
        register_import(dsub)


def _validate(args: argparse.Namespace) -> int:
    from fluidrec.data.validate import validate_dataset

    report = validate_dataset(args.dataset, checksums=not args.no_checksums)
    emit(report, args.json, lambda r: f"{r['dataset']}: ok (checksums {r['checksums']})\n" + render_kv(r["row_counts"]))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from fluidrec.data.stats import dataset_stats

    emit(dataset_stats(args.dataset), args.json, lambda s: render_kv(s, title=f"dataset {args.dataset}"))
    return 0
