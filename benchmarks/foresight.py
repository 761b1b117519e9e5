"""Next-Sid scoring at one 30-s tick: the event-time store vs recomputing from the log.

The figure we claim (issue 16): scoring every live author's next Sid at one 30-second tick
of the small world is at least 10x faster with the in-process store than recomputing
each live author's sequence from the segment log.

- **store** (``SidStore`` + ``LiveScorer``): the store has followed the stream and the
  scorer scored the previous tick; at tick t it ingests the segments that ended in the
  last 30 s, then forwards, in one batch, only the live authors whose context changed
  (a segment that repeats the last Sid still changes a run length: a new input).
- **log** (``TimeOrderedLog`` + ``predict_from_log``), the baseline: the segment log in
  end-time order (an append-only log's natural order) as it stood at t; one vectorised
  pass selects the live authors' segments, groups them by author, RLEs them and keeps
  the last l entries; then one batched forward of every live author.
- **naive log** (for the record, not the baseline): one scan of the whole log per author,
  the baseline of the first cut of this benchmark.

Both sides must give identical predictions (asserted every repeat). ``ratio`` is end to
end (log / store, each with its forward), ``sequence_ratio`` the contexts alone; the
breakdown (ingest, contexts, forward, authors forwarded) says where the time goes.
``meets_target`` is read on ``ratio``.

Sids: those of a foresight run (``--run DIR`` with ``world/`` and ``sids.npy``), else the
segments' true (topic leaf, moment) pairs of a foresight world (``--world DIR``, generated
there when absent, or a fresh one in a temporary directory). The model is the run's
next-Sid architecture with fresh weights (the forward costs the same).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/foresight.py --world /tmp/fworld_small --json            # small (generates ~40 s once)
    OMP_NUM_THREADS=1 python benchmarks/foresight.py --scale medium --world /tmp/fworld_medium --json
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET = 10.0
DAY_MS = 86_400_000
TICK_MS = 30_000


def _segments(run: str | None, world: str | None, scale: str) -> tuple[dict, np.ndarray, str, int]:
    """(segment log, Sids, where the Sids come from, start of the test day in ms)."""
    from fluidrec.data.world import WorldConfig, generate_world
    from fluidrec.foresight.config import foresight_config
    from fluidrec.foresight.segments import load_segments

    if run:
        wcfg = WorldConfig.from_dict(json.loads((Path(run) / "config.json").read_text())["world_resolved"])
        seg = load_segments(Path(run) / "world", with_text=False)
        return seg, np.load(Path(run) / "sids.npy", allow_pickle=False), "run Sids", wcfg.t0_ms + (wcfg.days - 1) * DAY_MS
    tmp = None
    if world is None:
        tmp = Path(tempfile.mkdtemp(prefix="fluidrec-bench-"))
        world = str(tmp / "world")
    if not (Path(world) / "manifest.json").exists():
        generate_world(foresight_config(scale).world_config(), world, progress=False)
    wcfg = WorldConfig.from_dict(json.loads((Path(world) / "manifest.json").read_text())["world_config"])
    seg = load_segments(world, with_text=False)  # read into memory: a temporary world can go
    if tmp is not None:
        shutil.rmtree(tmp)
    sids = seg["topic_l4"].astype(np.int64) * 3 + seg["moment"]
    return seg, sids, f"true (leaf, moment) Sids, {wcfg.scale} world", wcfg.t0_ms + (wcfg.days - 1) * DAY_MS


def _busiest_tick(seg, test_day: int) -> int:
    """The tick (a multiple of 30 s) of the test day with the most rooms on air.

    The test day comes from the world's config: the last segment can end after midnight of
    the last day, and a day taken from it would be one with almost no room on air.
    """
    ticks = np.arange(test_day, test_day + DAY_MS, TICK_MS)
    live = np.array([((seg["start_ts"] <= t) & (seg["end_ts"] > t)).sum() for t in ticks])
    return int(ticks[live.argmax()])


def _live(seg, t: int) -> np.ndarray:
    return np.unique(seg["author_id"][(seg["start_ts"] <= t) & (seg["end_ts"] > t)]).astype(np.int64)


def _naive_contexts(end_ts, author, sids, authors, t: int, l: int) -> np.ndarray:
    """The first cut's baseline (contexts only): one scan of the whole log per author."""
    from fluidrec.foresight.rle import rle_encode

    values, runs = np.zeros((len(authors), l), np.int64), np.zeros((len(authors), l), np.int64)
    for i, a in enumerate(authors.tolist()):
        rows = np.flatnonzero((author == a) & (end_ts <= t))
        rows = rows[np.argsort(end_ts[rows], kind="stable")]
        v, r = rle_encode(sids[rows])
        k = min(len(v), l)
        if k:
            values[i, l - k:], runs[i, l - k:] = v[-k:], r[-k:]
    return values


