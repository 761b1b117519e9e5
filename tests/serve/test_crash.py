"""kill -9 during ingest, restart on the same store: no acknowledged slice is lost, nothing is
half-written, and the restarted service answers from the state it left (a few cycles; the
20-cycle run is ``benchmarks/serve_crash.py``)."""

from __future__ import annotations

from fluidrec.serve.crashtest import CrashConfig, crash_cycles


def _check(report: dict, least: int) -> None:
    assert report["acknowledged"] >= least, report  # the kill really came during ingest
    assert report["lost"] == 0, report
    assert report["inconsistent"] == 0, report
    assert report["refused"] == 0, report


def test_kill_9_loses_no_acknowledged_slice_sqlite(serve_run, tmp_path):
    args = ["--run", str(serve_run), "--compile", "off"]
    cfg = CrashConfig(cycles=2, clients=3, rooms=5, kill_after_s=(0.4, 0.8))
    _check(crash_cycles(args, f"sqlite:///{tmp_path / 'state.sqlite'}", cfg, log=str(tmp_path / "server.log")), 20)


def test_kill_9_of_service_and_redis_loses_no_acknowledged_slice(serve_run, redis_server, redis_url, tmp_path):
    args = ["--run", str(serve_run), "--compile", "off"]
    cfg = CrashConfig(cycles=1, clients=3, rooms=5, kill_after_s=(0.8, 1.2), kill_store=True)
    _check(crash_cycles(args, redis_url, cfg, redis=redis_server, log=str(tmp_path / "server.log")), 5)  # fsync always: slower
