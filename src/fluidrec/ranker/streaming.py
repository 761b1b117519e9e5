"""Streaming evaluation (test-then-train, also called progressive validation).

Over the test period, impressions arrive in event-time order in batches; each batch is
scored by the model as it stands, and only then trained on, with the optimizers of online
training. The metrics are computed on the scores made before the model saw the labels, so a
model that memorises labels is at chance on its first sight of them. Unlike the frozen
protocol (``evaluate_model``), a room's item-ID row keeps learning while the room is on air,
which is the production setting the paper's trade-off is about (fluid.txt section 3.4.3).

Example:
    >>> report = evaluate_streaming("runs/fluid", "data/tiny")
    >>> report["buckets"]["age_lt10"]["click"]["auc"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluidrec.errors import DataError, UsageError
from fluidrec.ranker.features import Features, features_for_run
from fluidrec.ranker.model import Ranker, load_checkpoint
from fluidrec.ranker.train import CHECKPOINT, CONFIG, RankerTrainConfig, make_optimizers, update_step
from fluidrec.utils.io import read_json


def stream_predict(model: Ranker, feats: Features, rows: slice, cfg: RankerTrainConfig) -> np.ndarray:
    """(n, n_tasks) probabilities over ``rows``, each batch scored before the model trains on it.

    ``model`` is trained in place (one pass, ``cfg.batch_size`` rows per step, fresh
    optimizers with ``cfg.lr`` and ``cfg.sparse_lr``).
    """
    if not np.array_equal(model.room_vocab.numpy(), feats.room_vocab):
        raise UsageError("streaming evaluation needs the features of the dataset the model was trained on (room vocabularies differ)")
    torch.manual_seed(cfg.seed)
    opts = make_optimizers(model, cfg)
    out = []
    for b0 in range(rows.start, rows.stop, cfg.batch_size):
        batch = feats.batch(slice(b0, min(b0 + cfg.batch_size, rows.stop)))
        model.eval()
        with torch.inference_mode():
            out.append(torch.sigmoid(model(batch).logits).numpy())  # (b, n_tasks)
        model.train()
        update_step(model, batch, opts)
    model.eval()
    return np.concatenate(out) if out else np.zeros((0, len(model.tasks)), np.float32)


def evaluate_streaming(
    model_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    *,
    features: Features | None = None,
    cfg: RankerTrainConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``evaluate_model``'s report under the streaming protocol (same keys, plus ``protocol``).

    Args:
        model_dir: output directory of ``train_arm`` (the model after the training days).
        dataset_dir: the dataset it was trained on.
        features: prebuilt features (skips the build).
        cfg: online-training settings (default: the run's own ``RankerTrainConfig``).
    """
    from fluidrec.ranker.evaluate import metrics_report

    d = Path(model_dir)
    if not (d / CHECKPOINT).exists():
        raise UsageError(f"{d} is not a trained ranker directory (no {CHECKPOINT})")
    run = read_json(d / CONFIG)
    model = load_checkpoint(d / CHECKPOINT)
    if cfg is None:
        cfg = RankerTrainConfig.from_dict({**run["train"], "progress": False})
    if features is None:
        features = features_for_run(run, "train", dataset_dir, None, None, cache_dir)
    if features.levels != model.spec.tokenizer.levels:
        raise DataError(f"codes have {features.levels} levels but the model was trained on {model.spec.tokenizer.levels}", table="codes")
    torch.set_num_threads(cfg.threads)
    rows = slice(features.n_train, len(features))
    probs = stream_predict(model, features, rows, cfg)
    report = metrics_report(features, rows, probs, tuple(t.name for t in model.tasks))
    report["arm"] = getattr(model, "checkpoint_extra", {}).get("arm")
    report["protocol"] = "streaming"
    return report
