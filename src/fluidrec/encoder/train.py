"""Two-stage Q2I contrastive training of the encoder (FLUID 3.1.3): setup -> stages -> save.

Stages are data (``Stage``): *alignment* trains only the vision projector and the output
projection (the LM and vision backbone stay frozen, preserving their pre-trained semantics);
*joint* fine-tunes everything at a reduced learning rate. ``align_fraction=0`` gives the
single-stage (end-to-end) schedule of the ablation.

The run directory holds ``checkpoint.pt`` (model + optimiser + RNG + loss log, written
atomically every ``checkpoint_every`` steps); a rerun with the same directory resumes from it
and ends with the same weights as an uninterrupted run. The finished directory is a model
directory (see ``model.save_encoder``) plus ``train_log.json``.

Example:
    >>> path = train_encoder(encoder_demo(seed=0), "data/world", "runs/encoder")
    >>> model, cfg = load_encoder(path)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fluidrec.data.io import Dataset
from fluidrec.encoder.config import EncoderConfig
from fluidrec.encoder.data import (
    EncoderData,
    PairSampler,
    dataset_frame_size,
    heldout_slices,
    item_batch,
    load_encoder_data,
    query_batch,
    train_queries,
)
from fluidrec.encoder.loss import false_negative_mask, info_nce
from fluidrec.encoder.lsa import training_documents
from fluidrec.encoder.model import MODEL_FILE, MultimodalEncoder, build_encoder, save_encoder
from fluidrec.encoder.vocab import base_word_table, extend_vocabulary, select_words
from fluidrec.errors import DataError, UsageError
from fluidrec.utils.io import load_torch_file, read_json, save_torch_file, to_jsonable, write_json
from fluidrec.utils.seed import seed_everything

CHECKPOINT = "checkpoint.pt"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: a name, its steps, learning rate and what trains (``head`` or ``all``)."""

    name: str
    steps: int
    lr: float
    trains: str


def stages_for(cfg: EncoderConfig) -> list[Stage]:
    """The schedule: [alignment, joint] or a single end-to-end stage when ``align_fraction == 0``."""
    t = cfg.train
    n_align = t.align_steps
    if n_align == 0:
        return [Stage("single", t.steps, t.lr, "all")]
    return [Stage("align", n_align, t.lr, "head"), Stage("joint", t.steps - n_align, t.lr * t.joint_lr_scale, "all")]


def set_trainable(model: MultimodalEncoder, trains: str, *, freeze_word_embeddings: bool = False) -> list[torch.nn.Parameter]:
    """Freeze/unfreeze for a stage; returns the trainable parameters.

    Args:
        trains: ``"head"`` (vision projector + output projection) or ``"all"``.
        freeze_word_embeddings: with ``"all"``, keep the LM's input word-embedding table frozen.
    """
    if trains == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        if freeze_word_embeddings:
            # Only the pre-trained word table: added words, position/type embeddings and their LayerNorm still train.
            base_word_table(model.lm).weight.requires_grad_(False)
        return [p for p in model.parameters() if p.requires_grad]
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.head_parameters()
    for p in head:
        p.requires_grad_(True)
    return head


def _make_optimizer(params, stage: Stage, cfg: EncoderConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=stage.lr, weight_decay=cfg.train.weight_decay)


def stage_lr(stage: Stage, step_in_stage: int, schedule: str) -> float:
    """Learning rate of the stage's ``step_in_stage``-th step (0-based): constant, or a half cosine to 0.

    A function of the step alone, so a resumed run sets the same rates.

    Example:
        >>> stage_lr(Stage("joint", 4, 1.0, "all"), 2, "cosine")
        0.5
    """
    if schedule == "constant":
        return stage.lr
    return stage.lr * 0.5 * (1.0 + math.cos(math.pi * step_in_stage / stage.steps))


