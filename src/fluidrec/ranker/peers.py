"""Peer arms a practitioner runs first: logistic regression (``lr``) and LightGBM (``gbdt``).

Both read the causal hand features of ``fluidrec.ranker.peer_features`` (position one-hot,
smoothed author and user CTR, the user's share of earlier clicks on the candidate's
level-1 code and level-1+2 prefix, hour, room age, exposure) and fit one binary model per
task, in ``LABELS_BINARY`` order.

Protocol (streaming statistics, frozen weights): the statistics are computed in one
online pass over the whole stream in event time, each impression counting only
impressions with a strictly smaller ts; the models are fit on every training row
``[0, n_train)`` (or the first ``max_train_rows``) and then frozen, and the test rows are
scored with the statistics of the same pass. This is the information the neural arms
get (their user history also runs through the test days) and lets every training row
count, instead of fitting on one day with statistics frozen from the days before.

Files written by ``train_peer`` (no pickle anywhere):
    peer.json            manifest: arm, tasks, feature names and settings; LR weights
                         (coefficients, intercept, scaler mean/scale) inline
    gbdt_<task>.txt      LightGBM text model, one per task (gbdt only)
    config.json          resolved config; train_summary.json: rows, seconds

Example:
    >>> train_peer("gbdt", "data/tiny", "codes/slice_codes.parquet", "codes/room_codes.parquet", "runs/gbdt")
    >>> evaluate_peer("runs/gbdt", "data/tiny")["click"]["auc"]
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from fluidrec.data.schema import LABELS_BINARY
from fluidrec.errors import UsageError, check
from fluidrec.ranker.features import FeatureConfig, Features, features_for_run, load_or_build_features
from fluidrec.ranker.names import PEER_ARMS
from fluidrec.ranker.peer_features import peer_features
from fluidrec.ranker.peer_models import MANIFEST, LinearHeads, PeerModel, TreeHeads, is_peer_dir, lightgbm_module, load_peer, save_peer
from fluidrec.utils.io import read_json, write_json

CONFIG = "config.json"
SUMMARY = "train_summary.json"


@dataclasses.dataclass(frozen=True)
class PeerConfig:
    """One peer arm's features and fit.

    Args:
        prior_strength, share_prior_strength, position_slots: feature settings (``peer_features``).
        tasks: tasks to fit, a subset of ``LABELS_BINARY`` (kept in that order).
        lr_c, lr_max_iter: inverse L2 strength and iteration cap of the logistic regression.
        num_leaves, learning_rate, min_data_in_leaf: LightGBM booster.
        rounds: most boosting rounds. valid_fraction, early_stopping_rounds: the round count is
            chosen on the last ``valid_fraction`` of the training stream (stop after that many
            rounds without a better logloss), then the booster is refit on all training rows
            with it; ``valid_fraction=0`` fits ``rounds`` rounds directly.
        seed: LightGBM seed; threads: LightGBM threads.
        max_train_rows: fit on the first rows of the training stream only (None = all).
        features: train/test split of the feature build.
        progress: print a one-line summary.
    """

    prior_strength: float = 20.0
    share_prior_strength: float = 2.0
    position_slots: int = 8
    tasks: tuple[str, ...] = LABELS_BINARY
    lr_c: float = 1.0
    lr_max_iter: int = 500
    num_leaves: int = 31
    rounds: int = 500
    learning_rate: float = 0.05
    min_data_in_leaf: int = 100
    valid_fraction: float = 0.1
    early_stopping_rounds: int = 20
    seed: int = 0
    threads: int = 2
    max_train_rows: int | None = None
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    progress: bool = False

    def __post_init__(self) -> None:
        check(self.prior_strength > 0 and self.share_prior_strength > 0, "prior strengths must be > 0")
        check(self.position_slots >= 1, f"position_slots must be >= 1, got {self.position_slots}")
        check(len(self.tasks) >= 1 and set(self.tasks) <= set(LABELS_BINARY), f"tasks must be a non-empty subset of {LABELS_BINARY}")
        check(tuple(t for t in LABELS_BINARY if t in self.tasks) == tuple(self.tasks), f"tasks must keep the order {LABELS_BINARY}")
        check(self.lr_c > 0 and self.lr_max_iter >= 1, "lr_c must be > 0 and lr_max_iter >= 1")
        check(self.num_leaves >= 2 and self.rounds >= 1 and self.min_data_in_leaf >= 1, "need num_leaves >= 2, rounds >= 1, min_data_in_leaf >= 1")
        check(0 < self.learning_rate <= 1, f"learning_rate must be in (0, 1], got {self.learning_rate}")
        check(0 <= self.valid_fraction < 1, f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        check(self.early_stopping_rounds >= 1, "early_stopping_rounds must be >= 1")
        check(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        check(self.max_train_rows is None or self.max_train_rows >= 1, "max_train_rows must be >= 1")

    def feature_kw(self) -> dict[str, Any]:
        return {"prior_strength": self.prior_strength, "share_prior_strength": self.share_prior_strength, "position_slots": self.position_slots}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PeerConfig:
        d = dict(d)
        d["tasks"] = tuple(d.get("tasks", LABELS_BINARY))
        d["features"] = FeatureConfig(**d.get("features", {}))
        return cls(**d)


def fit_linear(x: np.ndarray, y: np.ndarray, cfg: PeerConfig) -> LinearHeads:
    """Logistic regression per column of ``y`` (N, T) on standardised ``x`` (N, F)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        raise UsageError("the lr peer needs scikit-learn: pip install scikit-learn") from exc
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    std = x64.std(axis=0)
    scale = np.where(std > 0, std, 1.0)  # constant columns (an unused position slot) stay 0
    z = (x64 - mean) / scale
    coef = np.zeros((y.shape[1], x.shape[1]))
    intercept = np.zeros(y.shape[1])
    for t in range(y.shape[1]):
        rate = float(y[:, t].mean())
        if rate in (0.0, 1.0):  # one class only: a constant model at the (clipped) base rate
            r = min(max(rate, 1e-6), 1 - 1e-6)
            intercept[t] = np.log(r / (1 - r))
            continue
        lr = LogisticRegression(C=cfg.lr_c, max_iter=cfg.lr_max_iter).fit(z, y[:, t])
        coef[t], intercept[t] = lr.coef_[0], lr.intercept_[0]
    return LinearHeads(mean, scale, coef, intercept)


