"""Offline evaluation and scoring.

- ``evaluate_model``: per task AUC, GAUC (per user) and logloss on the test period, plus
  the same under ``buckets`` (age_lt10, age_10_30, age_ge30, new_room, seen_room).
- ``score(model, batch)``: task probabilities for a Batch (``model`` may be a compiled
  ``Scorer`` from ``fluidrec.ranker.inference.compile_scorer``, for low latency).
- ``ScoringContext`` + ``score_candidates``: score arbitrary (user, room, slice code,
  room code, t, position) arrays, for the simulated A/B test ranking live rooms.

Example:
    >>> report = evaluate_model("runs/fluid", "data/tiny")
    >>> report["click"]["auc"], report["buckets"]["new_room"]["click"]["gauc"]
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluidrec.data.io import Dataset
from fluidrec.data.schema import LABELS_BINARY, USER_PROFILE_COLUMNS
from fluidrec.errors import DataError, UsageError
from fluidrec.metrics import auc, bucket_masks, gauc, logloss
from fluidrec.codes.ngram import hash_ids
from fluidrec.ranker.batching import MAX_POSITION, PROFILE_VOCAB, Batch, age_bucket
from fluidrec.ranker.features import Features, features_for_run
from fluidrec.ranker.inference import Scorer
from fluidrec.ranker.model import Ranker, load_checkpoint
from fluidrec.ranker.train import CHECKPOINT, CONFIG
from fluidrec.utils.io import read_json
from fluidrec.utils.lookup import sorted_lookup


def score(model: Ranker | Scorer, batch: Batch) -> dict[str, np.ndarray]:
    """Task name -> (B,) predicted probabilities (a ``Scorer`` from ``compile_scorer`` is faster)."""
    if isinstance(model, Scorer):
        return model(batch)
    model.eval()
    with torch.inference_mode():
        p = torch.sigmoid(model(batch).logits).numpy()  # (B, n_tasks)
    return {t.name: p[:, i] for i, t in enumerate(model.tasks)}


@torch.inference_mode()
def predict(model: Ranker, feats: Features, rows: slice, batch_size: int = 8192) -> np.ndarray:
    """(n, n_tasks) probabilities over ``rows`` (item ids re-indexed into the model's vocabulary)."""
    model.eval()
    same_vocab = np.array_equal(model.room_vocab.numpy(), feats.room_vocab)
    out = []
    for b0 in range(rows.start, rows.stop, batch_size):
        sl = slice(b0, min(b0 + batch_size, rows.stop))
        batch = feats.batch(sl)
        if not same_vocab:  # another dataset: rooms the model never had are cold (row 0)
            batch.item = torch.from_numpy(model.room_index(feats.room_id[sl]))
        out.append(torch.sigmoid(model(batch).logits).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.tasks)), np.float32)


def metrics_report(feats: Features, rows: slice, probs: np.ndarray, task_names: tuple[str, ...]) -> dict[str, Any]:
    """Per task auc/gauc/logloss overall and per cold-start bucket."""
    labels = feats.labels[rows]
    users = feats.user_id[rows]

    def per_task(mask: np.ndarray) -> dict[str, Any]:
        res: dict[str, Any] = {"n": int(mask.sum())}
        for i, name in enumerate(task_names):
            y = labels[mask, LABELS_BINARY.index(name)]
            p = probs[mask, i]
            res[name] = {"auc": auc(y, p), "gauc": gauc(users[mask], y, p), "logloss": logloss(y, p)}
        return res

    report = per_task(np.ones(len(labels), dtype=bool))
    masks = bucket_masks(feats.age_min[rows], feats.seen[rows])
    report["buckets"] = {name: per_task(m) for name, m in masks.items()}
    return report


def evaluate_model(
    model_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    codes_path: str | os.PathLike | None = None,
    room_codes_path: str | os.PathLike | None = None,
    *,
    features: Features | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8192,
) -> dict[str, Any]:
    """Evaluate a trained model on the test period of a dataset.

    Args:
        model_dir: output directory of ``train_arm``.
        dataset_dir: canonical dataset.
        codes_path, room_codes_path: code files (default: those the model was trained with).
        features: prebuilt features (skips the build).

    Returns:
        ``{"n": ..., "<task>": {"auc", "gauc", "logloss"}, ..., "buckets": {bucket: {"n", "<task>": {...}}}}``.
    """
    d = Path(model_dir)
    if not (d / CHECKPOINT).exists():
        raise UsageError(f"{d} is not a trained ranker directory (no {CHECKPOINT})")
    model = load_checkpoint(d / CHECKPOINT)
    if features is None:
        features = features_for_run(read_json(d / CONFIG), "train", dataset_dir, codes_path, room_codes_path, cache_dir)
    if features.levels != model.spec.tokenizer.levels:
        raise DataError(
            f"codes have {features.levels} levels but the model was trained on {model.spec.tokenizer.levels}",
            table=str(codes_path or "codes"),
        )
    rows = slice(features.n_train, len(features))
    probs = predict(model, features, rows, batch_size)
    report = metrics_report(features, rows, probs, tuple(t.name for t in model.tasks))
    report["arm"] = getattr(model, "checkpoint_extra", {}).get("arm")
    return report


