"""Streaming training of one arm: impressions in event-time order, stage by stage.

setup (features, plan) -> for each stage: build the stage's model, warm-start it from
the previous stage, train one pass (``epochs`` passes) over the stage's share of the
training stream -> save checkpoint, resolved config, training summary and diagnostics.

The large ID tables (user, author, item) are sparse and use SparseAdam (only touched
rows are updated, as production online training does); everything else, code tables
included, uses one fused Adam.

Example:
    >>> path = train_arm("fluid", "data/tiny", "codes/slice_codes.parquet",
    ...                  "codes/room_codes.parquet", "runs/fluid", ranker_demo())
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fluidrec.errors import check
from fluidrec.ranker.arms import ArmPlan, build_arm
from fluidrec.ranker.backbone import BackboneConfig
from fluidrec.ranker.batching import Batch
from fluidrec.ranker.diagnostics import IdNormByAge, gate_by_id_norm
from fluidrec.ranker.features import FeatureConfig, Features, load_or_build_features
from fluidrec.ranker.heads import DEFAULT_TASKS, Task
from fluidrec.ranker.model import Ranker, RankerSpec, build_ranker, init_from, save_checkpoint
from fluidrec.ranker.optim_state import optimizer_state_by_name, restore_optimizer_state
from fluidrec.ranker.tokens import TokenizerConfig
from fluidrec.ranker.warmup import WarmupStage, WarmupConfig, id_scale_at
from fluidrec.utils.io import write_json
from fluidrec.utils.seed import seed_everything

CHECKPOINT = "model.pt"
CONFIG = "config.json"
SUMMARY = "train_summary.json"
DIAGNOSTICS = "diagnostics.json"


@dataclasses.dataclass(frozen=True)
class RankerModelConfig:
    """Ranker sizes shared by all arms (arms only change the candidate side).

    Args:
        dim: token width D. layers, heads, ffn_mult: backbone. head_hidden: task-head width.
        use_author: include the author-ID token (in every arm).
        code_rows_cap: max rows of a prefix n-gram level table.
        id_init_std: init std of the item-ID table.
    """

    dim: int = 32
    layers: int = 2
    heads: int = 2
    ffn_mult: int = 2
    head_hidden: int = 64
    use_author: bool = True
    code_rows_cap: int = 1 << 15
    id_init_std: float = 0.01

    def __post_init__(self) -> None:
        BackboneConfig(self.dim, self.layers, self.heads, self.ffn_mult)  # validates
        check(self.head_hidden >= 1, f"head_hidden must be >= 1, got {self.head_hidden}")


@dataclasses.dataclass(frozen=True)
class RankerTrainConfig:
    """One arm's training run.

    Args:
        seed: makes the run deterministic (init and nothing else random: the stream order is fixed).
        batch_size: impressions per step.
        lr: Adam learning rate of dense weights; sparse_lr: SparseAdam rate of embedding tables.
        epochs: passes over each stage's share of the stream (1 = production-style online).
        threads: torch intra-op threads.
        max_train_rows: use only the first rows of the training stream (None = all).
        model, features, warmup: sub-configs; tasks: prediction tasks.
        em3_weight: alignment-loss weight of the late_em3 arm.
        diag_every: record item-ID norms vs room age every this many steps.
        carry_optimizer: a warmup stage resumes the optimizer state (Adam moments, step) of
            every parameter that persists from the previous stage (False: fresh optimizers).
        progress: show tqdm bars.
    """

    seed: int = 0
    batch_size: int = 1024
    lr: float = 2e-3
    sparse_lr: float = 1e-2
    epochs: int = 1
    threads: int = 2
    max_train_rows: int | None = None
    model: RankerModelConfig = dataclasses.field(default_factory=RankerModelConfig)
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    warmup: WarmupConfig = dataclasses.field(default_factory=WarmupConfig)
    tasks: tuple[Task, ...] = DEFAULT_TASKS
    em3_weight: float = 0.1
    diag_every: int = 10
    carry_optimizer: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.lr > 0 and self.sparse_lr > 0, "learning rates must be > 0")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        check(self.max_train_rows is None or self.max_train_rows >= 1, "max_train_rows must be >= 1")
        check(self.em3_weight >= 0, "em3_weight must be >= 0")
        check(self.diag_every >= 1, "diag_every must be >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankerTrainConfig:
        d = dict(d)
        d["model"] = RankerModelConfig(**d.get("model", {}))
        d["features"] = FeatureConfig(**d.get("features", {}))
        d["warmup"] = WarmupConfig(**d.get("warmup", {}))
        d["tasks"] = tuple(Task(**t) for t in d["tasks"]) if "tasks" in d else DEFAULT_TASKS
        return cls(**d)


def ranker_demo() -> RankerTrainConfig:
    """Small and fast: for the main job's ~13 arms on ~1M impressions on 2 CPU cores."""
    # One attention head: at D = 16 and T = 7 the CPU attention kernel costs per (row, head)
    # block, so a second head costs a noticeable share of the training step without a
    # better AUC on the small world.
    return RankerTrainConfig(batch_size=2048, model=RankerModelConfig(dim=16, layers=1, heads=1, ffn_mult=2, head_hidden=32))


