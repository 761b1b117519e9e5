"""Ranker speed: training throughput, FLOP utilisation and 200-candidate scoring latency.

Prints ratios against limits: flop_fraction = achieved training FLOP/s of the default
model (``ranker_small``, FLUID's final {slice, room} tokens) / this machine's measured
fp32 matmul rate (target >= 0.20); p99_ms_200 (a compiled ``Scorer`` with ``backbone="auto"``,
as serving runs it: the fused C backbone where its SIMD loops run, ``scorer_backbone`` says
which; see ``fluidrec.ranker.inference``) against 10 ms (2 threads), next to the compiled
torch backbone's (``compile_scorer``'s default) and the eager model's. Also reports the
``ranker_demo`` throughput the main job relies on (target >= 50k samples/s: 15 arms x
~800k impressions in ~6 minutes), for FLUID's final tokens and for the ID baseline.

The synthetic stream is laid out like the world's log (requests of 6 rooms for one user,
adjacent rows), so training batches store each request's history once, as on real data
(``Features.batch``); the 200 candidates are one user's, with that history on every row
as ``ScoringContext.make_batch`` builds them, which the scorer stores once.

Usage:
    python benchmarks/ranker.py [--n 200000] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import measure_matmul_flops  # noqa: E402

from fluidrec.ranker.arms import build_arm  # noqa: E402
from fluidrec.ranker.batching import Batch  # noqa: E402
from fluidrec.ranker.evaluate import score  # noqa: E402
from fluidrec.ranker.inference import compile_scorer, serving_layout  # noqa: E402
from fluidrec.ranker.features import FeatureConfig, Features  # noqa: E402
from fluidrec.ranker.model import build_ranker  # noqa: E402
from fluidrec.ranker.train import RankerTrainConfig, make_optimizers, ranker_demo, ranker_small, ranker_spec, update_step  # noqa: E402


def synthetic_features(
    n: int, seed: int = 0, levels: int = 4, num_codes: int = 64, n_rooms: int = 5000, slate: int = 6
) -> Features:
    """Random but well-formed features (no disk I/O), sized like the main job's streams.

    Laid out like the world's log: requests of ``slate`` rooms shown to one user at one
    time, so the rows of a request are adjacent and share ts, user and history.
    """
    rng = np.random.default_rng(seed)
    cfg = FeatureConfig(test_fraction=0.1)
    k = cfg.history_len
    n_req = -(-n // slate)
    req = np.repeat(np.arange(n_req), slate)[:n]  # (N,) request of each row

    def per_request(x: np.ndarray) -> np.ndarray:
        return x[req]

    hist = np.where(rng.random((n_req, k)) < 0.6, rng.integers(0, max(n - 1, 1), (n_req, k)), -1).astype(np.int32)
    return Features(
        ts=req.astype(np.int64) * 600, user_id=per_request(rng.integers(0, 50_000, n_req)), room_id=rng.integers(0, n_rooms, n),
        user=per_request(rng.integers(0, cfg.user_buckets, n_req)), profile=per_request(rng.integers(0, 8, (n_req, 4)).astype(np.int16)),
        hour=per_request(rng.integers(0, 24, n_req).astype(np.int8)), position=(np.arange(n) - req * slate).astype(np.int8),
        age_bucket=rng.integers(0, 8, n).astype(np.int8), age_min=rng.uniform(0, 90, n).astype(np.float32),
        exposure=rng.integers(0, 500, n).astype(np.int32), author=rng.integers(0, cfg.author_buckets, n),
        item=rng.integers(1, n_rooms + 1, n), slice_codes=rng.integers(0, num_codes, (n, levels)).astype(np.int32),
        room_codes=rng.integers(0, num_codes, (n, levels)).astype(np.int32), hist_rows=per_request(hist),
        labels=(rng.random((n, 5)) < 0.1).astype(np.int8), seen=np.ones(n, bool),
        room_vocab=np.arange(n_rooms, dtype=np.int64), n_train=int(n * 0.9), num_codes=num_codes, config=cfg,
    )  # fmt: skip


def one_user_request(feats: Features, b: int = 200) -> Batch:
    """b candidates of one user, as ``ScoringContext.make_batch`` builds them: the user's
    features and history copied onto every row (the scorer finds the shared history itself)."""
    batch = feats.batch(slice(0, b), share_histories=False)
    for name in ("user", "profile", "hour", "hist_codes", "hist_mask"):
        t = getattr(batch, name)
        setattr(batch, name, t[:1].expand_as(t).clone())  # a copy: some fields are views of the features
    return batch


def train_throughput(cfg: RankerTrainConfig, feats: Features, n: int, arm: str = "fluid", share: bool = True) -> tuple[float, int]:
    """Samples/s of an arm's final model over n rows after a warm-up; returns (rate, fwd FLOPs/sample).

    ``share``: batches store each request's history once (``Features.batch``'s default).
    """
    plan = build_arm(arm)
    model = build_ranker(ranker_spec(cfg, feats, plan, plan.stages[-1]), feats.room_vocab)
    opts = make_optimizers(model, cfg)
    bs = cfg.batch_size
    for b0 in range(0, 3 * bs, bs):  # warm-up: allocator, optimizer state
        update_step(model, feats.batch(slice(b0, b0 + bs), share), opts)
    t0 = time.perf_counter()
    done = 0
    for b0 in range(3 * bs, 3 * bs + n, bs):
        update_step(model, feats.batch(slice(b0, b0 + bs), share), opts)
        done += bs
    rate = done / (time.perf_counter() - t0)
    t, d, hh = model.backbone.num_tokens, cfg.model.dim, cfg.model.head_hidden
    flops = model.backbone.flops_per_sample() + 2 * t * d * hh + 2 * hh * len(cfg.tasks)
    return rate, flops


def latency_200(cfg: RankerTrainConfig, feats: Features, backbone: str | None, reps: int = 300) -> dict[str, float]:
    """p50/p99 ms to score 200 candidates of one user with the eager model (``backbone`` None) or
    a compiled Scorer with that backbone choice (``fluidrec.ranker.inference``)."""
    compiled = backbone is not None
    plan = build_arm("fluid")
    model = build_ranker(ranker_spec(cfg, feats, plan, plan.stages[-1]), feats.room_vocab).eval()
    batch = one_user_request(feats, 200)  # one user, 200 live rooms
    if not compiled:
        batch = serving_layout(batch)  # what the compiled Scorer does first: embed the one history once
    scorer = compile_scorer(model, backbone=backbone) if compiled else model
    t0 = time.perf_counter()
    score(scorer, batch)  # the compiled scorer compiles on its first call
    first_s = time.perf_counter() - t0
    for _ in range(20):
        score(scorer, batch)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        score(scorer, batch)
        times.append((time.perf_counter() - t0) * 1e3)
    res = {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)), "first_call_s": first_s}
    if compiled:
        res["compiled"] = scorer.compiled  # False when inductor could not compile (no C++ compiler)
        res["backbone"] = scorer.backbone
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="training rows timed per config")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (targets are for 2; 1 is steadier on a busy machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    small, demo = ranker_small(), ranker_demo()
    feats = synthetic_features(args.n + 4 * max(small.batch_size, demo.batch_size))
    peak = measure_matmul_flops()
    rate, fwd = train_throughput(small, feats, args.n)
    demo_rate, _ = train_throughput(demo, feats, args.n)
    demo_base_rate, _ = train_throughput(demo, feats, args.n, arm="baseline")
    eager = latency_200(small, feats, backbone=None)
    fast = latency_200(small, feats, backbone="auto")  # the fused C backbone where its SIMD loops run (as serving)
    plain = latency_200(small, feats, backbone="torch")  # compile_scorer's default
    achieved = rate * 3 * fwd  # backward ~ 2x forward
    res = {
        "samples_per_s": rate,
        "train_flops_per_sample": 3 * fwd,
        "achieved_gflops": achieved / 1e9,
        "matmul_gflops": peak / 1e9,
        "flop_fraction": achieved / peak,
        "flop_fraction_target": 0.20,
        "demo_samples_per_s": demo_rate,
        "demo_baseline_samples_per_s": demo_base_rate,
        "demo_target_samples_per_s": 50_000,
        "p50_ms_200": fast["p50"],
        "p99_ms_200": fast["p99"],
        "p99_target_ms": 10.0,
        "p99_ratio_to_target": fast["p99"] / 10.0,
        "scorer_compiled": fast["compiled"],
        "scorer_backbone": fast["backbone"],
        "compile_seconds": fast["first_call_s"],
        "torch_backbone_p50_ms_200": plain["p50"],
        "torch_backbone_p99_ms_200": plain["p99"],
        "eager_p50_ms_200": eager["p50"],
        "eager_p99_ms_200": eager["p99"],
        "threads": args.threads,
        "n": args.n,
    }
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
    else:
        w = max(map(len, res))
        for k, v in res.items():
            print(f"{k:<{w}}  {v:.4f}" if isinstance(v, float) else f"{k:<{w}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
