"""The main job: reproduce FLUID end to end on the synthetic world.

world -> encoder training -> embedding -> codes (slice + room) -> true-topic codes ->
truth rows -> every ranker arm (Table 3's neural rows once per ranker seed) -> peer arms
(lr, gbdt) -> evaluation -> simulated online A/B -> encoder ablation (with the lsa and oracle rows;
the lsa peer alone when the ablation is skipped) ->
report.

Every stage is cached (``--resume`` skips a finished stage whose key, the hash of the
settings it depends on, is unchanged), times itself, and the
resolved configuration is written to ``<out>/config.json`` before any work. A ranker
trained with an extra seed ``s`` is its own stage (``ranker_<arm>@<s>``, written to
``rankers/<arm>@<s>``); the world, encoder and codes are those of ``cfg.seed``.

Example:
    >>> results = reproduce(ReproduceConfig(scale="small", seed=0), Path("runs/demo"), resume=True)
    >>> results["table3"]["fluid"]["auc"]
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluidrec.errors import UsageError
from fluidrec.experiments.config import (
    PEER_ROWS,
    TABLE3_ARMS,
    TABLE3_ROWS,
    TABLE5_ARMS,
    TABLE7_ARMS,
    TRUE_CODES_ROW,
    TRUTH_ROWS,
    ReproduceConfig,
    all_arms,
)
from fluidrec.experiments.stages import StageRunner
from fluidrec.utils.io import to_jsonable, write_json
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
    def codes_oracle(self) -> Path:
        return self.root / "codes_oracle"

    @property
    def oracle_slice_codes(self) -> Path:
        return self.codes_oracle / "slice_codes.parquet"

    @property
    def oracle_room_codes(self) -> Path:
        return self.codes_oracle / "room_codes.parquet"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def ranker(self, name: str) -> Path:
        """A ranker's directory; ``name`` is an arm, a peer, ``fluid_true_codes``, or ``<that>@<seed>``."""
        return self.root / "rankers" / name

    @property
    def lsa(self) -> Path:
        return self.ablation / "lsa"

    @property
    def ablation(self) -> Path:
        return self.root / "encoder_ablation"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


def run_name(name: str, ranker_seed: int, cfg: ReproduceConfig) -> str:
    """``name`` for the run's own seed, ``name@<ranker_seed>`` for an extra seed (directory and stage name)."""
    return name if ranker_seed == cfg.seed else f"{name}@{ranker_seed}"


def _neural_encoder_config(cfg: ReproduceConfig):
    """The neural encoder of the preset (for ``lsa``: the one behind Table 6 and the evaluation sizes)."""
    from fluidrec.encoder.config import encoder_demo, encoder_tiny

    enc = encoder_demo(cfg.seed) if cfg.neural_encoder_preset == "demo" else encoder_tiny(seed=cfg.seed)
    if cfg.encoder_steps is not None:
        enc = enc.replace(train={"steps": cfg.encoder_steps})
    return enc


def _lsa_config(cfg: ReproduceConfig):
    """The TF-IDF + SVD encoder, scored on the same held-out pairs as the neural preset."""
    from fluidrec.encoder.config import encoder_lsa

    return encoder_lsa(cfg.seed, like=_neural_encoder_config(cfg))


def _encoder_config(cfg: ReproduceConfig):
    """The encoder whose embeddings become the codes: an ``EncoderConfig`` or, for ``lsa``, an ``LsaConfig``."""
    return _lsa_config(cfg) if cfg.encoder_preset == "lsa" else _neural_encoder_config(cfg)


# At most this many boosting rounds (early stopping picks fewer); learning rate 0.1 rather than the
# library's 0.05 halves the rounds for the same fit on the main job's budget.
GBDT_ROUNDS = 300


def _peer_config(cfg: ReproduceConfig):
    """The lr and gbdt peers of Table 3: the click task only (Table 3 is CTR), one LightGBM thread.

    One thread: on the shared 2-core machine two LightGBM threads spin against the other
    process and the tiny world's fit took 28 s instead of 0.13 s (the small world's: 11 s).
    Both fits are deterministic: LightGBM without bagging or feature sampling draws nothing
    at random (its seed is unused; seeds 0 and 1 give identical predictions), and the
    logistic regression is a convex fit. So each peer runs once: sd 0 by construction.
    """
    from fluidrec.ranker.peers import PeerConfig

    return PeerConfig(tasks=("click",), rounds=GBDT_ROUNDS, learning_rate=0.1, seed=cfg.seed, threads=1)


