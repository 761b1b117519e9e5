"""``fluidrec codes ...``: fit, assign, rooms, stats, oracle.

Each run writes its resolved settings as JSON beside its output (``run_config.json`` in a
model directory, ``<stem>.config.json`` beside a code file).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from fluidrec.utils.cli import add_json_flag, emit, output_dir, positive_int, render_kv, seed_int


def register(sub: argparse._SubParsersAction) -> None:
    codes = sub.add_parser("codes", help="semantic codes: fit RQ-KMeans, assign slice codes, room codes, quality stats")
    csub = codes.add_subparsers(dest="codes_command", metavar="SUBCOMMAND")
    csub.required = True

    p = csub.add_parser("fit", help="fit an RQ-KMeans model (or a flat codebook with --levels 1) on an embedding file")
    p.add_argument("--embeddings", required=True, help="Parquet embedding file (id, embedding)")
    p.add_argument("--levels", type=positive_int, default=4, help="code levels L (default 4; 1 = flat codebook)")
    p.add_argument("--size", type=positive_int, default=64, help="codewords per level N (default 64)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--niter", type=positive_int, default=10, help="k-means iterations (per progressive step)")
    p.add_argument("--max-points-per-centroid", type=positive_int, default=256, help="training sample cap per level = N x this")
    p.add_argument("--plain-kmeans", action="store_true", help="plain faiss k-means instead of progressive-dimension clustering")
    p.add_argument("--normalize-residuals", action="store_true", help="L2-normalise each level's residual (cosine codes)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite a non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_json_flag(p)
    p.set_defaults(func=_fit)

    p = csub.add_parser("assign", help="encode an embedding file into slice codes (slice_id, c1..cL)")
    p.add_argument("--model", required=True, help="model directory from `codes fit`")
    p.add_argument("--embeddings", required=True, help="Parquet embedding file (id, embedding)")
    p.add_argument("--out", required=True, help="slice codes Parquet file to write")
    p.add_argument("--quiet", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=_assign)

    p = csub.add_parser("rooms", help="causal room codes (per-level majority vote) for every impression of a dataset")
    p.add_argument("--dataset", required=True, help="canonical dataset directory")
    p.add_argument("--codes", required=True, help="slice codes file from `codes assign`")
    p.add_argument("--out", required=True, help="room codes Parquet file to write (row, room_id, r1..rL)")
    p.add_argument(
        "--exclude-on-air", action="store_true",
        help="use only slices that started strictly before the impression (default: start_ts <= t, the slice on air counts)",
    )
    add_json_flag(p)
    p.set_defaults(func=_rooms)

    p = csub.add_parser("stats", help="quality of a model on an embedding file (error, utilisation, perplexity, collisions)")
    p.add_argument("--model", required=True, help="model directory from `codes fit`")
    p.add_argument("--embeddings", required=True, help="Parquet embedding file (id, embedding)")
    p.add_argument("--table-cap", type=positive_int, default=None, help="also report prefix n-gram hash collisions at this table cap")
    p.add_argument(
        "--dataset", default=None,
        help="dataset with a true topic path (slices.topic_l1..topic_l4, e.g. a synthetic world): also report per-level purity and NMI of the code prefix",
    )
    add_json_flag(p)
    p.set_defaults(func=_stats)

    p = csub.add_parser("oracle", help="true-topic codes: slice and room codes from a dataset's ground-truth topic columns")
    p.add_argument("--dataset", required=True, help="canonical dataset directory with slices.topic_l1..topic_l4 (e.g. a synthetic world)")
    p.add_argument("--out", required=True, help="directory to write slice_codes.parquet and room_codes.parquet into")
    add_json_flag(p)
    p.set_defaults(func=_oracle)


def _config_beside(out: Path) -> Path:
    return out.with_name(f"{out.stem}.config.json")


def _fit(args: argparse.Namespace) -> int:
    from fluidrec.codes.quality import code_quality
    from fluidrec.codes.rqkmeans import RQKMeans
    from fluidrec.data.embeddings import read_embeddings
    from fluidrec.utils.io import write_json

    model = RQKMeans(
        levels=args.levels,
        codebook_size=args.size,
        niter=args.niter,
        max_points_per_centroid=args.max_points_per_centroid,
        progressive_dim=not args.plain_kmeans,
        normalize_residuals=args.normalize_residuals,
        seed=args.seed,
    )  # validates the settings before any file is touched
    with output_dir(args.out, args.force) as out:  # removed again if the input turns out bad
        _, x = read_embeddings(args.embeddings)
        model.fit(x, progress=not args.quiet, source=str(args.embeddings))
        model.save(out)
        quality = code_quality(model, x, source=str(args.embeddings))
        write_json(out / "run_config.json", {"command": "codes fit", "embeddings": str(args.embeddings), "config": dataclasses.asdict(model.config)})
    summary: dict[str, Any] = {
        "model": str(out),
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "levels": model.levels,
        "codebook_size": model.codebook_size,
        "fit_seconds": round(float(model.fit_stats["seconds"]), 3),
        **{k: v for k, v in quality.as_flat_dict().items() if k.endswith(("relative_error", "utilisation")) or k in ("collision_rate", "unique_code_ratio")},
    }
    emit(summary, args.json, lambda s: render_kv(s, title="codes fit"))
    return 0


def _assign(args: argparse.Namespace) -> int:
    from fluidrec.codes.io import write_codes
    from fluidrec.codes.quality import collision_stats
    from fluidrec.codes.rqkmeans import RQKMeans
    from fluidrec.data.embeddings import read_embeddings
    from fluidrec.utils.io import write_json

    model = RQKMeans.load(args.model)
    ids, x = read_embeddings(args.embeddings)
    t0 = time.perf_counter()
    codes = model.encode(x, progress=not args.quiet, source=str(args.embeddings))
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    write_codes(out, ids, codes, codebook_size=model.codebook_size)
    write_json(_config_beside(out), {"command": "codes assign", "model": str(args.model), "embeddings": str(args.embeddings), "config": dataclasses.asdict(model.config)})
    collision, unique = collision_stats(codes)
    summary = {
        "out": str(out),
        "n": int(len(ids)),
        "levels": model.levels,
        "encode_seconds": round(seconds, 3),
        "encode_path": model.encode_path(),  # the C kernel is optional (setup.py)
        "collision_rate": collision,
        "unique_code_ratio": unique,
    }
    emit(summary, args.json, lambda s: render_kv(s, title="codes assign"))
    return 0


def _rooms(args: argparse.Namespace) -> int:
    from fluidrec.codes.io import codebook_size_of, read_codes, write_room_codes
    from fluidrec.codes.rooms import room_codes_for_dataset
    from fluidrec.utils.io import write_json

    ids, codes = read_codes(args.codes)  # refuses codes outside the codebook the file declares
    k = codebook_size_of(args.codes)
    result = room_codes_for_dataset(args.dataset, ids, codes, include_on_air=not args.exclude_on_air, codebook_size=k)
    out = Path(args.out)
    write_room_codes(out, result.room_ids, result.codes, codebook_size=k)
    write_json(
        _config_beside(out),
        {"command": "codes rooms", "dataset": str(args.dataset), "codes": str(args.codes), "include_on_air": not args.exclude_on_air},
    )
    emit({"out": str(out), **result.stats}, args.json, lambda s: render_kv(s, title="codes rooms"))
    return 0


def _stats(args: argparse.Namespace) -> int:
    import math

    from fluidrec.codes.ngram import NgramSpec
    from fluidrec.codes.quality import code_quality, code_truth_quality, topic_paths
    from fluidrec.codes.rqkmeans import RQKMeans
    from fluidrec.data.embeddings import read_embeddings

    model = RQKMeans.load(args.model)
    ids, x = read_embeddings(args.embeddings)
    if args.dataset is not None:  # the slices file passes the Parquet boundary first (topic_paths opens it raw)
        from fluidrec.data.io import Dataset, open_parquet

        open_parquet(Dataset(args.dataset).path("slices"))
    truth = topic_paths(args.dataset, ids) if args.dataset is not None else None  # fail before encoding
    result = code_quality(model, x, source=str(args.embeddings)).as_flat_dict()
    codes = model.encode(x, source=str(args.embeddings)) if args.table_cap is not None or truth is not None else None
    if args.table_cap is not None:
        spec = NgramSpec(model.codebook_size, model.levels, table_cap=args.table_cap)
        rates = spec.collision_rates(codes)
        result.update({f"l{lv + 1}_hashed_collision_rate": r for lv, r in enumerate(rates)})
    if truth is not None:
        result.update(code_truth_quality(codes, truth))
    # JSON has no NaN: an undefined value (e.g. no slice with a known topic) prints as null.
    result = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}
    emit(result, args.json, lambda s: render_kv(s, title=f"codes stats ({args.model})"))
    return 0


def _oracle(args: argparse.Namespace) -> int:
    from fluidrec.codes.oracle import write_oracle_codes

    summary = write_oracle_codes(args.dataset, args.out)
    emit(summary, args.json, lambda s: render_kv(s, title="codes oracle"))
    return 0
