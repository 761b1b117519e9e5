"""Serving load test: rank throughput and latency while slices are ingested, against the issue's limits.

Starts ``fluidrec serve`` as a real process on a loopback port with a fresh store, measures
startup (process start to the first served rank request, compilation included), seeds
rooms and user histories, then runs the open-loop mix of ``fluidrec.serve.loadtest``
(default: 100 rank requests/s of 200 candidates + 10 slice ingests/s through the encoder,
60 s, 16 connections) and prints ``rank_rps``, ``p50_ms``, ``p99_ms``, ``errors``,
``ingest_rps`` and ``startup_s`` beside their targets (>= 100 rank/s, p99 <= 30 ms,
0 errors, startup <= 60 s). The load generator shares the machine's cores with the server:
``client_cores`` / ``client_cpu_ms_per_request`` is its own CPU over the measured phase,
``server_cores`` / ``server_cpu_ms_per_request`` the server's (all its workers).

Usage:
    python benchmarks/serve.py [--run runs/demo] [--state sqlite:///PATH|redis://HOST:PORT] [--duration 60]
        [--rank-rate 100] [--ingest-rate 10] [--concurrency 16] [--candidates 200] [--compile background|wait|off] [--json]
    python benchmarks/serve.py --profile --threads 1 [--requests 300] [--json]

``--profile`` instead measures where one rank request's CPU goes, in process, section by
section, the fast path against the plain one (``fluidrec.serve.profile``; ``--threads 1``
keeps the scorer's kernel on the measured thread).

Without ``--run`` it serves ``runs/demo`` when that holds a finished main job, else a tiny run
built into a temporary directory (~20 s). ``--rank-rate 0`` runs closed loop (maximum throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from fluidrec.serve.loadtest import LoadConfig, run_load
from fluidrec.serve.process import RedisProcess, ServerProcess, process_cpu_s, request_json

TARGETS = {"rank_rps": 100.0, "p99_ms": 30.0, "errors": 0, "startup_s": 60.0}
DEMO = Path("runs/demo")


def _run_dir(arg: str | None, tmp: Path) -> Path:
    if arg:
        return Path(arg)
    if (DEMO / "rankers" / "fluid" / "model.pt").is_file():
        return DEMO
    from fluidrec.serve.tiny import build_tiny_run

    print("building a tiny run (no runs/demo) ...", file=sys.stderr)
    return build_tiny_run(tmp / "run").root


def _first_rank(server: ServerProcess, t_spawn: float) -> float:
    """Seconds from process start to the first rank answer (the service binds only once warm)."""
    status, body = request_json("POST", server.url + "/v1/rank", {"user_id": 0, "ts": 0, "candidates": [1]})
    if status != 200:
        raise RuntimeError(f"first rank request failed: {status} {body}")
    return time.perf_counter() - t_spawn


def _wait_compiled(server: ServerProcess, timeout_s: float = 600) -> dict:
    """The health once the background compilation ended (the measured phase is the compiled scorer's)."""
    deadline = time.monotonic() + timeout_s
    while (health := server.health())["compile"] == "pending":
        if time.monotonic() > deadline:
            raise TimeoutError("the scorer did not compile in time")
        time.sleep(0.5)
    return health


def _profile(args) -> int:
    from fluidrec.serve.profile import profile_rank

    with tempfile.TemporaryDirectory(prefix="fluidrec-serve-bench-") as tmp:
        res = profile_rank(_run_dir(args.run, Path(tmp)), requests=args.requests, compile=args.compile != "off", threads=args.threads)
    res["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(res, indent=2) if args.json else "\n".join(f"{k:<24} {v}" for k, v in res.items()))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None)
    ap.add_argument("--state", default=None, help="default: a fresh SQLite file; 'redis' starts a private redis-server")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--rank-rate", type=float, default=100.0)
    ap.add_argument("--ingest-rate", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--rooms", type=int, default=400)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", choices=("background", "wait", "off"), default="background")
    ap.add_argument("--log", default=None, help="server log file")
    ap.add_argument("--profile", action="store_true", help="instead: where one rank request's CPU goes, in process (fluidrec.serve.profile)")
    ap.add_argument("--requests", type=int, default=300, help="with --profile: requests profiled")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.profile:
        return _profile(args)
    cfg = LoadConfig(duration_s=args.duration, rank_rate=args.rank_rate, ingest_rate=args.ingest_rate, concurrency=args.concurrency,
                     candidates=args.candidates, rooms=args.rooms)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fluidrec-serve-bench-") as tmp:
        tmp_path = Path(tmp)
        run = _run_dir(args.run, tmp_path)
        redis = RedisProcess(tmp_path / "redis").start() if args.state == "redis" else None
        state = redis.url if redis else (args.state or f"sqlite:///{tmp_path / 'state.sqlite'}")
        server_args = ["--run", str(run), "--state", state, "--workers", str(args.workers), "--threads", str(args.threads)]
        server_args += ["--compile", args.compile]
        load_before = os.getloadavg()
        t_spawn = time.perf_counter()
        server = ServerProcess(server_args, log=args.log).start(timeout_s=300)
        try:
            startup = _first_rank(server, t_spawn)
            health = _wait_compiled(server)
            compiled_s = time.perf_counter() - t_spawn
            report = run_load(server.url, cfg, server_cpu=lambda: process_cpu_s(server.proc.pid))
        finally:
            server.stop()
            if redis:
                redis.stop()
    res = {**report, "startup_s": round(startup, 2), "compiled_after_s": round(compiled_s, 2), "compiled": health["compiled"], "store": state.split(":")[0], "run": str(run),
           "workers": args.workers, "threads": args.threads, "loadavg_before": [round(x, 2) for x in load_before],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()], "targets": TARGETS}  # fmt: skip
    res["compiled_within_startup_target"] = res["compiled_after_s"] <= TARGETS["startup_s"]
    res["meets_targets"] = bool(
        res["rank_rps"] >= TARGETS["rank_rps"] * 0.99 and (res["p99_ms"] or 1e9) <= TARGETS["p99_ms"]
        and res["errors"] == TARGETS["errors"] and res["startup_s"] <= TARGETS["startup_s"]
    )  # fmt: skip
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
    else:
        for k, v in res.items():
            print(f"{k:<22} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
