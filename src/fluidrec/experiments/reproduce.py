"""The main job: reproduce FLUID end to end on the synthetic world.

world -> encoder training -> embedding -> codes (slice + room) -> every ranker arm ->
evaluation -> simulated online A/B -> encoder ablation -> report.

Every stage is cached (``--resume`` skips finished stages), times itself, and the
resolved configuration is written to ``<out>/config.json`` before any work.

Example:
    >>> results = reproduce(ReproduceConfig(scale="small", seed=0), Path("runs/demo"), resume=True)
    >>> results["table3"]["fluid"]["auc"]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from fluidrec.errors import UsageError
from fluidrec.experiments.config import AB_ARMS, TABLE3_ARMS, TABLE5_ARMS, TABLE7_ARMS, ReproduceConfig, all_arms
from fluidrec.experiments.stages import StageRunner
from fluidrec.utils.io import read_json, to_jsonable, write_json
from fluidrec.utils.seed import seed_everything


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where each stage writes, under the run directory."""

    root: Path

    @property
    def world(self) -> Path:
        return self.root / "world"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.parquet"

    @property
    def codes(self) -> Path:
        return self.root / "codes"

    @property
    def slice_codes(self) -> Path:
        return self.codes / "slice_codes.parquet"

    @property
    def room_codes(self) -> Path:
        return self.codes / "room_codes.parquet"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def ranker(self, arm: str) -> Path:
        return self.root / "rankers" / arm

    @property
    def ablation(self) -> Path:
        return self.root / "encoder_ablation"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


def _encoder_config(cfg: ReproduceConfig):
    from fluidrec.encoder.config import encoder_demo, encoder_tiny

    enc = encoder_demo(cfg.seed) if cfg.encoder_preset == "demo" else encoder_tiny(seed=cfg.seed)
    if cfg.encoder_steps is not None:
        enc = enc.replace(train={"steps": cfg.encoder_steps})
    return enc


def _ranker_config(cfg: ReproduceConfig):
    from fluidrec.ranker.train import ranker_demo, ranker_small

    base = ranker_demo() if cfg.ranker_preset == "demo" else ranker_small()
    return dataclasses.replace(base, seed=cfg.seed, progress=False)


def resolved_config(cfg: ReproduceConfig) -> dict:
    """Every stage's settings, as written to ``config.json``."""
    from fluidrec.data.world import WorldConfig

    return {
        "reproduce": dataclasses.asdict(cfg),
        "world": WorldConfig.for_scale(cfg.scale, cfg.seed).to_dict(),
        "encoder": _encoder_config(cfg).to_dict(),
        "ranker": to_jsonable(_ranker_config(cfg)),
        "arms": list(all_arms()),
    }


# ---------------------------------------------------------------- stages