def _warm(seg, sids, t: int, cfg, model, live_prev):
    """The store side as it stands just before tick t, and the log (both untimed)."""
    from fluidrec.foresight.scoring import LiveScorer
    from fluidrec.foresight.sequences import SidStore, TimeOrderedLog

    author, end_ts = seg["author_id"].astype(np.int64), seg["end_ts"].astype(np.int64)
    store = SidStore(end_ts, author, sids, l=cfg.context)
    store.advance(t - TICK_MS)  # live: the store has followed the stream up to the last tick
    scorer = LiveScorer(model, store)
    scorer.score(live_prev)  # ... and the previous tick was scored
    return scorer, TimeOrderedLog.build(end_ts, author, sids)


def _one_repeat(warm, log, seg, sids, t: int, cfg, model, live_prev, live, first: str) -> dict:
    """Time one tick on each side, interleaved, from a fresh copy of the warm store side."""
    from fluidrec.foresight.scoring import predict_from_log, predict_next

    fork = lambda: copy.deepcopy(warm, memo={id(model): model})  # noqa: E731 - the model is shared, not copied
    scorer = fork()

    def store_side() -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        scorer.store.advance(t)
        return scorer.score(live), time.perf_counter() - t0

    def log_side() -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        return predict_from_log(model, log, live, t, cfg.context), time.perf_counter() - t0

    if first == "store":  # alternate which side runs first: neither always meets cold caches
        (pred_store, store_s), (pred_log, log_s) = store_side(), log_side()
    else:
        (pred_log, log_s), (pred_store, store_s) = log_side(), store_side()
    assert (pred_store == pred_log).all(), "store and log predictions differ"
    # Breakdown, piece by piece, on another copy: the same authors forwarded.
    store = fork().store
    before = store.count[live].copy()
    t3 = time.perf_counter()
    store.advance(t)
    t4 = time.perf_counter()
    stale = live[(store.count[live] != before) | ~np.isin(live, live_prev)]
    ctx = store.contexts(stale)
    t5 = time.perf_counter()
    predict_next(model, ctx)
    t6 = time.perf_counter()
    assert len(stale) == scorer.forwarded
    ctx_log = log.contexts(live, t, cfg.context)
    t7 = time.perf_counter()
    predict_next(model, ctx_log)
    t8 = time.perf_counter()
    naive = _naive_contexts(seg["end_ts"].astype(np.int64), seg["author_id"].astype(np.int64), sids, live, t, cfg.context)
    t9 = time.perf_counter()
    assert (naive == ctx_log.values).all()
    return {"store_s": store_s, "log_s": log_s, "store_ingest_s": t4 - t3, "store_sequences_s": t5 - t3,
            "store_forward_s": t6 - t5, "log_sequences_s": t7 - t6, "log_forward_s": t8 - t7, "naive_log_sequences_s": t9 - t8,
            "forwarded": scorer.forwarded}


def main() -> None:
    import torch

    from fluidrec.foresight.config import foresight_config
    from fluidrec.foresight.model import NextSidModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=None, help="a foresight run directory (its world and Sids)")
    ap.add_argument("--world", default=None, help="a foresight world directory (generated there when absent)")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    seg, sids, source, test_day = _segments(args.run, args.world, args.scale)
    cfg = foresight_config(args.scale).next_sid
    t = _busiest_tick(seg, test_day)
    live_prev, live = _live(seg, t - TICK_MS), _live(seg, t)
    torch.manual_seed(0)
    model = NextSidModel(int(sids.max()) + 1, cfg).eval()
    warm, log = _warm(seg, sids, t, cfg, model, live_prev)
    reps = [_one_repeat(warm, log, seg, sids, t, cfg, model, live_prev, live, ("store", "log")[i % 2]) for i in range(args.repeats)]
    best = {k: float(min(r[k] for r in reps)) for k in reps[0] if k.endswith("_s")}
    out = {
        "scale": args.scale, "sids": source, "segments": int(len(seg)), "live_authors": int(len(live)),
        "forwarded_by_store": int(reps[0]["forwarded"]), "tick_ms": t, "context": cfg.context, "repeats": args.repeats,
        **best,
        "ratio": best["log_s"] / best["store_s"], "sequence_ratio": best["log_sequences_s"] / best["store_sequences_s"],
        "naive_sequence_ratio": best["naive_log_sequences_s"] / best["store_sequences_s"], "target": TARGET,
    }
    out["meets_target"] = out["ratio"] >= TARGET
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