def ranker_small() -> RankerTrainConfig:
    """The default ranker of the benchmark: wider tokens, two layers."""
    return RankerTrainConfig(batch_size=1024, model=RankerModelConfig(dim=64, layers=2, heads=4, ffn_mult=2, head_hidden=64))


def ranker_spec(cfg: RankerTrainConfig, feats: Features, plan: ArmPlan, stage: WarmupStage) -> RankerSpec:
    """The RankerSpec of one stage of an arm on these features."""
    m = cfg.model
    tok_cfg = TokenizerConfig(
        dim=m.dim,
        num_codes=feats.num_codes,
        levels=feats.levels,
        scheme=plan.scheme,
        shared_code_tables=plan.shared_code_tables,
        code_rows_cap=m.code_rows_cap,
        user_buckets=feats.config.user_buckets,
        author_buckets=feats.config.author_buckets,
        item_rows=len(feats.room_vocab) + 1,
        history_len=feats.config.history_len,
        id_init_std=m.id_init_std,
    )
    fixed = ("user", "profile", "context", "history") + (("author",) if m.use_author else ())
    return RankerSpec(
        tokenizer=tok_cfg,
        tokens=fixed + stage.tokens,
        backbone=BackboneConfig(m.dim, m.layers, m.heads, m.ffn_mult),
        fusion=stage.fusion,
        tasks=cfg.tasks,
        head_hidden=m.head_hidden,
    )


def make_optimizers(model: Ranker, cfg: RankerTrainConfig) -> list[torch.optim.Optimizer]:
    """SparseAdam for the sparse ID tables, one fused Adam for the rest (code tables included)."""
    # fused: one kernel over all dense tensors instead of ~10 small ops per tensor per step.
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam(model.dense_parameters(), lr=cfg.lr, fused=True)]
    sparse = model.sparse_parameters()
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=cfg.sparse_lr))
    return opts