def stage_world(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    import shutil

    from fluidrec.data.stats import dataset_stats
    from fluidrec.data.world import WorldConfig, generate_world

    if paths.world.exists():  # a half-written world from a crashed run: start it again
        shutil.rmtree(paths.world)
    generate_world(WorldConfig.for_scale(cfg.scale, cfg.seed), paths.world, progress=True)
    return dataset_stats(paths.world)


def stage_encoder(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    from fluidrec.encoder.evaluate import evaluate_encoder
    from fluidrec.encoder.train import train_encoder

    train_encoder(_encoder_config(cfg), paths.world, paths.encoder, resume=True, progress=True)
    return evaluate_encoder(paths.encoder, paths.world)


def stage_embed(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    from fluidrec.encoder.embed import embed_dataset

    summary = embed_dataset(paths.encoder, paths.world, paths.embeddings, progress=True)
    return {"items": summary.items, "items_per_s": summary.items_per_s}


def stage_codes(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    from fluidrec.codes import RQKMeans, code_quality, room_codes_for_dataset, write_codes, write_room_codes
    from fluidrec.data.embeddings import read_embeddings

    ids, z = read_embeddings(paths.embeddings)
    model = RQKMeans(levels=cfg.code_levels, codebook_size=cfg.codebook_size, seed=cfg.seed).fit(z, progress=True)
    model.save(paths.codes / "model")
    codes = model.encode(z)
    write_codes(paths.slice_codes, ids, codes)
    rc = room_codes_for_dataset(paths.world, ids, codes)
    write_room_codes(paths.room_codes, rc.room_ids, rc.codes)
    quality = code_quality(model, z)
    return quality.as_flat_dict()


def _features(cfg: ReproduceConfig, paths: RunPaths):
    from fluidrec.ranker.features import load_or_build_features

    rcfg = _ranker_config(cfg)
    return load_or_build_features(paths.world, paths.slice_codes, paths.room_codes, rcfg.features, paths.cache)


def stage_arm(cfg: ReproduceConfig, paths: RunPaths, arm: str, features) -> dict:
    from fluidrec.ranker.evaluate import evaluate_model
    from fluidrec.ranker.train import train_arm

    out = paths.ranker(arm)
    train_arm(arm, paths.world, paths.slice_codes, paths.room_codes, out, _ranker_config(cfg), features=features)
    report = evaluate_model(out, paths.world, features=features)
    write_json(out / "eval.json", report)
    return report


def stage_ab(cfg: ReproduceConfig, paths: RunPaths, features) -> dict:
    from fluidrec.experiments.online import run_online_ab

    return run_online_ab(cfg, paths, features)


def stage_ablation(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    from fluidrec.encoder.ablation import run_ablation

    enc = _encoder_config(cfg).replace(train={"steps": cfg.ablation_steps, "checkpoint_every": cfg.ablation_steps})
    result = run_ablation(paths.world, paths.ablation, enc, progress=True)
    return result["rows"]


# ---------------------------------------------------------------- tables


def _click(report: dict, bucket: str | None = None) -> dict:
    src = report if bucket is None else report["buckets"].get(bucket, {})
    return src.get("click", {})


def build_tables(evals: dict[str, dict], ab: dict | None, ablation: dict | None) -> dict:
    """Map arm evaluations onto the paper's tables (``results.json`` layout)."""
    table3 = {}
    for row, arm in TABLE3_ARMS.items():
        r = evals[arm]
        table3[row] = {
            "auc": _click(r)["auc"],
            "gauc": _click(r)["gauc"],
            "logloss": _click(r)["logloss"],
            "auc_new_room": _click(r, "new_room").get("auc", float("nan")),
            "auc_seen_room": _click(r, "seen_room").get("auc", float("nan")),
            "auc_age_lt10": _click(r, "age_lt10").get("auc", float("nan")),
            "auc_age_10_30": _click(r, "age_10_30").get("auc", float("nan")),
            "auc_age_ge30": _click(r, "age_ge30").get("auc", float("nan")),
        }
    table5 = {row: {"auc": _click(evals[arm])["auc"], "gauc": _click(evals[arm])["gauc"]} for row, arm in TABLE5_ARMS.items()}
    table7 = {row: {"auc": _click(evals[arm])["auc"], "gauc": _click(evals[arm])["gauc"]} for row, arm in TABLE7_ARMS.items()}
    table4 = {}
    if ab is not None:
        table4 = {row: ab["arms"][row] for row in ("slice", "no_id", "fluid")}
    return {"table3": table3, "table4": table4, "table5": table5, "table6": ablation or {}, "table7": table7}


# ---------------------------------------------------------------- the job


def reproduce(cfg: ReproduceConfig, out: Path, *, resume: bool = False) -> dict:
    """Run the whole job into ``out``; returns the results dict also written to ``results.json``."""
    from fluidrec.experiments.render import render_outputs

    paths = RunPaths(Path(out))
    paths.root.mkdir(parents=True, exist_ok=True)
    config = resolved_config(cfg)
    config_path = paths.root / "config.json"
    if resume and config_path.exists() and read_json(config_path)["reproduce"] != config["reproduce"]:
        raise UsageError(f"{config_path} holds a different configuration; use a new --out or drop --resume")
    write_json(config_path, config)
    seed_everything(cfg.seed)
    runner = StageRunner(paths.root, resume)

    world_stats = runner.run("world", lambda: stage_world(cfg, paths))
    encoder_eval = runner.run("encoder", lambda: stage_encoder(cfg, paths))
    runner.run("embed", lambda: stage_embed(cfg, paths))
    codes_quality = runner.run("codes", lambda: stage_codes(cfg, paths))
    features = _features(cfg, paths)
    evals = {arm: runner.run(f"ranker_{arm}", lambda arm=arm: stage_arm(cfg, paths, arm, features)) for arm in all_arms()}
    ab = runner.run("online_ab", lambda: stage_ab(cfg, paths, features))
    ablation = runner.run("encoder_ablation", lambda: stage_ablation(cfg, paths)) if cfg.ablation_steps > 0 else None

    results = build_tables(evals, ab, ablation)
    results.update(
        {
            "dataset": world_stats,
            "encoder": encoder_eval,
            "codes": codes_quality,
            "online_ab": {k: ab[k] for k in ("n_requests", "n_candidates", "n_users", "totals", "config")},
            "arms": {arm: {k: v for k, v in r.items() if k != "arm"} for arm, r in evals.items()},
        }
    )
    results["seconds"] = dict(runner.seconds)
    report = render_outputs(cfg, paths, results)
    results["seconds"] = dict(runner.seconds)
    write_json(paths.root / "results.json", results)
    print(f"\nreport: {report}\nresults: {paths.root / 'results.json'}", file=sys.stderr)
    return results