def fit_trees(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], cfg: PeerConfig) -> TreeHeads:
    """One LightGBM binary booster per column of ``y`` (N, T), rounds chosen by early stopping."""
    lgb = lightgbm_module()
    params = {
        "objective": "binary", "num_leaves": cfg.num_leaves, "learning_rate": cfg.learning_rate,
        "min_data_in_leaf": cfg.min_data_in_leaf, "seed": cfg.seed, "num_threads": cfg.threads,
        "deterministic": True, "force_col_wise": True, "verbose": -1,
    }  # fmt: skip
    n_fit = int(round(len(x) * (1.0 - cfg.valid_fraction)))
    boosters = []
    for t in range(y.shape[1]):
        label = y[:, t].astype(np.float32)
        rounds = cfg.rounds
        if 0 < n_fit < len(x):  # later rows validate earlier ones, as they would in deployment
            probe = lgb.train(
                params, lgb.Dataset(x[:n_fit], label[:n_fit], feature_name=list(names)), num_boost_round=cfg.rounds,
                valid_sets=[lgb.Dataset(x[n_fit:], label[n_fit:], feature_name=list(names))],
                callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
            )  # fmt: skip
            rounds = max(probe.best_iteration, 1)
        boosters.append(lgb.train(params, lgb.Dataset(x, label, feature_name=list(names)), num_boost_round=rounds))
    return TreeHeads(boosters)


