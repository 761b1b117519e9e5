"""Where one rank request's CPU goes, in process: the fast path and the plain one, section by section.

``profile_rank(run)`` loads the run as the service does, seeds a fresh SQLite store as the
load test does (``fluidrec.serve.loadtest``: 400 rooms, 100 users with 20 clicks), then
sends the same rank bodies through both paths, interleaved request by request (the machine
is shared: only an interleaved comparison inside one process is fair), and reports the
median CPU time of each section (``time.thread_time_ns``; the scorer's kernel runs on the
calling thread with ``threads=1``), and of the whole ASGI app without a socket, fast path
on and off. What the HTTP server adds on top (uvicorn, the socket, the thread hand-off)
is the load test's ``server_cpu_ms_per_request`` minus the app's figure.

Example:
    >>> profile_rank("runs/demo", requests=300)["fast"]["scorer"]       # median ms
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm import tqdm

FAST = ("parse", "state (cache: feed read, history, rooms)", "features (request_batch)", "scorer", "answer", "encode")
PLAIN = ("parse (pydantic)", "state (store: history, rooms)", "features (make_batch + serving_layout)", "scorer", "answer (+ lists)", "encode")


def _seeded_service(run: Path, store_path: Path, compile: bool, threads: int, seed: int):
    import orjson as _orjson

    from fluidrec.serve.loadtest import LoadConfig, _Mix
    from fluidrec.serve.model import Artifacts, ServingModel
    from fluidrec.serve.schemas import ClickIn, SliceIn
    from fluidrec.serve.service import Service
    from fluidrec.serve.backends import open_store

    model = ServingModel.load(Artifacts.resolve(run), compile=compile, threads=threads)
    store = open_store(f"sqlite:///{store_path}", model.levels, history_len=model.history_len)
    cfg = LoadConfig(seed=seed)
    mix = _Mix(cfg, model.levels, min(model.num_codes, model.codebook_size))
    svc = Service(model, store)
    for i in range(cfg.rooms):
        svc.ingest(SliceIn.model_validate_json(mix.seed_slice(i)))
    for u in range(cfg.users):
        for _ in range(cfg.history):
            svc.click(ClickIn(**_orjson.loads(mix.click(u))))
    model.warm_up(cfg.candidates)
    return svc, [mix.rank(i * 0.01) for i in range(cfg.users)]


def _sections(svc, body: bytes, fast: bool) -> list[int]:
    """CPU ns of each section of one request (FAST or PLAIN order)."""
    from fluidrec.serve.app import parse_rank
    from fluidrec.serve.features import request_batch, request_batch_reference
    from fluidrec.serve.schemas import RankIn
    from fluidrec.serve.service import _lists

    m, out, clock = svc.model, [], time.thread_time_ns
    t = clock()

    def tick() -> None:
        nonlocal t
        now = clock()
        out.append(now - t)
        t = now

    req = parse_rank(body) if fast else RankIn.model_validate_json(body)
    tick()
    if fast:  # one change-feed read, then both from memory
        hist, tab = svc.cache.request(req.user_id, m.history_len, req.candidates)
    else:
        hist = np.asarray(svc.store.history(req.user_id, m.history_len), np.int64).reshape(-1, m.levels)  # (K, L)
        tab = svc.store.room_table(req.candidates)
    tick()
    rooms = np.asarray(req.candidates, np.int64)
    sc, rc = m.ranker_codes(tab.slice_codes), m.ranker_codes(tab.room_codes)
    build = request_batch if fast else request_batch_reference
    batch = build(m.scorer.model, m.context, req.user_id, rooms, tab, sc, rc, req.ts, m.ranker_codes(hist))
    tick()
    probs = m.scorer(batch)
    tick()
    answer = svc._answer(req, rooms, tab.known, sc, rc, probs, len(hist))
    answer = answer if fast else _lists(answer)
    tick()
    orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    tick()
    return out


def asgi_post_rank(run, app, body: bytes) -> tuple[int, bytes]:
    """One ``POST /v1/rank`` through the ASGI ``app`` with no socket: (status, body bytes).

    ``run`` drives the coroutine (``asyncio.run`` or an event loop's ``run_until_complete``).
    """
    sent, pending = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": "/v1/rank", "raw_path": b"/v1/rank", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2)}  # fmt: skip
    run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _asgi_cpu_ns(loop: asyncio.AbstractEventLoop, app, body: bytes) -> int:
    c0 = time.process_time_ns()  # the app hands scoring to its scorer thread: count every thread
    status, answer = asgi_post_rank(loop.run_until_complete, app, body)
    if status != 200:
        raise RuntimeError(f"rank answered {status}: {answer[:300]!r}")
    return time.process_time_ns() - c0


def profile_rank(run: str | Path, *, requests: int = 300, compile: bool = True, threads: int = 1, seed: int = 0) -> dict[str, Any]:
    """Median CPU ms per section of a 200-candidate rank request, fast and plain paths (see the module docstring)."""
    from fluidrec.serve.app import create_app
    from fluidrec.serve.config import ServeConfig

    with tempfile.TemporaryDirectory(prefix="fluidrec-serve-profile-") as tmp:
        svc, bodies = _seeded_service(Path(run), Path(tmp) / "state.sqlite", compile, threads, seed)
        cfg = ServeConfig(run=Path(run))
        apps = {"app (fast path)": create_app(svc, cfg, fast=True), "app (FastAPI route, same service)": create_app(svc, cfg, fast=False)}
        times: dict[str, list] = {"fast": [], "plain": [], **{name: [] for name in apps}}
        loop = asyncio.new_event_loop()  # one loop, as a server has
        for i in tqdm(range(requests), desc="profiling rank", unit="req"):
            body = bodies[i % len(bodies)]
            times["fast"].append(_sections(svc, body, fast=True))
            times["plain"].append(_sections(svc, body, fast=False))
            for name, app in apps.items():
                times[name].append(_asgi_cpu_ns(loop, app, body))
        loop.close()
        svc.store.close()
    med = lambda xs: round(float(np.median(xs)) / 1e6, 3)  # noqa: E731
    out: dict[str, Any] = {}
    for path, names in (("fast", FAST), ("plain", PLAIN)):
        cols = np.asarray(times[path])  # (requests, sections)
        out[path] = {name: med(cols[:, j]) for j, name in enumerate(names)}
        out[path]["total (sum of medians)"] = round(sum(out[path][n] for n in names), 3)
    out.update({name: med(times[name]) for name in apps})
    out.update({"requests": requests, "compiled": bool(svc.model.scorer.compiled), "threads": threads, "run": str(run)})
    return out