def resolved_config(cfg: ReproduceConfig) -> dict:
    """Every stage's settings, as written to ``config.json``."""
    from fluidrec.data.world import WorldConfig

    return {
        "reproduce": dataclasses.asdict(cfg),
        "world": WorldConfig.for_scale(cfg.scale, cfg.seed).to_dict(),
        "encoder": _encoder_config(cfg).to_dict(),
        "ranker": to_jsonable(cfg.ranker_config()),
        "ranker_seeds": list(cfg.ranker_seeds),
        "peers": to_jsonable(_peer_config(cfg)),
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


def has_truth(paths: RunPaths) -> bool:
    """The dataset carries a world's ground truth (``world/``; synthetic worlds only)."""
    from fluidrec.data.world.truth import WORLD_DIR

    return (paths.world / WORLD_DIR).is_dir()


NO_TRUTH = "skipped: the dataset has no world truth (world/), so there is no oracle, ceiling or true topic path"


def stage_encoder(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    from fluidrec.encoder.config import LsaConfig
    from fluidrec.encoder.evaluate import evaluate_encoder

    enc = _encoder_config(cfg)
    if isinstance(enc, LsaConfig):
        from fluidrec.encoder.lsa import train_lsa

        train_lsa(enc, paths.world, paths.encoder)
    else:
        from fluidrec.encoder.train import train_encoder

        train_encoder(enc, paths.world, paths.encoder, resume=True, progress=True)
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
    write_codes(paths.slice_codes, ids, codes, codebook_size=cfg.codebook_size)
    rc = room_codes_for_dataset(paths.world, ids, codes)
    write_room_codes(paths.room_codes, rc.room_ids, rc.codes, codebook_size=cfg.codebook_size)
    quality = code_quality(model, z)
    return quality.as_flat_dict()


def stage_codes_truth(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    """Purity and NMI of each learned code prefix against the true topic prefix (``purity_l1``, ``nmi_l1``, ...)."""
    if not has_truth(paths):
        return {"skipped": NO_TRUTH}
    from fluidrec.codes.io import read_codes
    from fluidrec.codes.quality import code_truth_quality, topic_paths

    ids, codes = read_codes(paths.slice_codes)
    return code_truth_quality(codes, topic_paths(paths.world, ids))


def stage_codes_oracle(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    """True-topic slice and room codes (``codes_oracle/``), the yardstick that isolates the encoder's loss."""
    from fluidrec.codes.oracle import write_oracle_codes

    if not has_truth(paths):
        return {"skipped": NO_TRUTH}
    return write_oracle_codes(paths.world, paths.codes_oracle)


def stage_truth(cfg: ReproduceConfig, paths: RunPaths, features) -> dict:
    """The world's own scores on the test impressions (Table 3's truth rows)."""
    if not has_truth(paths):
        return {"skipped": NO_TRUTH}
    from fluidrec.simulate.truth_rows import truth_rows

    return {"rows": truth_rows(paths.world, features.n_train, features.seen)}


def _features(cfg: ReproduceConfig, paths: RunPaths):
    from fluidrec.ranker.features import load_or_build_features

    rcfg = cfg.ranker_config()
    return load_or_build_features(paths.world, paths.slice_codes, paths.room_codes, rcfg.features, paths.cache)


def _oracle_features(cfg: ReproduceConfig, paths: RunPaths):
    """Features built from the true-topic codes (same impressions, users and history rows)."""
    from fluidrec.ranker.features import load_or_build_features

    rcfg = cfg.ranker_config()
    return load_or_build_features(paths.world, paths.oracle_slice_codes, paths.oracle_room_codes, rcfg.features, paths.cache)


def stage_arm(
    cfg: ReproduceConfig, paths: RunPaths, arm: str, features, *, ranker_seed: int | None = None, row: str | None = None, oracle_codes: bool = False
) -> dict:
    """Train and evaluate one token-ranker arm.

    Args:
        arm: the arm (``fluidrec.ranker.arms.ARMS``).
        features: built from the codes the arm reads (``_oracle_features`` when ``oracle_codes``).
        ranker_seed: the ranker's init seed (default ``cfg.seed``); another seed trains into ``<row>@<seed>``.
        row: directory name (default ``arm``; ``fluid_true_codes`` for FLUID on the true-topic codes).
        oracle_codes: record the true-topic code files as the arm's codes.
    """
    from fluidrec.ranker.evaluate import evaluate_model
    from fluidrec.ranker.train import train_arm

    seed = cfg.seed if ranker_seed is None else ranker_seed
    out = paths.ranker(run_name(row or arm, seed, cfg))
    codes = (paths.oracle_slice_codes, paths.oracle_room_codes) if oracle_codes else (paths.slice_codes, paths.room_codes)
    train_arm(arm, paths.world, *codes, out, cfg.ranker_config(seed), features=features)
    report = evaluate_model(out, paths.world, features=features)
    write_json(out / "eval.json", report)
    return report


def stage_peer(cfg: ReproduceConfig, paths: RunPaths, arm: str, features) -> dict:
    """Fit and evaluate one classical peer (``lr`` or ``gbdt``) on the learned codes' features."""
    from fluidrec.ranker.peers import evaluate_peer, train_peer

    out = paths.ranker(arm)
    train_peer(arm, paths.world, paths.slice_codes, paths.room_codes, out, _peer_config(cfg), features=features)
    report = evaluate_peer(out, paths.world, features=features)
    write_json(out / "eval.json", report)
    return report


def stage_stream(cfg: ReproduceConfig, paths: RunPaths, name: str, ranker_seed: int, features) -> dict:
    """Evaluate one trained ranker under the streaming protocol (test-then-train over the test period)."""
    from fluidrec.ranker.streaming import evaluate_streaming

    report = evaluate_streaming(paths.ranker(name), paths.world, features=features, cfg=cfg.ranker_config(ranker_seed))
    write_json(paths.ranker(name) / "eval_streaming.json", report)
    return report


def stage_ab(cfg: ReproduceConfig, paths: RunPaths, features) -> dict:
    from fluidrec.experiments.online import run_online_ab

    return run_online_ab(cfg, paths, features)


def stage_ab_closed(cfg: ReproduceConfig, paths: RunPaths, features, assignment: str) -> dict:
    from fluidrec.experiments.online import run_closed_ab

    return run_closed_ab(cfg, paths, features, assignment=assignment)


def stage_ablation(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    from fluidrec.encoder.ablation import run_ablation

    enc = _neural_encoder_config(cfg).replace(train={"steps": cfg.ablation_steps, "checkpoint_every": cfg.ablation_steps})
    seeds = tuple(range(cfg.seed, cfg.seed + cfg.ablation_seeds))
    result = run_ablation(paths.world, paths.ablation, enc, seeds=seeds, peers=True, progress=True)
    return result["rows"]


def stage_encoder_lsa(cfg: ReproduceConfig, paths: RunPaths) -> dict:
    """Table 6's peer row: the TF-IDF + SVD encoder, on the neural preset's held-out pairs.

    With ``--encoder-preset lsa`` the main encoder is that very model (same config), so it is
    evaluated again instead of fitted twice.
    """
    from fluidrec.encoder.evaluate import evaluate_encoder

    if cfg.encoder_preset == "lsa":
        model_dir = paths.encoder
    else:
        from fluidrec.encoder.lsa import train_lsa

        model_dir = train_lsa(_lsa_config(cfg), paths.world, paths.lsa)
    return {"group": "peer", "change": {"encoder": "lsa (TF-IDF + TruncatedSVD)"}, **evaluate_encoder(model_dir, paths.world)}


# ---------------------------------------------------------------- tables


def _click(report: dict, bucket: str | None = None) -> dict:
    src = report if bucket is None else report["buckets"].get(bucket, {})
    return src.get("click", {})


def click_row(report: dict) -> dict:
    """One evaluation's Table 3 numbers (CTR on the test days, overall and per bucket)."""
    nan = float("nan")
    return {
        "auc": _click(report)["auc"],
        "gauc": _click(report)["gauc"],
        "logloss": _click(report)["logloss"],
        "auc_new_room": _click(report, "new_room").get("auc", nan),
        "auc_seen_room": _click(report, "seen_room").get("auc", nan),
        "auc_age_lt10": _click(report, "age_lt10").get("auc", nan),
        "auc_age_10_30": _click(report, "age_10_30").get("auc", nan),
        "auc_age_ge30": _click(report, "age_ge30").get("auc", nan),
    }


def _mean(values: list[float]) -> float:
    return float(statistics.fmean(values)) if values else float("nan")


def _sd(values: list[float], deterministic: bool) -> float:
    """Sample standard deviation over seeds; 0 for a deterministic row; NaN with one seed (unmeasured)."""
    if deterministic:
        return 0.0
    if len(values) < 2 or any(math.isnan(v) for v in values):
        return float("nan")
    return float(statistics.stdev(values))


def _share(auc: float, truth: dict | None, key: str) -> float:
    from fluidrec.simulate.truth_rows import headroom_share

    if not truth:
        return float("nan")
    return headroom_share(auc, truth["position_only"][key], truth["ceiling_no_id"][key])


def table3_row(runs: list[tuple[int, dict]], truth: dict | None, *, kind: str, deterministic: bool = False) -> dict:
    """Mean and spread over ranker seeds of one Table 3 row.

    Args:
        runs: ``(ranker_seed, evaluation report)`` per seed, the run's own seed first.
        truth: the truth rows (for the headroom share), or None.
        kind: ``neural`` or ``peer``.
        deterministic: the fit draws nothing at random, so its sd is 0 by construction.
    """
    per_seed = []
    for seed, report in runs:
        r = click_row(report)
        r["ranker_seed"] = seed
        r["headroom_share"] = _share(r["auc"], truth, "auc")
        r["headroom_share_new_room"] = _share(r["auc_new_room"], truth, "auc_new_room")
        per_seed.append(r)
    row = {k: _mean([r[k] for r in per_seed]) for k in click_row(runs[0][1])}
    for key in ("auc", "auc_new_room", "gauc", "logloss"):
        row[f"{key}_sd"] = _sd([r[key] for r in per_seed], deterministic)
    row["headroom_share"] = _share(row["auc"], truth, "auc")
    row["headroom_share_new_room"] = _share(row["auc_new_room"], truth, "auc_new_room")
    span = (truth["ceiling_no_id"]["auc"] - truth["position_only"]["auc"]) if truth else float("nan")
    row["headroom_share_sd"] = row["auc_sd"] / span if span and span > 0 else float("nan")
    row.update({"kind": kind, "deterministic": deterministic, "n_seeds": len(per_seed), "seeds": per_seed})
    return row


def truth_table_rows(truth: dict) -> dict:
    """The truth rows in Table 3's layout (the world's own scores: no seeds, no spread)."""
    out = {}
    for name in TRUTH_ROWS:
        t = truth[name]
        out[name] = {
            "auc": t["auc"], "auc_sd": 0.0, "auc_new_room": t["auc_new_room"], "auc_new_room_sd": 0.0,
            "gauc": t["gauc"], "logloss": t["logloss"], "headroom_share": t["headroom"],
            "headroom_share_new_room": t["headroom_new_room"], "kind": "truth", "deterministic": True, "n_seeds": 0, "seeds": [],
        }  # fmt: skip
    return out


def table3_rows(seeded: dict[str, list[tuple[int | None, dict]]], evals: dict[str, dict], truth: dict | None) -> dict:
    """Table 3 in ``TABLE3_ROWS`` order: truth rows, peers (deterministic), neural rows over seeds."""
    rows: dict[str, dict] = truth_table_rows(truth) if truth else {}
    for peer in PEER_ROWS:
        if peer in evals:
            rows[peer] = table3_row([(None, evals[peer])], truth, kind="peer", deterministic=True)
    for row, runs in seeded.items():
        rows[row] = table3_row(runs, truth, kind="neural")
    return {row: rows[row] for row in TABLE3_ROWS if row in rows}


def closed_table(closed: dict) -> dict:
    """Table 4 (closed loop) rows: every metric's comparison with the control, plus ``half_width_qwd``."""
    return {arm: {**d, "half_width_qwd": d["quality_watch_duration"]["half_width"]} for arm, d in closed["arms"].items()}


def build_tables(
    evals: dict[str, dict],
    ab: dict | None,
    ablation: dict | None,
    *,
    seeded: dict[str, list[tuple[int, dict]]] | None = None,
    truth: dict | None = None,
    lsa: dict | None = None,
    streamed: dict[str, list[tuple[int, dict]]] | None = None,
    closed: dict[str, dict] | None = None,
) -> dict:
    """Map arm evaluations onto the paper's tables (``results.json`` layout).

    Args:
        evals: the run-seed evaluation of every arm by arm name (plus ``lr``, ``gbdt`` and
            ``fluid_true_codes`` when they ran).
        ab, ablation: the replay A/B and encoder-ablation summaries (None: not run).
        seeded: Table 3 neural rows' ``[(ranker_seed, report), ...]`` by row (default: the
            run seed alone, from ``evals``).
        truth: ``truth_rows`` output (None: no truth rows, headroom shares NaN).
        lsa: Table 6's lsa peer row.
        streamed: the neural rows' streaming-protocol reports, laid out like ``seeded``.
        closed: closed-loop A/B results by assignment (``user``, ``mirror``).

    Table 3 rows, in ``TABLE3_ROWS`` order: truth rows, peers (deterministic), neural arms
    (mean over ranker seeds with ``*_sd``), each with its headroom share and every seed's
    numbers under ``seeds``. ``table3_streaming`` has the same rows: the neural ones under
    the streaming protocol; truth rows and peers (batch fits that do not learn online)
    are the frozen ones, marked ``protocol``.
    """
    seeded = dict(seeded or {})
    for row, arm in TABLE3_ARMS.items():
        seeded.setdefault(row, [(None, evals[arm])])
    if TRUE_CODES_ROW in evals:
        seeded.setdefault(TRUE_CODES_ROW, [(None, evals[TRUE_CODES_ROW])])
    table3 = table3_rows(seeded, evals, truth)
    out: dict = {"table3": table3}
    if streamed:
        table3s = table3_rows(streamed, evals, truth)
        out["table3_streaming"] = {row: {**r, "protocol": "streaming" if row in streamed else "frozen"} for row, r in table3s.items()}
    out["table5"] = {row: {"auc": _click(evals[arm])["auc"], "gauc": _click(evals[arm])["gauc"]} for row, arm in TABLE5_ARMS.items()}
    out["table7"] = {row: {"auc": _click(evals[arm])["auc"], "gauc": _click(evals[arm])["gauc"]} for row, arm in TABLE7_ARMS.items()}
    out["table4"] = {row: ab["arms"][row] for row in ("slice", "no_id", "fluid")} if ab is not None else {}
    for assignment, name in (("user", "table4_closed"), ("mirror", "table4_mirror")):
        if closed and assignment in closed:
            out[name] = closed_table(closed[assignment])
    table6 = dict(ablation or {})
    if lsa is not None and "lsa" not in table6:  # with the ablation, its lsa row (the seeds' mean) stands
        table6["lsa"] = lsa
    out["table6"] = table6
    if ablation:
        from fluidrec.encoder.ablation import ablation_comparisons

        out["table6_comparisons"] = ablation_comparisons(table6)
    return out


# The closed-loop A/B's assignments: the production hash split (Table 4 closed), then the
# mirror (every arm serves every user in its own copy of the world; paired, powered).
CLOSED_ASSIGNMENTS = ("user", "mirror")


# ---------------------------------------------------------------- the job


def reproduce(cfg: ReproduceConfig, out: Path, *, resume: bool = False, force: bool = False) -> dict:
    """Run the whole job into ``out``; returns the results dict also written to ``results.json``.

    Args:
        resume: reuse the stages finished in ``out`` whose settings are unchanged; a stage
            whose settings (or an upstream stage's) changed is recomputed, with every stage
            downstream of it.
        force: start over in a directory that already holds a run (needed without ``resume``).
    """
    from fluidrec.experiments.render import render_outputs

    job = _start(cfg, Path(out), resume=resume, force=force)
    upstream = _run_upstream(job)
    evals, seeded = _run_rankers(job, oracle_skipped="skipped" in upstream["codes_oracle"])
    streamed = _run_streams(job, seeded)
    ab, closed = _run_online(job)
    lsa, ablation = _run_encoder_checks(job)
    results = _results(job, upstream, evals, seeded, streamed, ab, closed, lsa, ablation)
    results["seconds"] = dict(job.runner.seconds)
    report = render_outputs(cfg, job.paths, results)
    results["seconds"] = dict(job.runner.seconds)
    write_json(job.paths.root / "results.json", results)
    print(f"\nreport: {report}\nresults: {job.paths.root / 'results.json'}", file=sys.stderr)
    return results


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every step of one ``reproduce`` run reads.

    ``keys``: stage name -> key; a stage's key hashes the settings it reads and the keys of
    the stages it reads from. ``features`` / ``oracle_features`` are built (or read from the
    cache) on first use only: a --resume of a finished run loads nothing.
    """

    cfg: ReproduceConfig
    paths: RunPaths
    config: dict
    runner: StageRunner
    keys: dict[str, str]
    features: Callable[[], Any]
    oracle_features: Callable[[], Any]

    def arm_key(self, arm: str, seed: int, oracle: bool = False) -> str:
        """Key of a ranker arm trained with ``seed`` on the codes (or, ``oracle``, the true-topic codes)."""
        from fluidrec.experiments.stages import stage_key

        feats = self.keys["oracle_features" if oracle else "features"]
        return stage_key("ranker", feats, arm, to_jsonable(self.cfg.ranker_config(seed)))


def _start(cfg: ReproduceConfig, out: Path, *, resume: bool, force: bool) -> _Job:
    """Set-up: refuse to overwrite a run by accident, write the resolved config, seed, key every stage."""
    from fluidrec.experiments.stages import stage_key

    paths = RunPaths(out)
    if not resume and not force and StageRunner.holds_run(paths.root):
        raise UsageError(f"{paths.root} already holds a run: pass --resume to continue it (stages whose settings changed are recomputed) or --force to start over")
    paths.root.mkdir(parents=True, exist_ok=True)
    config = resolved_config(cfg)
    write_json(paths.root / "config.json", config)
    seed_everything(cfg.seed)
    keys = {"world": stage_key("world", config["world"])}
    keys["encoder"] = stage_key("encoder", keys["world"], config["encoder"])
    keys["embed"] = stage_key("embed", keys["encoder"])
    keys["codes"] = stage_key("codes", keys["embed"], {"levels": cfg.code_levels, "codebook_size": cfg.codebook_size, "seed": cfg.seed})
    keys["codes_oracle"] = stage_key("codes_oracle", keys["world"])
    keys["features"] = stage_key("features", keys["codes"], config["ranker"]["features"])
    keys["oracle_features"] = stage_key("features", keys["codes_oracle"], config["ranker"]["features"])
    return _Job(
        cfg, paths, config, StageRunner(paths.root, resume), keys,
        functools.cache(lambda: _features(cfg, paths)), functools.cache(lambda: _oracle_features(cfg, paths)),
    )  # fmt: skip


def _run_upstream(job: _Job) -> dict[str, dict]:
    """World, encoder, embeddings, codes, true-topic codes and truth rows: stage name -> summary."""
    from fluidrec.experiments.stages import stage_key

    cfg, paths, run, keys = job.cfg, job.paths, job.runner.run, job.keys
    return {
        "world": run("world", lambda: stage_world(cfg, paths), key=keys["world"], outputs=[paths.world]),
        "encoder": run("encoder", lambda: stage_encoder(cfg, paths), key=keys["encoder"], outputs=[paths.encoder]),
        "embed": run("embed", lambda: stage_embed(cfg, paths), key=keys["embed"], outputs=[paths.embeddings]),
        "codes": run("codes", lambda: stage_codes(cfg, paths), key=keys["codes"], outputs=[paths.codes]),
        "codes_truth": run("codes_truth", lambda: stage_codes_truth(cfg, paths), key=stage_key("codes_truth", keys["codes"])),
        "codes_oracle": run("codes_oracle", lambda: stage_codes_oracle(cfg, paths), key=keys["codes_oracle"], outputs=[paths.codes_oracle]),
        "truth": run("truth", lambda: stage_truth(cfg, paths, job.features()), key=stage_key("truth", keys["features"])),
    }


def _run_rankers(job: _Job, *, oracle_skipped: bool) -> tuple[dict[str, dict], dict[str, list[tuple[int, dict]]]]:
    """Every ranker arm, the true-topic row, Table 3's extra seeds and the peers.

    Returns (row or arm -> evaluation, Table 3 row -> [(ranker seed, evaluation)]).
    """
    from fluidrec.experiments.stages import stage_key

    cfg, paths, run = job.cfg, job.paths, job.runner.run
    evals = {
        arm: run(f"ranker_{arm}", lambda arm=arm: stage_arm(cfg, paths, arm, job.features()), key=job.arm_key(arm, cfg.seed), outputs=[paths.ranker(arm)])
        for arm in all_arms()
    }  # fmt: skip
    seeded = {row: [(cfg.seed, evals[arm])] for row, arm in TABLE3_ARMS.items()}
    if not oracle_skipped:
        evals[TRUE_CODES_ROW] = run(
            f"ranker_{TRUE_CODES_ROW}", lambda: stage_arm(cfg, paths, "fluid", job.oracle_features(), row=TRUE_CODES_ROW, oracle_codes=True),
            key=job.arm_key("fluid", cfg.seed, oracle=True), outputs=[paths.ranker(TRUE_CODES_ROW)],
        )  # fmt: skip
        seeded[TRUE_CODES_ROW] = [(cfg.seed, evals[TRUE_CODES_ROW])]
    for seed in cfg.ranker_seeds[1:]:
        for row, arm in TABLE3_ARMS.items():
            name = run_name(arm, seed, cfg)
            report = run(
                f"ranker_{name}", lambda arm=arm, seed=seed: stage_arm(cfg, paths, arm, job.features(), ranker_seed=seed),
                key=job.arm_key(arm, seed), outputs=[paths.ranker(name)],
            )  # fmt: skip
            seeded[row].append((seed, report))
        if TRUE_CODES_ROW in seeded:
            name = run_name(TRUE_CODES_ROW, seed, cfg)
            report = run(
                f"ranker_{name}",
                lambda seed=seed: stage_arm(cfg, paths, "fluid", job.oracle_features(), ranker_seed=seed, row=TRUE_CODES_ROW, oracle_codes=True),
                key=job.arm_key("fluid", seed, oracle=True), outputs=[paths.ranker(name)],
            )  # fmt: skip
            seeded[TRUE_CODES_ROW].append((seed, report))
    for peer in PEER_ROWS:
        evals[peer] = run(
            f"peer_{peer}", lambda peer=peer: stage_peer(cfg, paths, peer, job.features()),
            key=stage_key("peer", job.keys["features"], peer, job.config["peers"]), outputs=[paths.ranker(peer)],
        )  # fmt: skip
    return evals, seeded


def _run_streams(job: _Job, seeded: dict[str, list[tuple[int, dict]]]) -> dict[str, list[tuple[int, dict]]]:
    """The streaming (test-then-train) evaluation of every seeded Table 3 run: row -> [(seed, report)]."""
    from fluidrec.experiments.stages import stage_key

    cfg, paths = job.cfg, job.paths
    streamed: dict[str, list[tuple[int, dict]]] = {row: [] for row in seeded}
    for row, runs in seeded.items():
        oracle = row == TRUE_CODES_ROW
        arm = "fluid" if oracle else TABLE3_ARMS[row]
        for seed, _ in runs:
            name = run_name(TRUE_CODES_ROW if oracle else arm, seed, cfg)
            report = job.runner.run(
                f"stream_{name}", lambda name=name, seed=seed, oracle=oracle: stage_stream(cfg, paths, name, seed, job.oracle_features() if oracle else job.features()),
                key=stage_key("stream", job.arm_key(arm, seed, oracle=oracle)),
            )  # fmt: skip
            streamed[row].append((seed, report))
    return streamed


def _run_online(job: _Job) -> tuple[dict, dict[str, dict]]:
    """The simulated online A/B test and its closed-loop runs: (A/B report, assignment -> closed report)."""
    from fluidrec.experiments.config import AB_ARMS
    from fluidrec.experiments.stages import stage_key

    cfg, paths, features_key = job.cfg, job.paths, job.keys["features"]
    ab_settings = {"requests": cfg.ab_requests, "candidates": cfg.ab_candidates, "n_boot": cfg.n_boot, "seed": cfg.seed}
    ab_arm_keys = [job.arm_key(arm, cfg.seed) for arm in AB_ARMS.values()]
    ab = job.runner.run("online_ab", lambda: stage_ab(cfg, paths, job.features()), key=stage_key("online_ab", features_key, ab_arm_keys, ab_settings))
    closed = {}
    for assignment in CLOSED_ASSIGNMENTS:
        # every test-day request, so not ab_requests; the ranker config: the arms keep training
        closed_settings = {"candidates": cfg.ab_candidates, "n_boot": cfg.n_boot, "seed": cfg.seed, "window_minutes": cfg.closed_window_minutes,
                           "assignment": assignment, "ranker": job.config["ranker"]}
        closed[assignment] = job.runner.run(
            f"online_ab_closed_{assignment}", lambda assignment=assignment: stage_ab_closed(cfg, paths, job.features(), assignment),
            key=stage_key("online_ab_closed", features_key, ab_arm_keys, closed_settings),
        )  # fmt: skip
    return ab, closed


def _run_encoder_checks(job: _Job) -> tuple[dict, dict | None]:
    """Table 6's rows: (lsa, ablation). The ablation (when ``ablation_steps``) brings its own lsa
    and oracle rows on every seed, so the single lsa peer stage runs only when it is skipped."""
    from fluidrec.experiments.stages import stage_key

    cfg, paths, world_key = job.cfg, job.paths, job.keys["world"]
    if cfg.ablation_steps > 0:
        ablation_key = stage_key("encoder_ablation", world_key, _neural_encoder_config(cfg).to_dict(), cfg.ablation_steps, cfg.ablation_seeds)
        ablation_runs = list(paths.ablation.iterdir()) if paths.ablation.is_dir() else []
        return None, job.runner.run("encoder_ablation", lambda: stage_ablation(cfg, paths), key=ablation_key, outputs=ablation_runs)
    lsa_key = stage_key("encoder_lsa", world_key, _lsa_config(cfg).to_dict(), job.keys["encoder"] if cfg.encoder_preset == "lsa" else None)
    lsa = job.runner.run("encoder_lsa", lambda: stage_encoder_lsa(cfg, paths), key=lsa_key, outputs=[] if cfg.encoder_preset == "lsa" else [paths.lsa])
    return lsa, None


def _results(job: _Job, upstream: dict[str, dict], evals, seeded, streamed, ab, closed, lsa, ablation) -> dict:
    """The results dict (every table, then each stage's summary) from the steps' outputs."""
    cfg = job.cfg
    truth_summary, codes_truth = upstream["truth"], upstream["codes_truth"]
    results = build_tables(evals, ab, ablation, seeded=seeded, truth=truth_summary.get("rows"), lsa=lsa, streamed=streamed, closed=closed)
    codes_quality = {**upstream["codes"], **({} if "skipped" in codes_truth else codes_truth), "encoder_preset": cfg.encoder_preset}
    seed_arms = {}  # the extra seeds' full evaluations, beside the run seed's under "arms"
    for row, runs in seeded.items():
        for seed, report in runs[1:]:
            seed_arms[run_name(TABLE3_ARMS.get(row, row), seed, cfg)] = report
    results.update(
        {
            "dataset": upstream["world"],
            "encoder": upstream["encoder"],
            "codes": codes_quality,
            "codes_oracle": upstream["codes_oracle"],
            "truth": truth_summary,
            "online_ab": {k: ab[k] for k in ("n_requests", "n_candidates", "n_users", "totals", "config")},
            "online_ab_closed": {a: {k: v for k, v in r.items() if k != "arms"} for a, r in closed.items()},
            "arms": {arm: {k: v for k, v in r.items() if k != "arm"} for arm, r in {**evals, **seed_arms}.items()},
            "ranker_seeds": list(cfg.ranker_seeds),
        }
    )
    return results