def train_peer(
    arm: str,
    dataset_dir: str | os.PathLike,
    codes_path: str | os.PathLike,
    room_codes_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: PeerConfig | None = None,
    *,
    features: Features | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Fit one peer arm on the training rows and write ``peer.json`` (+ boosters), ``config.json``, ``train_summary.json``.

    Args:
        arm: ``lr`` or ``gbdt`` (``fluidrec.ranker.names.PEER_ARMS``).
        dataset_dir, codes_path, room_codes_path: as ``train_arm``.
        out_dir: output directory (created).
        cfg: peer settings (default ``PeerConfig()``).
        features: prebuilt features (the main job builds them once for all arms).
        cache_dir: where to cache features when ``features`` is None.

    Returns:
        path of ``peer.json``.
    """
    if arm not in PEER_ARMS:
        raise UsageError(f"unknown peer arm {arm!r}; choose one of: {', '.join(PEER_ARMS)}")
    cfg = cfg or PeerConfig()
    if features is None:
        features = load_or_build_features(dataset_dir, codes_path, room_codes_path, cfg.features, cache_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    x, names = peer_features(features, **cfg.feature_kw())  # (N, F)
    t_feat = time.perf_counter() - t0
    n_rows = features.n_train if cfg.max_train_rows is None else min(cfg.max_train_rows, features.n_train)
    y = features.labels[:n_rows][:, [LABELS_BINARY.index(t) for t in cfg.tasks]]  # (n, T)
    fit = fit_linear(x[:n_rows], y, cfg) if arm == "lr" else fit_trees(x[:n_rows], y, names, cfg)
    secs = time.perf_counter() - t0
    path = save_peer(PeerModel(arm, tuple(cfg.tasks), names, cfg.feature_kw(), fit), out)
    resolved = {
        "arm": arm,
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "codes_path": str(Path(codes_path).resolve()),
        "room_codes_path": str(Path(room_codes_path).resolve()),
        "peer": dataclasses.asdict(dataclasses.replace(cfg, features=features.config)),
    }
    write_json(out / CONFIG, resolved)
    summary = {
        "arm": arm, "train_rows": n_rows, "seconds": secs, "feature_seconds": t_feat, "fit_seconds": secs - t_feat,
        "samples_per_s": n_rows / secs if secs > 0 else 0.0, "feature_names": list(names),
        "train_positives": {t: int(y[:, i].sum()) for i, t in enumerate(cfg.tasks)},
    }  # fmt: skip
    if isinstance(fit, TreeHeads):
        summary["gbdt_rounds"] = {t: b.current_iteration() for t, b in zip(cfg.tasks, fit.boosters, strict=True)}
    write_json(out / SUMMARY, summary)
    if cfg.progress:
        print(f"trained {arm}: {n_rows} rows, {len(names)} features, {len(cfg.tasks)} task(s) in {secs:.1f}s "
              f"(features {t_feat:.1f}s) -> {out}")  # fmt: skip
    return path


def evaluate_peer(
    model_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    codes_path: str | os.PathLike | None = None,
    room_codes_path: str | os.PathLike | None = None,
    *,
    features: Features | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate a peer on the test period; the report has ``evaluate_model``'s layout.

    Returns:
        ``{"n", "<task>": {"auc", "gauc", "logloss"}, ..., "buckets": {...}, "arm"}``.
    """
    from fluidrec.ranker.evaluate import metrics_report

    d = Path(model_dir)
    if not is_peer_dir(d):
        raise UsageError(f"{d} is not a trained peer directory (no {MANIFEST})")
    model = load_peer(d)
    if features is None:
        features = features_for_run(read_json(d / CONFIG), "peer", dataset_dir, codes_path, room_codes_path, cache_dir)
    rows = slice(features.n_train, len(features))
    x = model.features(features)  # every row: a test impression's statistics read the training rows too
    report = metrics_report(features, rows, model.predict(x[rows]), model.tasks)
    report["arm"] = model.arm
    return report