def em3_loss(s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """EM3-style alignment: 1 - cos(s, stop_grad(g)), pulling the slice embedding toward the ID."""
    return (1.0 - F.cosine_similarity(s, g.detach(), dim=-1)).mean()


def update_step(
    model: Ranker, batch: Batch, opts: list[torch.optim.Optimizer], em3_weight: float = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step: forward, loss, backward and a step of every optimiser in ``opts``.

    Returns (loss, detached outputs: logits, g, alpha, ...). Named for what it does, unlike
    ``fluidrec.encoder.train.train_step``, which only computes the loss.
    """
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    out = model(batch)
    loss = model.loss(out, batch)
    if em3_weight > 0 and "s" in out.aux and "g" in out.aux:
        loss = loss + em3_weight * em3_loss(out.aux["s"], out.aux["g"])
    loss.backward()
    for opt in opts:
        opt.step()
    detached = {"logits": out.logits.detach(), **{k: v.detach() for k, v in out.aux.items()}}
    return loss.detach(), detached


@dataclasses.dataclass
class StageResult:
    name: str
    tokens: tuple[str, ...]
    rows: tuple[int, int]
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    samples_per_s: float
    final_id_scale: float
    epochs: int = 1
    heldout_losses: tuple[float, ...] = ()
    optimizer_resumed: int = 0
    trained_rows: int = 0  # rows fed to training steps, every pass counted


def stage_bounds(plan: ArmPlan, n_rows: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) row ranges of each stage over the first ``n_rows`` training rows."""
    bounds, start, acc = [], 0, 0.0
    for i, stage in enumerate(plan.stages):
        acc += stage.fraction
        stop = n_rows if i == len(plan.stages) - 1 else int(round(acc * n_rows))
        bounds.append((start, stop))
        start = stop
    return bounds


HOLDOUT = 0.1  # share of a converging stage's rows (its most recent) held out for early stopping


class _StepLoop:
    """The optimisation steps of one stage: passes over row ranges, losses, progress bar."""

    def __init__(self, model: Ranker, feats: Features, stage: WarmupStage, cfg: RankerTrainConfig,
                 opts: list[torch.optim.Optimizer], total: int, norms: IdNormByAge | None) -> None:  # fmt: skip
        self.model, self.feats, self.stage, self.cfg, self.opts = model, feats, stage, cfg, opts
        self.total, self.norms, self.step, self.rows = max(total, 1), norms, 0, 0
        self.em3 = cfg.em3_weight if stage.em3_weight > 0 else 0.0
        self.losses: list[float] = []
        self.bar = tqdm(total=total, desc=stage.name, disable=not cfg.progress, leave=False, unit="step")

    def run(self, start: int, stop: int) -> None:
        """One pass over rows [start, stop) in time order."""
        cfg, model = self.cfg, self.model
        model.train()
        for b0 in range(start, stop, cfg.batch_size):
            scale = id_scale_at(self.stage, min(self.step / self.total, 1.0))
            model.tokenizer.id_scale.fill_(scale)
            batch = self.feats.batch(slice(b0, min(b0 + cfg.batch_size, stop)))
            loss, out = update_step(model, batch, self.opts, self.em3)
            self.losses.append(float(loss))
            if self.norms is not None and "g" in out and scale > 0 and self.step % cfg.diag_every == 0:
                self.norms.add(batch.age_min.numpy(), (out["g"] / scale).norm(dim=-1).numpy())
            self.step += 1
            if self.step % 20 == 0:
                self.bar.set_postfix(loss=f"{np.mean(self.losses[-20:]):.4f}", id_scale=f"{scale:.2f}")
            self.bar.update(1)
        self.rows += stop - start


def heldout_loss(model: Ranker, feats: Features, start: int, stop: int, batch_size: int) -> float:
    """Mean training loss of ``model`` on rows [start, stop), without updating it."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for b0 in range(start, stop, batch_size):
            batch = feats.batch(slice(b0, min(b0 + batch_size, stop)))
            total += float(model.loss(model(batch), batch)) * len(batch)
            n += len(batch)
    model.train()
    return total / max(n, 1)


def _converge(loop: _StepLoop, start: int, stop: int) -> tuple[int, tuple[float, ...]]:
    """Early-stopped passes over [start, cut), best epoch restored, then one pass over the tail [cut, stop)."""
    model, opts = loop.model, loop.opts
    cut = start + max(int(round((stop - start) * (1.0 - HOLDOUT))), 1)
    best, best_epochs, kept, losses = math.inf, 0, None, []
    for epoch in range(loop.stage.max_epochs):
        loop.run(start, cut)
        losses.append(heldout_loss(model, loop.feats, cut, stop, loop.cfg.batch_size))
        if losses[-1] >= best:
            break  # patience 1: one epoch without improvement ends the stage
        best, best_epochs = losses[-1], epoch + 1
        kept = ({k: v.detach().clone() for k, v in model.state_dict().items()}, optimizer_state_by_name(model, opts))
    if kept is not None and best_epochs < len(losses):
        model.load_state_dict(kept[0])
        for opt in opts:
            opt.state.clear()
        restore_optimizer_state(model, opts, kept[1])
    loop.run(cut, stop)
    return best_epochs, tuple(losses)


def run_stage(
    model: Ranker,
    feats: Features,
    rows: tuple[int, int],
    stage: WarmupStage,
    cfg: RankerTrainConfig,
    norms: IdNormByAge | None = None,
    opt_state: dict[str, dict[str, object]] | None = None,
) -> tuple[StageResult, dict[str, dict[str, object]]]:
    """Train ``model`` over rows [start, stop) in time order; returns its result and the optimizer state.

    ``cfg.epochs`` passes, or, for a stage with ``max_epochs`` > 1, to convergence
    (``_converge``). ``opt_state`` (from the previous stage) resumes the persisting parameters.
    """
    start, stop = rows
    opts = make_optimizers(model, cfg)
    resumed = restore_optimizer_state(model, opts, opt_state) if opt_state else 0
    steps_per_pass = max(math.ceil((stop - start) / cfg.batch_size), 1)
    converging = stage.max_epochs > 1 and stop - start >= 2
    loop = _StepLoop(model, feats, stage, cfg, opts, steps_per_pass * (stage.max_epochs if converging else cfg.epochs), norms)
    t0 = time.perf_counter()
    if converging:
        epochs, heldout = _converge(loop, start, stop)
    else:
        epochs, heldout = cfg.epochs, ()
        for _ in range(cfg.epochs):
            loop.run(start, stop)
    loop.bar.close()
    model.tokenizer.id_scale.fill_(id_scale_at(stage, 1.0))
    secs = time.perf_counter() - t0
    k = max(len(loop.losses) // 10, 1)
    head = float(np.mean(loop.losses[:k])) if loop.losses else float("nan")
    tail = float(np.mean(loop.losses[-k:])) if loop.losses else float("nan")
    result = StageResult(stage.name, stage.tokens, rows, loop.step, head, tail, secs, loop.rows / secs if secs > 0 else 0.0,
                         float(model.tokenizer.id_scale), epochs, heldout, resumed, loop.rows)  # fmt: skip
    return result, optimizer_state_by_name(model, opts)


def train_plan(plan: ArmPlan, feats: Features, cfg: RankerTrainConfig) -> tuple[Ranker, list[StageResult], IdNormByAge]:
    """Run every stage of ``plan`` on the training rows; returns the final model and per-stage results."""
    n_rows = feats.n_train if cfg.max_train_rows is None else min(cfg.max_train_rows, feats.n_train)
    bounds = stage_bounds(plan, n_rows)
    carry: dict[str, torch.Tensor] = {}  # latest value of every weight seen so far (ID table survives stage 3)
    prev_tokens: tuple[str, ...] = ()
    opt_state: dict[str, dict[str, object]] = {}  # optimizer state of persisting parameters (carry_optimizer)
    model: Ranker | None = None
    results: list[StageResult] = []
    norms = IdNormByAge()
    for i, (stage, rows) in enumerate(zip(plan.stages, bounds, strict=True)):
        torch.manual_seed(cfg.seed * 1000 + i)
        model = build_ranker(ranker_spec(cfg, feats, plan, stage), feats.room_vocab)
        if stage.init and carry:
            init_from(model, carry, prev_tokens, dict(stage.copy_tokens))
        model.tokenizer.id_scale.fill_(stage.id_scale_from)
        result, state = run_stage(model, feats, rows, stage, cfg, norms, opt_state if stage.init else None)
        results.append(result)
        opt_state = state if cfg.carry_optimizer else {}
        carry.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        prev_tokens = model.token_names
    assert model is not None
    return model, results, norms


def train_arm(
    arm: str,
    dataset_dir: str | os.PathLike,
    codes_path: str | os.PathLike,
    room_codes_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: RankerTrainConfig | None = None,
    *,
    features: Features | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Train one arm and write ``model.pt``, ``config.json``, ``train_summary.json``, ``diagnostics.json``.

    Args:
        arm: one of ``fluidrec.ranker.arms.ARMS``.
        dataset_dir: canonical dataset.
        codes_path, room_codes_path: slice and room code files (docs/CONTRACTS.md).
        out_dir: output directory (created).
        cfg: training config (default ``ranker_demo()``).
        features: prebuilt features (the main job builds them once for all arms).
        cache_dir: where to cache features when ``features`` is None.

    Returns:
        path of the checkpoint.

    Example:
        >>> ckpt = train_arm("baseline", ds, codes, room_codes, "runs/baseline", ranker_demo())
    """
    cfg = cfg or ranker_demo()
    plan = build_arm(arm, cfg.warmup)  # bad arm names fail before any work
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    if features is None:
        features = load_or_build_features(dataset_dir, codes_path, room_codes_path, cfg.features, cache_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, results, norms = train_plan(plan, features, cfg)
    secs = time.perf_counter() - t0
    model.eval()
    diag: dict[str, Any] = {"id_norm_by_age": norms.to_dict()}
    if model.tokenizer.early is not None and model.tokenizer.early.kind.startswith("gate"):
        diag["gate_by_id_norm"] = gate_by_id_norm(model, features, slice(features.n_train, len(features)))
    resolved = {
        "arm": arm,
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "codes_path": str(Path(codes_path).resolve()),
        "room_codes_path": str(Path(room_codes_path).resolve()),
        "plan": dataclasses.asdict(plan),
        "train": dataclasses.asdict(cfg),
    }
    ckpt = save_checkpoint(model, out / CHECKPOINT, extra={"arm": arm})
    write_json(out / CONFIG, resolved)
    n_rows = sum(r.trained_rows for r in results)
    summary = {
        "arm": arm,
        "train_rows": n_rows,
        "seconds": secs,
        "samples_per_s": n_rows / secs if secs > 0 else 0.0,
        "stages": [dataclasses.asdict(r) for r in results],
        "final_tokens": list(model.token_names),
    }
    write_json(out / SUMMARY, summary)
    write_json(out / DIAGNOSTICS, diag)
    if cfg.progress:
        last = results[-1]
        print(
            f"trained {arm}: {n_rows} rows in {secs:.1f}s ({summary['samples_per_s']:.0f}/s), "
            f"{len(results)} stage(s), final loss {last.last_loss:.4f}, tokens {', '.join(model.token_names)} -> {out}"
        )
    return ckpt