def train_step(
    model: MultimodalEncoder, data, qidx: np.ndarray, cfg: EncoderConfig, mask_model: MultimodalEncoder | None = None,
) -> tuple[torch.Tensor, dict]:
    """Forward + loss of one batch of query indices -> (loss, detached outputs).

    ``mask_model`` (a frozen copy of the model at initialisation) supplies the query embeddings
    of the false-negative mask. Taking them from the model being trained lets it game the mask:
    collapsed queries mask every negative and the loss drops to 0 (seen on the ``small`` world:
    992 of 992 negatives masked within 20 steps). None uses the live queries (detached).
    """
    items = data.query_item[qidx]
    qb = query_batch(data, qidx, model.text.pad_id)
    q = model.encode_queries(qb)  # (B, D)
    z = model.encode_items(item_batch(data, items, model.text.pad_id))  # (B, D)
    if mask_model is None:
        q_mask = q.detach()
    else:
        with torch.no_grad():
            q_mask = mask_model.encode_queries(qb)  # (B, D) fixed similarity: cannot collapse
    keep = false_negative_mask(q_mask, cfg.train.fn_threshold, torch.from_numpy(items))  # (B, B)
    loss = info_nce(q, z, cfg.train.temperature, keep=keep, symmetric=cfg.train.symmetric)
    return loss, {"masked": int((~keep).sum().item()), "q": q.detach(), "z": z.detach()}


def _save_checkpoint(out: Path, model, opt, step: int, stage_idx: int, log: list) -> None:
    state = {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "stage": stage_idx,
        "torch_rng": torch.get_rng_state(), "log": log,
    }
    save_torch_file(state, out / CHECKPOINT)


_CHECKPOINT_KEYS = ("model", "optimizer", "step", "stage", "torch_rng", "log")


def _read_checkpoint(path: Path, model: nn.Module) -> dict:
    """Load a resume checkpoint (plain data only) and its weights into ``model``."""
    ckpt = load_torch_file(path)
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise DataError(f"not an encoder checkpoint (missing {', '.join(missing)}); delete it to start over", table=str(path))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise DataError(f"checkpoint weights do not fit this model: {str(exc)[:200]}", table=str(path)) from None
    return ckpt


def train_encoder(
    cfg: EncoderConfig,
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train the encoder on a dataset's query-slice pairs; returns the model directory.

    Args:
        cfg: model + training recipe + seed.
        dataset_dir: canonical dataset (``slices`` and ``queries``).
        out_dir: run / model directory (created). An existing ``checkpoint.pt`` with the same
            config is resumed when ``resume``.
        progress: show a tqdm bar.
        stop_after: stop (checkpoint kept, no final model) after this many total steps; for
            time-boxed jobs and for testing resume.

    Example:
        >>> model_dir = train_encoder(encoder_tiny(), "data/tiny", "runs/enc")
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.seed)
    run = _setup_run(cfg, dataset_dir)
    stages = stages_for(cfg)
    state = _resume_or_start(cfg, out, run.model, resume)

    run.model.train()
    bar = tqdm(total=cfg.train.steps, initial=state.step, desc="encoder train", unit="step", disable=not progress)
    finished = _train_stages(run, cfg, stages, state, out, stop_after, bar)
    bar.close()
    if not finished:
        return out
    _save_model_and_log(run, cfg, stages, state.log, out)
    return out


@dataclasses.dataclass
class _Run:
    """What a training run works on, built once before the first step."""

    model: MultimodalEncoder
    mask_model: MultimodalEncoder | None  # frozen copy at initialisation for the false-negative mask
    data: EncoderData
    held: np.ndarray  # (N,) bool held-out slices
    sampler: PairSampler
    t0: float  # perf_counter when loading started
    t_load: float  # seconds spent loading and tokenizing


def _setup_run(cfg: EncoderConfig, dataset_dir: str | os.PathLike) -> _Run:
    """Build the model (and its frozen mask copy), load the data, hold out slices, make the sampler."""
    ds = Dataset(dataset_dir)
    if not ds.has("queries"):
        raise DataError("the encoder trains on query-slice pairs but the dataset has no queries table", table=str(ds.root / "queries.parquet"))
    frame_size = dataset_frame_size(ds)
    model = build_encoder(cfg.model, frame_size)
    if cfg.model.added_words:
        docs, held_docs = training_documents(ds, cfg.model.fields, cfg.train.eval_fraction, cfg.seed, require_text=False)
        words = select_words([d for d, h in zip(docs, held_docs) if not h], model.text.tokenizer, cfg.model.added_words)
        extend_vocabulary(model, words)
    # Frozen snapshot before any checkpoint is loaded: the same on a fresh run and on a resume.
    mask_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.train.fn_threshold < 1 else None
    t0 = time.perf_counter()
    data = load_encoder_data(ds, model.text, frame_size)
    t_load = time.perf_counter() - t0
    held = heldout_slices(data, cfg.train.eval_fraction, cfg.seed)
    sampler = PairSampler(train_queries(data, held), data.query_is_video, cfg.train.batch_size, cfg.train.video_ratio, cfg.seed)
    return _Run(model, mask_model, data, held, sampler, t0, t_load)


