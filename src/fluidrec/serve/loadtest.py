"""Load test of a running service on loopback: a bounded, open-loop mix of rank and ingest requests.

``run_load(url, LoadConfig(...))`` first seeds ``rooms`` rooms (one slice each, precomputed
codes) and ``users`` histories, then for ``duration_s`` sends rank requests of
``candidates`` rooms at ``rank_rate`` per second and slice ingests (through the encoder:
text fields) at ``ingest_rate`` per second, over at most ``concurrency`` keep-alive
connections. Open loop: requests leave on a fixed schedule whether or not earlier ones have
returned, and a request's latency runs from its scheduled time (a request waiting for a
free connection counts that wait), so a slow server cannot hide its queue
("coordinated omission"). Every request is bounded: the test sends
``duration_s * (rank_rate + ingest_rate)`` requests and stops.

The client is a few lines of HTTP/1.1 over asyncio streams, not an HTTP library: on a
2-core machine the load generator's CPU is taken from the server.

Example:
    >>> report = run_load("http://127.0.0.1:8000", LoadConfig(duration_s=60))
    >>> report["rank_rps"], report["p99_ms"], report["errors"]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from fluidrec.errors import check

T0 = 1_800_000_000_000  # the simulated clock's start (unix ms); rooms and requests live after it
WORDS = ("karaoke", "singing", "cooking", "noodle", "game", "football", "chat", "dance", "guitar", "makeup", "travel", "news")


@dataclasses.dataclass(frozen=True)
class LoadConfig:
    """One load test.

    Args:
        duration_s: length of the measured phase.
        rank_rate, ingest_rate: requests per second of each kind (rank_rate 0: closed loop,
            every connection sends back to back, 9 ranks to 1 ingest).
        concurrency: connections (the most requests in flight).
        candidates: rooms per rank request.
        rooms, users: seeded before the measured phase.
        history: clicks seeded per user.
        seed: draws of users, rooms and texts.
    """

    duration_s: float = 60.0
    rank_rate: float = 100.0
    ingest_rate: float = 10.0
    concurrency: int = 16
    candidates: int = 200
    rooms: int = 400
    users: int = 100
    history: int = 20
    seed: int = 0
    token: str | None = None

    def __post_init__(self) -> None:
        check(0 < self.duration_s <= 3600, f"duration_s must be in (0, 3600], got {self.duration_s}")
        check(self.rank_rate >= 0 and self.ingest_rate >= 0, "rates must be >= 0")
        check(1 <= self.concurrency <= 256, f"concurrency must be in [1, 256], got {self.concurrency}")
        check(1 <= self.candidates <= self.rooms, f"candidates must be in [1, rooms={self.rooms}], got {self.candidates}")
        check(self.users >= 1 and self.history >= 0, "users must be >= 1, history >= 0")


class Connection:
    """One keep-alive HTTP/1.1 connection (JSON in, status and raw body out)."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n{self.auth}"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        try:
            self.writer.write(head.encode() + body)
            await self.writer.drain()
            status = int((await self.reader.readline()).split()[1])
            length, close = 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            data = await self.reader.readexactly(length)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _text(rng: np.random.Generator) -> dict[str, str]:
    words = rng.choice(WORDS, 6)
    return {"title": " ".join(words[:3]), "transcript": " ".join(words), "comments": " ".join(words[3:])}


class _Mix:
    """The requests of one test: seeded rooms and users, and the next rank or ingest body."""

    def __init__(self, cfg: LoadConfig, levels: int, codebook: int) -> None:
        self.cfg, self.levels, self.codebook = cfg, levels, codebook
        self.rng = np.random.default_rng(cfg.seed)
        self.room_ids = np.arange(cfg.rooms, dtype=np.int64) + 1_000_000
        self.next_slice = 10_000_000
        self.clock = T0

    def seed_slice(self, i: int) -> bytes:
        codes = self.rng.integers(0, self.codebook, self.levels).tolist()
        self.next_slice += 1
        return json.dumps({"slice_id": self.next_slice, "room_id": int(self.room_ids[i]), "author_id": i % 97,
                           "start_ts": T0 - 60_000, "end_ts": T0 + 3_600_000, "codes": codes}).encode()  # fmt: skip

    def click(self, user: int) -> bytes:
        return json.dumps({"user_id": user, "ts": T0, "room_id": int(self.rng.choice(self.room_ids))}).encode()

    def rank(self, elapsed_s: float) -> bytes:
        cands = self.rng.choice(self.room_ids, self.cfg.candidates, replace=False).tolist()
        # orjson: the generator runs on the server's cores (the standard library took ~20x longer to write this body)
        return orjson.dumps({"user_id": int(self.rng.integers(0, self.cfg.users)), "ts": T0 + int(elapsed_s * 1000), "candidates": cands})

    def ingest(self, elapsed_s: float) -> bytes:
        self.next_slice += 1
        start = T0 + int(elapsed_s * 1000)
        return json.dumps({"slice_id": self.next_slice, "room_id": int(self.rng.choice(self.room_ids)), "author_id": 1,
                           "start_ts": start, "end_ts": start + 3_600_000, "text": _text(self.rng)}).encode()  # fmt: skip


async def _seed(conn: Connection, mix: _Mix) -> None:
    for i in range(mix.cfg.rooms):
        status, body = await conn.request("POST", "/v1/slices", mix.seed_slice(i))
        if status >= 300:
            raise RuntimeError(f"seeding room {i} failed: {status} {body[:300]!r}")
    for u in range(mix.cfg.users):
        for _ in range(mix.cfg.history):
            status, body = await conn.request("POST", "/v1/clicks", mix.click(u))
            if status >= 300:
                raise RuntimeError(f"seeding clicks failed: {status} {body[:300]!r}")


