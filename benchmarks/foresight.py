"""Next-Sid scoring at one 30-s tick: the event-time store vs recomputing from the log.

The figure we claim (issue 16): scoring every live author's next Sid at one 30-second tick
of the small world is at least 10x faster with the in-process ``SidStore`` (ingest the
segments that ended during the last 30 s, read each live author's last l RLE entries,
one batched model forward) than recomputing each live author's sequence from the segment
log (filter the in-memory log per author, sort, RLE, cut to l, the same forward).

Two ratios come out: ``ratio`` (end to end, both sides including the same batched forward)
and ``sequence_ratio`` (building the live authors' contexts only). The forward costs the
same on both sides, so ``ratio`` is bounded by (log + forward) / (store + forward): where
few rooms are live at once (the small world: 23 at its busiest test-day tick) the forward
dominates and ``ratio`` stays small; ``meets_target`` is read on ``ratio``.

Sids: those of a foresight run (``--run DIR`` with ``world/`` and ``sids.npy``), else the
segments' true (topic leaf, moment) pairs of a freshly generated small foresight world
(same run structure; the timing does not depend on what the Sids mean). The model is the
run's next-Sid architecture with fresh weights (the forward costs the same).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/foresight.py --run runs/foresight_small --json   # a run's Sids (8 s)
    OMP_NUM_THREADS=1 python benchmarks/foresight.py --scale medium --json               # generates the world (minutes)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET = 10.0
DAY_MS = 86_400_000


def _segments(run: str | None, scale: str) -> tuple[dict, np.ndarray, str, int]:
    """(segment log, Sids, where the Sids come from, start of the test day in ms)."""
    from fluidrec.data.world import generate_world
    from fluidrec.foresight.config import foresight_config
    from fluidrec.foresight.segments import load_segments

    if run:
        from fluidrec.data.world import WorldConfig

        wcfg = WorldConfig.from_dict(json.loads((Path(run) / "config.json").read_text())["world_resolved"])
        test_day = wcfg.t0_ms + (wcfg.days - 1) * DAY_MS
        seg = load_segments(Path(run) / "world", with_text=False)
        return seg, np.load(Path(run) / "sids.npy", allow_pickle=False), "run Sids", test_day
    wcfg = foresight_config(scale).world_config()
    tmp = Path(tempfile.mkdtemp(prefix="fluidrec-bench-"))
    world = generate_world(wcfg, tmp / "world", progress=False)
    seg = load_segments(world, with_text=False)  # read into memory: the world can go
    shutil.rmtree(tmp)
    test_day = wcfg.t0_ms + (wcfg.days - 1) * DAY_MS
    return seg, seg["topic_l4"].astype(np.int64) * 3 + seg["moment"], "true (leaf, moment) Sids", test_day


def _busiest_tick(seg, test_day: int, tick_ms: int) -> int:
    """The tick (a multiple of 30 s) of the test day with the most rooms on air.

    The test day comes from the world's config: the last segment can end after midnight of
    the last day, and a day taken from it would be one with almost no room on air.
    """
    ticks = np.arange(test_day, test_day + DAY_MS, tick_ms)
    live = np.array([((seg["start_ts"] <= t) & (seg["end_ts"] > t)).sum() for t in ticks])
    return int(ticks[live.argmax()])


def main() -> None:
    import torch

    from fluidrec.foresight.config import foresight_config
    from fluidrec.foresight.model import NextSidModel, to_tensors
    from fluidrec.foresight.sequences import SidStore, contexts_from_log

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=None)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    seg, sids, source, test_day = _segments(args.run, args.scale)
    cfg = foresight_config(args.scale).next_sid
    tick = 30_000
    t = _busiest_tick(seg, test_day, tick)
    live = np.unique(seg["author_id"][(seg["start_ts"] <= t) & (seg["end_ts"] > t)])
    author, end_ts = seg["author_id"].astype(np.int64), seg["end_ts"].astype(np.int64)
    torch.manual_seed(0)
    model = NextSidModel(int(sids.max()) + 1, cfg).eval()

    def forward(ctx) -> np.ndarray:
        with torch.inference_mode():
            return model(*to_tensors(ctx.values, ctx.runs, ctx.mask)).logits.argmax(1).numpy()

    store_s, log_s, seq_store_s, seq_log_s = [], [], [], []
    for _ in range(args.repeats):
        store = SidStore(end_ts, author, sids, l=cfg.context)
        store.advance(t - tick)  # the store is live: it has followed the stream up to the last tick
        t0 = time.perf_counter()
        store.advance(t)
        ctx_a = store.contexts(live)
        t1 = time.perf_counter()
        pred_a = forward(ctx_a)
        t2 = time.perf_counter()
        ctx_b = contexts_from_log(end_ts, author, sids, live, t, cfg.context)
        t3 = time.perf_counter()
        pred_b = forward(ctx_b)
        t4 = time.perf_counter()
        assert (pred_a == pred_b).all() and (ctx_a.values == ctx_b.values).all()
        store_s.append(t2 - t0)
        log_s.append(t4 - t2)
        seq_store_s.append(t1 - t0)
        seq_log_s.append(t3 - t2)
    best = {k: float(min(v)) for k, v in (("store_s", store_s), ("log_s", log_s), ("store_sequences_s", seq_store_s), ("log_sequences_s", seq_log_s))}
    out = {
        "scale": args.scale, "sids": source, "segments": int(len(seg)), "live_authors": int(len(live)), "tick_ms": t,
        "context": cfg.context, **best,
        "ratio": best["log_s"] / best["store_s"], "sequence_ratio": best["log_sequences_s"] / best["store_sequences_s"],
        "target": TARGET,
    }
    out["meets_target"] = out["ratio"] >= TARGET
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