@dataclasses.dataclass
class _ResumeState:
    """Where training starts: step, stage index, loss log so far and the checkpoint (None on a fresh run)."""

    step: int
    stage_idx: int
    log: list
    ckpt: dict | None


def _resume_or_start(cfg: EncoderConfig, out: Path, model: MultimodalEncoder, resume: bool) -> _ResumeState:
    """Load ``checkpoint.pt`` into ``model`` when resuming (same config only); (re)write ``run_config.json``."""
    resolved = json.loads(json.dumps(to_jsonable(cfg)))  # as it reads back from JSON (tuples -> lists)
    ckpt_path = out / CHECKPOINT
    state = _ResumeState(0, 0, [], None)
    if resume and ckpt_path.exists():
        saved = read_json(out / "run_config.json") if (out / "run_config.json").exists() else None
        if saved != resolved:
            raise UsageError(f"{out} holds a checkpoint of a different config; use a new --out or delete {ckpt_path}")
        ckpt = _read_checkpoint(ckpt_path, model)
        state = _ResumeState(int(ckpt["step"]), int(ckpt["stage"]), list(ckpt["log"]), ckpt)
    write_json(out / "run_config.json", resolved)
    return state


def _train_stages(run: _Run, cfg: EncoderConfig, stages: list[Stage], state: _ResumeState, out: Path, stop_after: int | None, bar) -> bool:
    """Train the stages from ``state``, checkpointing on the way and at the end; False when ``stop_after`` stopped it.

    ``state.step`` and ``state.log`` advance in place.
    """
    model, log = run.model, state.log
    step = state.step
    stage_start = sum(s.steps for s in stages[: state.stage_idx])
    ckpt, opt = state.ckpt, None
    for si in range(state.stage_idx, len(stages)):
        stage = stages[si]
        params = set_trainable(model, stage.trains, freeze_word_embeddings=cfg.train.freeze_word_embeddings)
        opt = _make_optimizer([p for p in params if p.requires_grad], stage, cfg)
        if ckpt is not None and si == state.stage_idx and step > stage_start:
            opt.load_state_dict(ckpt["optimizer"])  # mid-stage resume: same optimiser state
        if ckpt is not None:
            torch.set_rng_state(ckpt["torch_rng"])  # dropout continues where it stopped
            ckpt = None
        stage_end = stage_start + stage.steps
        while step < stage_end:
            if stop_after is not None and step >= stop_after:
                _save_checkpoint(out, model, opt, step, si, log)
                state.step = step
                return False
            for group in opt.param_groups:
                group["lr"] = stage_lr(stage, step - stage_start, cfg.train.lr_schedule)
            loss, info = train_step(model, run.data, run.sampler.batch(step), cfg, run.mask_model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], cfg.train.grad_clip)
            opt.step()
            step += 1
            log.append({"step": step, "stage": stage.name, "loss": float(loss.item()), "masked": info["masked"]})
            bar.update(1)
            bar.set_postfix(stage=stage.name, loss=f"{loss.item():.3f}")
            if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0 and step < cfg.train.steps:
                _save_checkpoint(out, model, opt, step, si if step < stage_end else si + 1, log)
        stage_start = stage_end
    state.step = step
    if opt is not None:
        _save_checkpoint(out, model, opt, step, len(stages), log)
    return True


def _save_model_and_log(run: _Run, cfg: EncoderConfig, stages: list[Stage], log: list, out: Path) -> None:
    """Save the finished model (with a training summary) and ``train_log.json``."""
    run.model.eval()
    first = float(np.mean([r["loss"] for r in log[:10]])) if log else float("nan")
    last = float(np.mean([r["loss"] for r in log[-10:]])) if log else float("nan")
    summary = {
        "steps": cfg.train.steps, "stages": [dataclasses.asdict(s) for s in stages],
        "loss_first10": first, "loss_last10": last, "slices": int(len(run.data.slice_ids)),
        "train_queries": int(len(run.sampler.live) + len(run.sampler.video)), "heldout_slices": int(run.held.sum()),
        "load_s": round(run.t_load, 2), "train_s": round(time.perf_counter() - run.t0 - run.t_load, 2),
    }
    save_encoder(run.model, cfg, out, extra={"training": summary})
    write_json(out / "train_log.json", {"summary": summary, "log": log})


def is_trained(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` holds a finished model."""
    d = Path(model_dir)
    return (d / MODEL_FILE).exists() and (d / "config.json").exists()
