"""Crash test: kill -9 the service while slices are being ingested, restart it on the same store,
and check that nothing acknowledged was lost and nothing is half-written.

Each cycle starts ``fluidrec serve`` on the store, runs ``clients`` connections that ingest
slices (precomputed codes, into a few rooms so votes contend) as fast as the server takes
them, and kills the server with SIGKILL after a random delay (with ``kill_store`` the Redis
server is killed and restarted too). Then, with no server running, the store is opened
directly: every slice that got a 2xx must be there with the codes it was acknowledged
with, and ``verify_store`` replays every room's slices to check its vote, count and slice
on air. Slices whose request was cut by the kill are "in doubt": either outcome is
allowed, and they are sent again at the next start (the idempotent path). A last start
reads every acknowledged slice back through the API.

Example:
    >>> report = crash_cycles(["--run", "runs/demo", "--compile", "off"], "sqlite:////tmp/state.sqlite", CrashConfig(cycles=20))
    >>> report["acknowledged"], report["lost"]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
from typing import Any

import numpy as np

from fluidrec.errors import check
from fluidrec.serve.loadtest import T0, Connection
from fluidrec.serve.process import RedisProcess, ServerProcess, request_json


@dataclasses.dataclass(frozen=True)
class CrashConfig:
    """Args: cycles (kill -9 / restart rounds), clients (concurrent ingest connections), rooms (the slices'
    rooms), kill_after_s (the kill comes uniformly within this window after ingest starts), seed, kill_store
    (Redis only: kill -9 Redis as well and restart it from its AOF)."""

    cycles: int = 20
    clients: int = 4
    rooms: int = 20
    kill_after_s: tuple[float, float] = (0.3, 1.5)
    seed: int = 0
    kill_store: bool = False

    def __post_init__(self) -> None:
        check(self.cycles >= 1 and self.clients >= 1 and self.rooms >= 1, "cycles, clients and rooms must be >= 1")
        check(0 <= self.kill_after_s[0] <= self.kill_after_s[1], f"kill_after_s must be (low, high) with 0 <= low <= high, got {self.kill_after_s}")


class _Ledger:
    """What the clients were told: acknowledged slices (id -> room, codes) and slices cut by the kill."""

    def __init__(self, cfg: CrashConfig, levels: int, codebook: int) -> None:
        self.rng = np.random.default_rng(cfg.seed)
        self.cfg, self.levels, self.codebook = cfg, levels, codebook
        self.acked: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.in_doubt: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.refused: list[str] = []
        self.next_id = 0

    def new_slice(self) -> tuple[int, int, tuple[int, ...]]:
        self.next_id += 1
        room = int(self.rng.integers(0, self.cfg.rooms)) + 500
        return self.next_id, room, tuple(int(c) for c in self.rng.integers(0, self.codebook, self.levels))


def _body(slice_id: int, room: int, codes: tuple[int, ...]) -> bytes:
    start = T0 + slice_id * 1000
    return json.dumps({"slice_id": slice_id, "room_id": room, "author_id": room % 7, "start_ts": start, "codes": list(codes)}).encode()


async def _ingest_until_killed(server: ServerProcess, ledger: _Ledger, redis: RedisProcess | None, delay_s: float) -> None:
    retry = list(ledger.in_doubt.items())  # cut by the last kill: send again (201 or 200, either is right)
    ledger.in_doubt.clear()

    async def client() -> None:
        conn = Connection("127.0.0.1", server.port)
        while True:
            if retry:
                sid, (room, codes) = retry.pop()
            else:
                sid, room, codes = ledger.new_slice()
            try:
                status, data = await conn.request("POST", "/v1/slices", _body(sid, room, codes))
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                ledger.in_doubt[sid] = (room, codes)
                return
            if status in (200, 201):
                ledger.acked[sid] = (room, codes)
            else:
                ledger.refused.append(f"slice {sid}: {status} {data[:200]!r}")

    tasks = [asyncio.ensure_future(client()) for _ in range(ledger.cfg.clients)]
    await asyncio.sleep(delay_s)
    server.kill()
    if redis is not None and ledger.cfg.kill_store:
        redis.kill()
    await asyncio.gather(*tasks)


def _check_store(state: str, levels: int, ledger: _Ledger) -> tuple[list[int], list[str]]:
    """(ids of acknowledged slices missing or changed, consistency problems), read from the store itself."""
    from fluidrec.serve.backends import open_store
    from fluidrec.serve.store import verify_store

    store = open_store(state, levels)
    try:
        lost = []
        for sid, (room, codes) in ledger.acked.items():
            rec = store.get_slice(sid)
            if rec is None or rec.room_id != room or rec.codes != codes:
                lost.append(sid)
        return lost, verify_store(store)
    finally:
        store.close()


def _read_back(server: ServerProcess, ledger: _Ledger) -> list[int]:
    """Acknowledged slices that the restarted service does not return as acknowledged."""
    missing = []
    for sid, (room, codes) in ledger.acked.items():
        status, body = request_json("GET", f"{server.url}/v1/slices/{sid}")
        if status != 200 or body["room_id"] != room or tuple(body["codes"]) != codes:
            missing.append(sid)
    return missing


def crash_cycles(server_args: list[str], state: str, cfg: CrashConfig, *, redis: RedisProcess | None = None, log: str | None = None) -> dict[str, Any]:
    """Run the cycles (see the module docstring); returns counts and the problems found (empty lists: none)."""
    rng = np.random.default_rng(cfg.seed + 1)
    args = [*server_args, "--state", state]
    server = ServerProcess(args, log=log).start()
    health = server.health()
    ledger = _Ledger(cfg, int(health["levels"]), min(int(health["num_codes"]), int(health["codebook_size"])))
    lost: set[int] = set()
    problems: list[str] = []
    starts = [server.started_s]
    for cycle in range(cfg.cycles):
        if cycle:
            server = ServerProcess(args, log=log).start()
            starts.append(server.started_s)
        asyncio.run(_ingest_until_killed(server, ledger, redis, float(rng.uniform(*cfg.kill_after_s))))
        if redis is not None and cfg.kill_store:
            redis.start()  # Redis reloads its AOF after its own kill -9
        missing, bad = _check_store(state, ledger.levels, ledger)
        lost.update(missing)
        problems += [f"cycle {cycle}: {p}" for p in bad]
    with ServerProcess(args, log=log) as final:
        lost.update(_read_back(final, ledger))
    return {
        "cycles": cfg.cycles, "acknowledged": len(ledger.acked), "lost": len(lost), "lost_ids": sorted(lost)[:20],
        "inconsistent": len(problems), "problems": problems[:20], "in_doubt_at_end": len(ledger.in_doubt),
        "refused": len(ledger.refused), "refused_examples": ledger.refused[:5], "clients": cfg.clients, "rooms": cfg.rooms,
        "kill_store": cfg.kill_store, "restart_s_median": round(statistics.median(starts), 2),
    }  # fmt: skip
