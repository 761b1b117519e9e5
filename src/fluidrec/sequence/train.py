"""Training and evaluation of a sequence ranker on an event log, and its checkpoint.

Shape letters: B batch, S history length.

Targets are events of the log (``split_indices``): the model scores the engagement label of
each target event from the S events of the same user strictly before it (``history_batch``,
causal by construction). Training targets come from the training days, evaluation targets
from the test days; targets with fewer than ``min_history`` history events are left out of
both, and ``max_train`` / ``max_test`` take a seeded sample (the same for every arm of a run
with the same seed).

Metrics (``fluidrec.metrics``): AUC, GAUC (grouped by user), logloss over all test targets,
and AUC / GAUC over the cold ones (their item is in no training event).

Example:
    >>> train_idx, test_idx = sample_targets(log, SequenceTrainConfig(seq_len=256, max_train=40_000))
    >>> model, info = train_model(log, SequenceModelConfig(arm="compress"), SequenceTrainConfig(), train_idx)
    >>> evaluate(model, log, test_idx, seq_len=256)["auc"]
    >>> save_model(model, log, Path("runs/seq/model.pt")); model = load_model(Path("runs/seq/model.pt"))
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluidrec.errors import ConfigError, DataError
from fluidrec.metrics import auc, gauc, logloss
from fluidrec.sequence.config import SequenceModelConfig, SequenceTrainConfig
from fluidrec.sequence.events import EventLog, history_batch, split_indices
from fluidrec.sequence.models import SequenceRanker, build_model
from fluidrec.utils.io import load_torch_file, save_torch_file
from fluidrec.utils.seed import seed_everything

CHECKPOINT_VERSION = 2  # 2: SequenceModelConfig.recent (a version-1 model had no unfolded recent events)


def history_lengths(log: EventLog, idx: np.ndarray) -> np.ndarray:
    """(n,) number of events before each target (its full causal history, before cutting to S)."""
    return log.run_start[idx] - log.user_start[idx]


def sample_targets(log: EventLog, cfg: SequenceTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) target indices: enough history, capped by a seeded sample, sorted.

    Raises:
        DataError: no training or no test target is left.
    """
    rng = np.random.default_rng([cfg.seed, 0x5E0])
    out = []
    for split, cap in (("train", cfg.max_train), ("test", cfg.max_test)):
        idx = split_indices(log, split)
        idx = idx[history_lengths(log, idx) >= cfg.min_history]
        if cap and len(idx) > cap:
            idx = np.sort(rng.choice(idx, size=cap, replace=False))
        if len(idx) == 0:
            raise DataError(f"no {split} target has >= {cfg.min_history} history events", table="video_impressions", column="ts")
        out.append(idx.astype(np.int64))
    return out[0], out[1]


def check_model_fits(cfg: SequenceModelConfig, log: EventLog) -> None:
    """A semantic depth the log's codes have (a clear error instead of an index error deep in a batch)."""
    if cfg.history == "semantic" and cfg.depth > log.levels:
        raise ConfigError(f"model.depth {cfg.depth} exceeds the codes' {log.levels} levels")
    if cfg.history == "semantic" and not (log.codes[:, 0] >= 0).any():
        raise DataError("semantic histories need codes, but no event has one (give --codes or --true-codes)", table="codes", column="c1")


