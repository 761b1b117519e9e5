"""``reproduce_long_sequence``: the long-sequence paper's tables on a video feed, one call.

Stages: dataset (the synthetic world with its video feed, or any dataset holding
``video_impressions.parquet``) -> event log (codes: a codes directory, else the world's true
topic path, else none) -> shared train / test targets -> Table 1: {ID, semantic d} x
{mean, DIN, full, compression} AUC / GAUC / cold AUC -> table sizes (ID vs semantic rows and
bytes, here and at ``medium``) -> Table 2: peak memory and FLOPs per sample vs S, full vs
compression (+ figure) -> Table 3: AUC vs history length at a fixed compute budget (+ figure)
-> ``results.json``, ``report.md``, ``config.json``.

``resume=True`` reuses the world of an earlier run in ``out`` with the same config; models
are always retrained (they are seeded, so the numbers are the same).

Example:
    >>> results = reproduce_long_sequence(sequence_config("small", seed=0), Path("runs/long_sequence"))
    >>> results["table1"]["sem2"]["compress"]["auc"], results["costs"]["ratios"]["peak_mem_2048"]
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fluidrec.errors import UsageError
from fluidrec.sequence.config import ARMS, SequenceModelConfig, SequenceRunConfig, SequenceTrainConfig
from fluidrec.sequence.events import EventLog
from fluidrec.utils.io import read_json, write_json
from fluidrec.utils.timing import StageClock

FEED_FILE = "video_impressions.parquet"
MEDIUM = "medium"


def _log(msg: str) -> None:
    print(f"[long-sequence] {msg}", file=sys.stderr, flush=True)


def history_rows(cfg: SequenceRunConfig) -> list[tuple[str, SequenceModelConfig]]:
    """Table 1's rows: ("id", cfg) then ("sem<d>", cfg) for each depth."""
    rows = [("id", dataclasses.replace(cfg.model, history="id"))]
    rows += [(f"sem{d}", dataclasses.replace(cfg.model, history="semantic", depth=d)) for d in cfg.depths]
    return rows


def _stage_dataset(cfg: SequenceRunConfig, out: Path, dataset: Path | None, reuse: bool) -> Path:
    if dataset is not None:
        if not (Path(dataset) / FEED_FILE).is_file():
            raise UsageError(f"{dataset} has no {FEED_FILE} (generate a world with the video feed or import MicroLens / MIND)")
        return Path(dataset)
    from fluidrec.data.world import generate_world

    world_dir = out / "world"
    if reuse and (world_dir / "manifest.json").exists():
        return world_dir
    if world_dir.exists():
        shutil.rmtree(world_dir)
    return generate_world(cfg.world_config(), world_dir, progress=True)


def _load_log(dataset: Path, codes_dir: Path | None) -> tuple[EventLog, str]:
    """The feed's event log and where its codes came from (codes dir > true topics > none)."""
    from fluidrec.data.io import Dataset
    from fluidrec.data.schema import TOPIC_COLUMNS
    from fluidrec.sequence.data import load_event_log

    if codes_dir is not None:
        return load_event_log(dataset, codes_dir), f"codes from {codes_dir}"
    names = Dataset(dataset).table("slices").schema.names if (dataset / "slices.parquet").exists() else []
    if all(c in names for c in TOPIC_COLUMNS):
        return load_event_log(dataset, None, true_codes=True), "true topic path (the world's taxonomy; codes oracle)"
    return load_event_log(dataset, None), "none (ID histories only)"


def _cell(log: EventLog, model_cfg: SequenceModelConfig, train_cfg: SequenceTrainConfig, train_idx, test_idx, progress: bool) -> dict:
    from fluidrec.sequence.train import evaluate, train_model

    model, info = train_model(log, model_cfg, train_cfg, train_idx, progress=progress, desc=f"{model_cfg.name} S={train_cfg.seq_len}")
    t0 = time.perf_counter()
    metrics = evaluate(model, log, test_idx, train_cfg.seq_len)
    return {**metrics, "train": info, "eval_seconds": round(time.perf_counter() - t0, 2), "table_rows": model.embedding.rows}


def _table1(cfg: SequenceRunConfig, log: EventLog, train_idx, test_idx, progress: bool) -> dict:
    has_codes = bool((log.codes[:, 0] >= 0).any())
    table: dict = {}
    for row, model_cfg in history_rows(cfg):
        if model_cfg.history == "semantic" and (not has_codes or model_cfg.depth > log.levels):
            table[row] = {"skipped": "no codes" if not has_codes else f"depth {model_cfg.depth} > {log.levels} levels"}
            continue
        table[row] = {}
        for arm in ARMS:
            table[row][arm] = _cell(log, dataclasses.replace(model_cfg, arm=arm), cfg.train, train_idx, test_idx, progress)
            _log(f"table 1 {row}/{arm}: AUC {table[row][arm]['auc']:.4f} cold {table[row][arm]['cold_auc']:.4f} "
                 f"({table[row][arm]['train']['seconds']} s)")
    return table


