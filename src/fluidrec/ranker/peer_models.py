"""Fitted peer models (``lr``, ``gbdt``) and their files, with no pickle anywhere.

A ``PeerModel`` is the arm name, its tasks, the feature names and settings it was fit
on, and per-task heads: ``LinearHeads`` (standardised logistic regression, stored inline
in ``peer.json``) or ``TreeHeads`` (one LightGBM booster per task, stored in LightGBM's
text format as ``gbdt_<task>.txt``). ``save_peer`` writes atomically, the manifest last;
``load_peer`` turns anything malformed into a ``DataError`` naming the file.

Shape letters: N impressions, F features, T tasks.

Example:
    >>> model = load_peer("runs/gbdt")
    >>> probs = model.predict(model.features(feats))   # (N, T)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from fluidrec.errors import DataError, UsageError, first_line
from fluidrec.ranker.features import Features
from fluidrec.ranker.peer_features import peer_features
from fluidrec.utils.io import atomic_path, read_json, write_json

MANIFEST = "peer.json"
PEER_VERSION = 1


def lightgbm_module() -> Any:
    """The lightgbm module, or a UsageError with the install hint."""
    try:
        import lightgbm
    except ImportError as exc:
        raise UsageError("the gbdt peer needs LightGBM: pip install lightgbm") from exc
    return lightgbm


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


@dataclasses.dataclass
class LinearHeads:
    """Standardised logistic regression per task: p = sigmoid(((x - mean) / scale) @ coef.T + intercept)."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (T, F)
    intercept: np.ndarray  # (T,)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = ((x.astype(np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept  # (N, T)
        return _sigmoid(z).astype(np.float32)


@dataclasses.dataclass
class TreeHeads:
    """One LightGBM booster per task."""

    boosters: list[Any]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.stack([b.predict(x, num_threads=1) for b in self.boosters], axis=1).astype(np.float32)  # (N, T)


@dataclasses.dataclass
class PeerModel:
    """A fitted peer: which arm, its tasks and feature settings, and the per-task heads."""

    arm: str
    tasks: tuple[str, ...]
    names: tuple[str, ...]
    feature_kw: dict[str, Any]
    heads: LinearHeads | TreeHeads

    def features(self, feats: Features) -> np.ndarray:
        """(N, F) causal features of every impression, with this model's settings."""
        x, names = peer_features(feats, **self.feature_kw)
        if tuple(names) != self.names:
            raise DataError(f"model was trained on features {list(self.names)}, this build makes {list(names)}")
        return x

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, T) probabilities in ``tasks`` order."""
        return self.heads.predict(x)


def save_peer(model: PeerModel, out_dir: str | os.PathLike) -> Path:
    """Write the model files into ``out_dir``; the manifest last, so a complete run has one."""
    out = Path(out_dir)
    manifest: dict[str, Any] = {
        "version": PEER_VERSION, "arm": model.arm, "tasks": list(model.tasks),
        "feature_names": list(model.names), "features": model.feature_kw,
    }  # fmt: skip
    if isinstance(model.heads, LinearHeads):
        h = model.heads
        manifest["lr"] = {"mean": h.mean.tolist(), "scale": h.scale.tolist(), "coef": h.coef.tolist(), "intercept": h.intercept.tolist()}
    else:
        manifest["gbdt"] = {}
        for task, booster in zip(model.tasks, model.heads.boosters, strict=True):
            name = f"gbdt_{task}.txt"
            with atomic_path(out / name) as tmp:
                booster.save_model(str(tmp))
            manifest["gbdt"][task] = name
    write_json(out / MANIFEST, manifest)
    return out / MANIFEST


def _load_booster(path: Path, n_features: int) -> Any:
    lgb = lightgbm_module()
    if not path.is_file():
        raise DataError("LightGBM model file not found", table=str(path))
    try:
        booster = lgb.Booster(model_file=str(path))
    except Exception as exc:  # LightGBMError, or ValueError/IndexError on a mangled header
        raise DataError(f"not a LightGBM text model ({type(exc).__name__}: {first_line(exc)})", table=str(path)) from None
    if booster.num_feature() != n_features:
        raise DataError(f"model has {booster.num_feature()} features, the manifest {n_features}", table=str(path))
    return booster


def load_peer(model_dir: str | os.PathLike) -> PeerModel:
    """Read a ``train_peer`` directory. Raises DataError (naming the file) on anything malformed."""
    d = Path(model_dir)
    path = d / MANIFEST
    m = read_json(path)
    try:
        if m["version"] != PEER_VERSION:
            raise DataError("unsupported peer model version", table=str(path), value=m["version"])
        arm, tasks, names = str(m["arm"]), tuple(m["tasks"]), tuple(m["feature_names"])
        f = len(names)
        if arm == "lr":
            w = m["lr"]
            heads: LinearHeads | TreeHeads = LinearHeads(
                np.asarray(w["mean"], np.float64).reshape(f), np.asarray(w["scale"], np.float64).reshape(f),  # (F,) each
                np.asarray(w["coef"], np.float64).reshape(len(tasks), f),  # (n_tasks, F)
                np.asarray(w["intercept"], np.float64).reshape(len(tasks)),  # (n_tasks,)
            )  # fmt: skip
        elif arm == "gbdt":
            heads = TreeHeads([_load_booster(d / str(m["gbdt"][t]), f) for t in tasks])
        else:
            raise DataError(f"unknown peer arm {arm!r}", table=str(path))
        return PeerModel(arm, tasks, names, dict(m["features"]), heads)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"malformed peer manifest ({type(exc).__name__}: {first_line(exc)})", table=str(path)) from None


def is_peer_dir(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` was written by ``train_peer`` (it holds ``peer.json``)."""
    return (Path(model_dir) / MANIFEST).is_file()