@dataclasses.dataclass
class ScoringContext:
    """Lookups needed to score arbitrary candidates: user profiles, room start times and authors.

    Build with ``ScoringContext.from_dataset(dataset_dir, model)``.
    """

    user_ids: np.ndarray  # sorted
    profiles: np.ndarray  # (U, P)
    room_ids: np.ndarray  # sorted
    room_start: np.ndarray
    room_author: np.ndarray
    user_buckets: int
    author_buckets: int

    @classmethod
    def from_dataset(cls, dataset_dir: str | os.PathLike, model: Ranker) -> ScoringContext:
        ds = Dataset(dataset_dir)
        rooms = ds.table("rooms", ["room_id", "author_id", "start_ts"])
        r = rooms.column("room_id").to_numpy().astype(np.int64)
        ro = np.argsort(r)
        prof = np.zeros((0, len(USER_PROFILE_COLUMNS)), np.int64)
        uids = np.zeros(0, np.int64)
        if ds.has("users"):
            cols = ds.table("users").column_names
            users = ds.table("users")
            uids = users.column("user_id").to_numpy().astype(np.int64)
            prof = np.stack(
                [users.column(c).to_numpy().astype(np.int64) if c in cols else np.zeros(len(uids), np.int64) for c in USER_PROFILE_COLUMNS],
                axis=1,
            )
            uo = np.argsort(uids)
            uids, prof = uids[uo], np.clip(prof[uo], 0, PROFILE_VOCAB - 1)
        tc = model.spec.tokenizer
        return cls(
            uids, prof, r[ro],
            rooms.column("start_ts").to_numpy().astype(np.int64)[ro],
            rooms.column("author_id").to_numpy().astype(np.int64)[ro],
            tc.user_buckets, tc.author_buckets,
        )  # fmt: skip

    def _lookup(self, keys: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return sorted_lookup(table, keys)

    def make_batch(
        self,
        model: Ranker,
        user_ids: np.ndarray,
        room_ids: np.ndarray,
        slice_codes: np.ndarray,
        room_codes: np.ndarray,
        t_ms: np.ndarray | int,
        position: np.ndarray | int = 0,
        history_codes: np.ndarray | None = None,
        exposure: np.ndarray | None = None,
    ) -> Batch:
        """A Batch for B candidates. history_codes: (B, K', L) or (K', L) of the user's recent clicks, newest first."""
        user_ids = np.asarray(user_ids, np.int64).ravel()
        room_ids = np.asarray(room_ids, np.int64).ravel()
        b = len(room_ids)
        user_ids = np.broadcast_to(user_ids, (b,)) if user_ids.size == 1 else user_ids
        t = np.broadcast_to(np.asarray(t_ms, np.int64), (b,))
        upos, uknown = self._lookup(user_ids, self.user_ids)
        profile = np.where(uknown[:, None], self.profiles[upos] if len(self.profiles) else 0, 0)
        rpos, rknown = self._lookup(room_ids, self.room_ids)
        start = np.where(rknown, self.room_start[rpos] if len(self.room_start) else t, t)
        author = np.where(rknown, self.room_author[rpos] if len(self.room_author) else -1, -1)
        age = ((t - start) / 60_000.0).astype(np.float32)
        k, levels = model.spec.tokenizer.history_len, model.spec.tokenizer.levels
        hist = np.zeros((b, k, levels), np.int64)
        mask = np.zeros((b, k), bool)
        if history_codes is not None and len(history_codes):
            h = np.asarray(history_codes, np.int64)
            h = np.broadcast_to(h, (b, *h.shape)) if h.ndim == 2 else h
            m = min(k, h.shape[1])
            hist[:, :m] = h[:, :m]
            mask[:, :m] = True
        arrays = {
            "user": hash_ids(user_ids, self.user_buckets),
            "profile": profile.astype(np.int64),
            "hour": ((t // 3_600_000) % 24).astype(np.int64),
            "position": np.clip(np.broadcast_to(np.asarray(position, np.int64), (b,)), 0, MAX_POSITION),
            "age_bucket": age_bucket(age),
            "age_min": age,
            "exposure": np.zeros(b, np.float32) if exposure is None else np.asarray(exposure, np.float32),
            "author": hash_ids(author, self.author_buckets),
            "item": model.room_index(room_ids),
            "slice_codes": np.asarray(slice_codes, np.int64).reshape(b, levels),  # (B, L)
            "room_codes": np.asarray(room_codes, np.int64).reshape(b, levels),  # (B, L)
            "hist_codes": hist,
            "hist_mask": mask,
        }
        return Batch.from_numpy(arrays)


def score_candidates(model: Ranker | Scorer, ctx: ScoringContext, user_ids: np.ndarray, room_ids: np.ndarray,
                     slice_codes: np.ndarray, room_codes: np.ndarray, t_ms: np.ndarray | int,
                     position: np.ndarray | int = 0, history_codes: np.ndarray | None = None,
                     exposure: np.ndarray | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Score arbitrary candidates; returns task name -> (B,) probabilities.

    Example:
        >>> ctx = ScoringContext.from_dataset("data/tiny", model)
        >>> p = score_candidates(model, ctx, user_ids=7, room_ids=live, slice_codes=sc, room_codes=rc, t_ms=t)
        >>> order = np.argsort(-p["click"])
    """
    ranker = model.model if isinstance(model, Scorer) else model
    return score(model, ctx.make_batch(ranker, user_ids, room_ids, slice_codes, room_codes, t_ms, position, history_codes, exposure))