def _sizes(cfg: SequenceRunConfig, log: EventLog) -> dict:
    """Embedding-table rows and bytes of each history kind, at this corpus and at ``medium``'s."""
    from fluidrec.data.world import WorldConfig
    from fluidrec.sequence.embed import collision_share, table_rows

    width = 4 * cfg.model.dim  # float32 bytes per row
    medium_items = WorldConfig.for_scale(MEDIUM).n_videos
    cap = cfg.model.table_cap or None
    item_codes = np.full((log.n_items, log.levels), -1, np.int64)
    item_codes[log.item] = log.codes
    out = {"dim": cfg.model.dim, "n_items": log.n_items, "medium_items": medium_items, "rows": {}}
    for name, kind, depth in [("id", "id", 1)] + [(f"sem{d}", "semantic", d) for d in cfg.depths if d <= log.levels]:
        here = table_rows(kind, n_items=log.n_items, codebook_size=log.codebook_size, depth=depth, table_cap=cap)
        medium = table_rows(kind, n_items=medium_items, codebook_size=log.codebook_size, depth=depth, table_cap=cap)
        out["rows"][name] = {"rows": here, "bytes": here * width, "rows_medium": medium, "bytes_medium": medium * width,
                             "collision_share": 0.0 if kind == "id" else collision_share(item_codes, log.codebook_size, depth, cap)}
    id_medium = out["rows"]["id"]["rows_medium"]
    for v in out["rows"].values():
        v["id_over_this_medium"] = id_medium / v["rows_medium"]
    return out


def _costs(cfg: SequenceRunConfig, log: EventLog, progress: bool) -> dict:
    """Table 2: peak activation memory and FLOPs per sample of one training step vs S."""
    from fluidrec.sequence.cost import cost_table, fit_exponent
    from fluidrec.sequence.models import build_model

    history = "semantic" if (log.codes[:, 0] >= 0).any() else "id"
    base = dataclasses.replace(cfg.model, history=history, depth=min(cfg.model.depth, log.levels))

    def build(arm: str):
        return build_model(dataclasses.replace(base, arm=arm), n_items=log.n_items, codebook_size=log.codebook_size)

    table = cost_table(build, cfg.cost_lengths, batch=4, levels=log.levels, n_items=log.n_items, codebook_size=log.codebook_size,
                       repeats=1, progress=progress)
    lengths = [s for s in cfg.cost_lengths if s >= 512] or list(cfg.cost_lengths)
    exps = {arm: {k: fit_exponent(lengths, [table[arm][s][k] for s in lengths]) if len(lengths) > 1 else float("nan")
                  for k in ("peak_bytes_per_sample", "flops_per_sample", "seconds_per_sample")} for arm in table}
    ratios = {f"{k}_{s}": table["full"][s][key] / table["compress"][s][key]
              for s in cfg.cost_lengths for k, key in (("peak_mem", "peak_bytes_per_sample"), ("flops", "flops_per_sample"))}
    return {"model": base.name, "batch": 4, "table": {arm: {str(s): v for s, v in d.items()} for arm, d in table.items()},
            "exponents": exps, "exponent_lengths": lengths, "ratios": ratios}


def _curve(cfg: SequenceRunConfig, log: EventLog, train_idx, test_idx, progress: bool, table1: dict) -> dict:
    """Table 3: AUC vs S of each curve arm, trained only at the lengths that fit the budget.

    A point with the table's S and model is Table 1's cell (the same seeded run), not retrained.
    """
    from fluidrec.sequence.cost import measure_step, synthetic_batch
    from fluidrec.sequence.models import build_model

    history = "semantic" if (log.codes[:, 0] >= 0).any() else "id"
    base = dataclasses.replace(cfg.model, history=history, depth=min(cfg.model.depth, log.levels))

    def flops(arm: str, s: int) -> float:
        model = build_model(dataclasses.replace(base, arm=arm), n_items=log.n_items, codebook_size=log.codebook_size)
        batch = synthetic_batch(4, s, levels=log.levels, n_items=log.n_items, codebook_size=max(log.codebook_size, 2))
        return measure_step(model, batch)["flops_per_sample"]

    budget = flops("full", cfg.budget_len)
    out: dict = {"model": base.name, "budget_len": cfg.budget_len, "budget_flops": budget, "arms": {}}
    for arm in cfg.curve_arms:
        points = {}
        for s in cfg.curve_lengths:
            f = flops(arm, s)
            point = {"flops_per_sample": f, "fits": bool(f <= budget * 1.0001)}
            row = "id" if base.history == "id" else f"sem{base.depth}"
            if point["fits"] and s == cfg.train.seq_len and arm in table1.get(row, {}):
                cell = table1[row][arm]
                point.update({k: cell[k] for k in ("auc", "gauc", "cold_auc", "logloss")}, seconds=cell["train"]["seconds"], from_table1=True)
            elif point["fits"]:
                tcfg = dataclasses.replace(cfg.train, seq_len=s)
                cell = _cell(log, dataclasses.replace(base, arm=arm), tcfg, train_idx, test_idx, progress)
                point.update({k: cell[k] for k in ("auc", "gauc", "cold_auc", "logloss")}, seconds=cell["train"]["seconds"])
                _log(f"curve {arm} S={s}: AUC {point['auc']:.4f}")
            points[str(s)] = point
        fitting = {s: p for s, p in points.items() if p["fits"]}
        best = max(fitting, key=lambda s: fitting[s]["auc"]) if fitting else None
        out["arms"][arm] = {"points": points, "longest_fitting": max(map(int, fitting)) if fitting else None,
                            "best_len": int(best) if best else None, "best_auc": fitting[best]["auc"] if best else float("nan")}
    return out