def train_model(log: EventLog, model_cfg: SequenceModelConfig, cfg: SequenceTrainConfig, train_idx: np.ndarray, *,
                progress: bool = True, desc: str | None = None) -> tuple[SequenceRanker, dict[str, Any]]:
    """Setup -> train (Adam, shuffled epochs, linear lr decay) -> cleanup; returns (model in eval mode, log).

    Args:
        log: the event log.
        model_cfg: the model.
        cfg: the loop (its seed seeds the init and the order).
        train_idx: training target indices (``sample_targets``).
        progress: a tqdm bar on stderr.
        desc: the bar's label.
    """
    from tqdm.auto import tqdm

    check_model_fits(model_cfg, log)
    rng = seed_everything(cfg.seed)
    model = build_model(model_cfg, n_items=log.n_items, codebook_size=log.codebook_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = cfg.epochs * -(-len(train_idx) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=max(steps, 1))
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=steps, desc=desc or model_cfg.name, unit="step", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        order = train_idx[rng.permutation(len(train_idx))]
        for s in range(0, len(order), cfg.batch_size):
            batch = history_batch(log, order[s:s + cfg.batch_size], cfg.seq_len)
            loss, _ = model.step(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return model, {"examples": int(len(train_idx)), "steps": len(losses), "final_loss": float(np.mean(tail)),
                   "seconds": round(time.perf_counter() - t0, 2)}


@torch.inference_mode()
def predict(model: SequenceRanker, log: EventLog, idx: np.ndarray, seq_len: int, batch: int = 1024) -> np.ndarray:
    """(n,) click probabilities of the targets ``idx``."""
    model.eval()
    out = [torch.sigmoid(model(history_batch(log, idx[s:s + batch], seq_len))).numpy() for s in range(0, len(idx), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def metrics_of(log: EventLog, idx: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """AUC / GAUC / logloss overall and AUC / GAUC on cold targets (NaN where a slice has one class)."""
    y, users, cold = log.label[idx].astype(np.int64), log.user[idx], log.cold[idx]

    def safe_auc(m: np.ndarray) -> float:
        return float(auc(y[m], p[m])) if m.any() and 0 < y[m].sum() < m.sum() else float("nan")

    every = np.ones(len(idx), dtype=bool)
    return {
        "auc": safe_auc(every), "gauc": float(gauc(users, y, p)), "logloss": float(logloss(y, p)),
        "cold_auc": safe_auc(cold), "cold_gauc": float(gauc(users[cold], y[cold], p[cold])) if cold.any() else float("nan"),
        "n": int(len(idx)), "n_cold": int(cold.sum()), "label_rate": float(y.mean()) if len(y) else float("nan"),
    }


def evaluate(model: SequenceRanker, log: EventLog, idx: np.ndarray, seq_len: int) -> dict[str, Any]:
    """:func:`metrics_of` the model's predictions on ``idx`` with histories of ``seq_len`` events."""
    return metrics_of(log, idx, predict(model, log, idx, seq_len))


def save_model(model: SequenceRanker, log: EventLog, path: Path, train_cfg: SequenceTrainConfig | None = None) -> Path:
    """Checkpoint (``torch.save`` with a sha256 sidecar): weights, model config, table sizes."""
    return save_torch_file({
        "version": CHECKPOINT_VERSION, "state_dict": model.state_dict(), "model": dataclasses.asdict(model.cfg),
        "train": dataclasses.asdict(train_cfg) if train_cfg else None, "n_items": log.n_items, "codebook_size": log.codebook_size,
        "levels": log.levels,
    }, path)


def load_model(path: Path) -> tuple[SequenceRanker, dict[str, Any]]:
    """(model in eval mode, checkpoint dict) from :func:`save_model`'s file (``weights_only`` load)."""
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"not a fluidrec sequence checkpoint (version {CHECKPOINT_VERSION})", table=str(path))
    model = build_model(SequenceModelConfig(**ckpt["model"]), n_items=int(ckpt["n_items"]), codebook_size=int(ckpt["codebook_size"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"checkpoint weights do not fit its config ({str(exc).splitlines()[0][:120]})", table=str(path)) from None
    return model.eval(), ckpt


def check_log_matches(ckpt: dict[str, Any], log: EventLog, path: Path) -> None:
    """The log a checkpoint is evaluated on must have its item count and codebook (else rows mean other items)."""
    for key, have in (("n_items", log.n_items), ("codebook_size", log.codebook_size)):
        if int(ckpt[key]) != have:
            raise DataError(f"the model was trained on a log with {key} = {ckpt[key]}, this log has {have}", table=str(path), column=key)