def _schedule(cfg: LoadConfig) -> list[tuple[float, str]]:
    """(offset s, kind) of every request, evenly spaced per kind, merged in time order."""
    events = [(i / cfg.rank_rate, "rank") for i in range(int(cfg.duration_s * cfg.rank_rate))]
    if cfg.ingest_rate > 0:
        events += [((i + 0.5) / cfg.ingest_rate, "ingest") for i in range(int(cfg.duration_s * cfg.ingest_rate))]
    return sorted(events)


async def _measure(url: str, cfg: LoadConfig, mix: _Mix, server_cpu: Callable[[], float] | None = None) -> dict[str, Any]:
    host, port = urlsplit(url).hostname, urlsplit(url).port
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(cfg.concurrency):
        pool.put_nowait(Connection(host, port, cfg.token))
    lat: dict[str, list[float]] = {"rank": [], "ingest": []}
    errors: dict[str, int] = {}
    cpu0, server0 = time.process_time(), server_cpu() if server_cpu else None
    t_start = time.perf_counter()

    async def one(kind: str, due: float, body: bytes) -> None:
        conn = await pool.get()
        try:
            status, data = await conn.request("POST", "/v1/rank" if kind == "rank" else "/v1/slices", body)
            if status >= 300:
                errors[f"{kind} {status}"] = errors.get(f"{kind} {status}", 0) + 1
            else:
                lat[kind].append(time.perf_counter() - due)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            errors[f"{kind} {type(exc).__name__}"] = errors.get(f"{kind} {type(exc).__name__}", 0) + 1
        finally:
            pool.put_nowait(conn)

    tasks = []
    if cfg.rank_rate > 0:
        for offset, kind in _schedule(cfg):
            due = t_start + offset
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            body = mix.rank(offset) if kind == "rank" else mix.ingest(offset)
            tasks.append(asyncio.ensure_future(one(kind, due, body)))
    else:  # closed loop: each connection back to back, 9 ranks to 1 ingest

        async def worker(w: int) -> None:
            i = 0
            while (now := time.perf_counter()) < t_start + cfg.duration_s:
                kind = "ingest" if (i + w) % 10 == 9 else "rank"
                await one(kind, now, mix.rank(now - t_start) if kind == "rank" else mix.ingest(now - t_start))
                i += 1

        tasks = [asyncio.ensure_future(worker(w)) for w in range(cfg.concurrency)]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    cpu = {"client": time.process_time() - cpu0, "server": server_cpu() - server0 if server_cpu else None}
    while not pool.empty():
        pool.get_nowait().close()
    return _report(cfg, lat, errors, elapsed, cpu)


def _report(cfg: LoadConfig, lat: dict[str, list[float]], errors: dict[str, int], elapsed: float, cpu: dict) -> dict[str, Any]:
    def pct(xs: list[float], q: float) -> float | None:
        return round(float(np.percentile(xs, q)) * 1000, 2) if xs else None

    r, i = lat["rank"], lat["ingest"]
    # open loop: the rate over the window the requests were offered in (the tail of the last ones is not idle time)
    window = cfg.duration_s if cfg.rank_rate > 0 else elapsed
    return {
        "rank_rps": round(len(r) / window, 2), "p50_ms": pct(r, 50), "p90_ms": pct(r, 90), "p99_ms": pct(r, 99),
        "max_ms": pct(r, 100), "errors": int(sum(errors.values())), "error_kinds": errors,
        "ingest_rps": round(len(i) / window, 2), "ingest_p50_ms": pct(i, 50), "ingest_p99_ms": pct(i, 99),
        "rank_requests": len(r), "ingest_requests": len(i), "elapsed_s": round(elapsed, 2),
        "offered_rank_rate": cfg.rank_rate, "offered_ingest_rate": cfg.ingest_rate, "concurrency": cfg.concurrency,
        "candidates": cfg.candidates, "duration_s": cfg.duration_s,
        # CPU of the measured phase: the load generator's own (it runs on the same cores) and the server's
        "client_cpu_s": round(cpu["client"], 2), "client_cores": round(cpu["client"] / elapsed, 3),
        "client_cpu_ms_per_request": round(cpu["client"] * 1000 / max(1, len(r) + len(i)), 3),
        "server_cpu_s": None if cpu["server"] is None else round(cpu["server"], 2),
        "server_cores": None if cpu["server"] is None else round(cpu["server"] / elapsed, 3),
        "server_cpu_ms_per_request": None if cpu["server"] is None else round(cpu["server"] * 1000 / max(1, len(r) + len(i)), 3),
    }  # fmt: skip


def run_load(url: str, cfg: LoadConfig, *, server_cpu: Callable[[], float] | None = None) -> dict[str, Any]:
    """Seed, then measure (see the module docstring); returns the report dict.

    Args:
        server_cpu: the server's CPU seconds so far (``fluidrec.serve.process.process_cpu_s``),
            read at the start and end of the measured phase; None: not reported.
    """
    from fluidrec.serve.process import request_json

    status, health = request_json("GET", url + "/healthz")
    if status != 200:
        raise RuntimeError(f"{url}/healthz answered {status}: {health}")
    mix = _Mix(cfg, int(health["levels"]), min(int(health["num_codes"]), int(health["codebook_size"])))

    async def main() -> dict[str, Any]:
        seed_conn = Connection(urlsplit(url).hostname, urlsplit(url).port, cfg.token)
        t0 = time.perf_counter()
        await _seed(seed_conn, mix)
        seed_conn.close()
        report = await _measure(url, cfg, mix, server_cpu)
        report["seed_s"] = round(time.perf_counter() - t0 - report["elapsed_s"], 2)
        return report

    return asyncio.run(main())
