"""Crash safety of serving: kill -9 the service during slice ingest, restart it on the same store,
count acknowledged slices lost (target 0 over 20 cycles) and rooms found half-written.

Each cycle: ``fluidrec serve`` on the store, concurrent clients ingest slices into a few
rooms as fast as it takes them, SIGKILL after a random 0.3-1.5 s, then the store is read
directly (every 2xx slice present with its codes; every room's vote, count and slice on air
replayed from its slices), and the in-doubt slices are sent again at the next start
(``fluidrec.serve.crashtest``). The service runs eagerly (``--compile off``): the scorer is
not what is tested and the cycles restart in seconds.

Usage:
    python benchmarks/serve_crash.py [--run DIR] [--cycles 20] [--store sqlite|redis] [--kill-store] [--json]

``--store redis`` starts a private redis-server (AOF, ``appendfsync always``); ``--kill-store``
kill -9s Redis too in every cycle and restarts it from its AOF.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fluidrec.serve.crashtest import CrashConfig, crash_cycles
from fluidrec.serve.process import RedisProcess

DEMO = Path("runs/demo")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="default: runs/demo when finished, else a tiny run built here (~20 s)")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rooms", type=int, default=20)
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    ap.add_argument("--kill-store", action="store_true", help="redis: kill -9 Redis too in every cycle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", default=None, help="server log file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fluidrec-serve-crash-") as tmp:
        tmp_path = Path(tmp)
        if args.run:
            run = Path(args.run)
        elif (DEMO / "rankers" / "fluid" / "model.pt").is_file():
            run = DEMO
        else:
            from fluidrec.serve.tiny import build_tiny_run

            run = build_tiny_run(tmp_path / "run").root
        redis = RedisProcess(tmp_path / "redis").start() if args.store == "redis" else None
        state = redis.url if redis else f"sqlite:///{tmp_path / 'state.sqlite'}"
        cfg = CrashConfig(cycles=args.cycles, clients=args.clients, rooms=args.rooms, seed=args.seed, kill_store=args.kill_store)
        try:
            report = crash_cycles(["--run", str(run), "--compile", "off"], state, cfg, redis=redis, log=args.log)
        finally:
            if redis:
                redis.stop()
    report = {**report, "store": args.store, "run": str(run), "seconds": round(time.perf_counter() - t0, 1), "target_lost": 0}
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        for k, v in report.items():
            print(f"{k:<20} {v}")
    return 0 if report["lost"] == 0 and report["inconsistent"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
