"""Where the ID baseline's gap to the logistic-regression peer comes from (a quality yardstick).

The ``lr`` peer of Table 3 reads content (the user's share of earlier clicks on the
candidate's code prefixes) and statistics updated online through the test day; the neural
ID baseline has neither: no candidate content, and frozen weights on the test day. This
script fits the same LR with those two advantages removed one at a time, on the same
training rows, and trains the ID baseline beside it, so the part of the gap that is the
ranker's own failure to learn is the last line:

    lr (as in Table 3)                           content + online statistics
    lr, statistics frozen at the end of training content, frozen statistics
    lr without content                           online statistics
    lr without content, frozen statistics        what the frozen ID baseline could know
    neural ID baseline                           ``ranker_demo``, one pass

Prints the click AUCs on the test day and ``baseline_vs_id_peer`` = baseline AUC minus the
last LR row (the target of the ranker issue asks the baseline to beat the first row).

Usage:
    python benchmarks/ranker_gap.py [--dataset runs/demo/world] [--codes runs/demo/codes_oracle] [--json]
Needs a dataset and a codes directory (``make demo`` writes both); skips with a message otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np


def frozen_stats(x: np.ndarray, key: np.ndarray, cols: list[int], n_train: int) -> np.ndarray:
    """Test rows of ``x`` with ``cols`` replaced by their value at the key's last training row (mean if none)."""
    xt = x[n_train:].copy()
    last = np.full(int(key.max()) + 1, -1, dtype=np.int64)
    last[key[:n_train]] = np.arange(n_train)  # fancy assignment keeps the last write per key
    idx = last[key[n_train:]]
    for c in cols:
        xt[:, c] = np.where(idx >= 0, x[np.maximum(idx, 0), c], x[:n_train, c].mean())
    return xt


def lr_auc(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, cols: list[int], n_train: int) -> float:
    from fluidrec.metrics import auc
    from fluidrec.ranker.peers import PeerConfig, fit_linear

    heads = fit_linear(x[:n_train][:, cols], y[:n_train, None], PeerConfig())
    logit = ((x_test[:, cols] - heads.mean) / heads.scale) @ heads.coef[0] + heads.intercept[0]
    return float(auc(y[n_train:], logit))


def baseline_auc(feats, seed: int) -> float:
    import torch

    from fluidrec.metrics import auc
    from fluidrec.ranker.arms import build_arm
    from fluidrec.ranker.evaluate import predict
    from fluidrec.ranker.train import ranker_demo, train_plan
    from fluidrec.utils.seed import seed_everything

    cfg = dataclasses.replace(ranker_demo(), seed=seed, progress=False)
    torch.set_num_threads(cfg.threads)
    seed_everything(seed)
    model, _, _ = train_plan(build_arm("baseline"), feats, cfg)
    model.eval()
    test = slice(feats.n_train, len(feats))
    return float(auc(feats.labels[test][:, 0], predict(model, feats, test)[:, 0]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=Path("runs/demo/world"))
    p.add_argument("--codes", type=Path, default=Path("runs/demo/codes_oracle"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not (args.dataset / "impressions.parquet").exists() or not (args.codes / "slice_codes.parquet").exists():
        print(f"skipped: needs a dataset at {args.dataset} and codes at {args.codes} (run `make demo`, or pass --dataset/--codes)")
        return 0
    from fluidrec.ranker.features import FeatureConfig, load_or_build_features
    from fluidrec.ranker.peer_features import peer_features

    feats = load_or_build_features(args.dataset, args.codes / "slice_codes.parquet", args.codes / "room_codes.parquet", FeatureConfig())
    x, names = peer_features(feats)
    n, y = feats.n_train, feats.labels[:, 0]
    user_cols = [i for i, nm in enumerate(names) if nm.startswith("user_") and "share" not in nm]
    author_cols = [i for i, nm in enumerate(names) if nm.startswith("author_")]
    x_frozen = frozen_stats(x, feats.user, user_cols, n)
    x_frozen[:, author_cols] = frozen_stats(x, feats.author, author_cols, n)[:, author_cols]
    every = list(range(len(names)))
    no_content = [i for i, nm in enumerate(names) if "share" not in nm]
    out = {
        "lr": lr_auc(x, y, x[n:], every, n),
        "lr_frozen_stats": lr_auc(x, y, x_frozen, every, n),
        "lr_no_content": lr_auc(x, y, x[n:], no_content, n),
        "lr_no_content_frozen_stats": lr_auc(x, y, x_frozen, no_content, n),
        "baseline": baseline_auc(feats, args.seed),
    }
    out["baseline_vs_id_peer"] = out["baseline"] - out["lr_no_content_frozen_stats"]
    out = {k: round(v, 4) for k, v in out.items()}
    print(json.dumps(out) if args.json else "\n".join(f"{k:30s} {v:.4f}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