def _truth(dataset: Path, log: EventLog, test_idx: np.ndarray) -> dict:
    """Yardsticks on the test targets from the world's truth (oracle, no-ID ceiling), when present."""
    from fluidrec.data.io import Dataset, read_parquet
    from fluidrec.metrics import auc

    path = dataset / "world" / "video_truth.parquet"
    if not path.is_file():
        return {"skipped": "no world/video_truth.parquet (not a synthetic world)"}
    t = Dataset(dataset).table("video_impressions", ["ts", "user_id"])
    order = np.lexsort((t.column("ts").to_numpy(), t.column("user_id").to_numpy()))  # build_event_log's order
    truth = read_parquet(path)
    y = log.label[test_idx]
    out = {}
    for col in ("p_long_view", "p_long_view_no_id"):
        if col in truth.schema.names:
            p = truth.column(col).to_numpy()[order][test_idx]
            out[col] = {"auc": float(auc(y, p)), "cold_auc": float(auc(y[log.cold[test_idx]], p[log.cold[test_idx]])) if log.cold[test_idx].any() else float("nan")}
    return out


def reproduce_long_sequence(cfg: SequenceRunConfig, out: Path, *, dataset: Path | None = None, codes_dir: Path | None = None,
                            resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the long-sequence reproduction into ``out``; returns the results dict (also results.json).

    Args:
        cfg: the run's settings (``sequence_config(scale, seed)``).
        out: run directory (created).
        dataset: a dataset with ``video_impressions.parquet`` to use instead of generating the world.
        codes_dir: a directory with ``slice_codes.parquet`` (default: the true topic path where known).
        resume: reuse the world of an earlier run in ``out`` with the same config.
        progress: tqdm bars on stderr.
    """
    from fluidrec.sequence.data import event_log_summary
    from fluidrec.sequence.report import write_report
    from fluidrec.sequence.train import sample_targets

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {**cfg.to_dict(), "dataset": str(dataset) if dataset else None, "codes_dir": str(codes_dir) if codes_dir else None}
    previous = read_json(out / "config.json") if (out / "config.json").exists() else None
    if previous is not None and not resume:
        raise UsageError(f"{out} already holds a long-sequence run; pass --resume or choose another --out")
    reuse = resume and previous == json.loads(json.dumps(config))
    write_json(out / "config.json", config)
    clock = StageClock("long-sequence")
    data_dir = _stage_dataset(cfg, out, dataset, reuse)
    clock.mark("dataset")
    log, code_source = _load_log(data_dir, codes_dir)
    train_idx, test_idx = sample_targets(log, cfg.train)
    clock.mark("event_log")
    table1 = _table1(cfg, log, train_idx, test_idx, progress)
    clock.mark("table1")
    sizes = _sizes(cfg, log)
    costs = _costs(cfg, log, progress)
    clock.mark("costs")
    curve = _curve(cfg, log, train_idx, test_idx, progress, table1)
    clock.mark("curve")
    results = {
        "table1": table1, "sizes": sizes, "costs": costs, "curve": curve, "truth": _truth(data_dir, log, test_idx),
        "data": {**event_log_summary(log), "codes": code_source, "dataset": str(data_dir), "train_targets": int(len(train_idx)),
                 "test_targets": int(len(test_idx)), "test_cold_targets": int(log.cold[test_idx].sum())},
        "timings_s": clock.timings, "seconds": clock.total(),
    }
    write_json(out / "results.json", results)
    write_report(out, cfg, results)
    return results
