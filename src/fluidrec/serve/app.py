"""The HTTP API (FastAPI) around a ``Service``, and ``serve(cfg)``, which runs it on uvicorn.

Endpoints (the OpenAPI page is ``/docs``, its JSON ``/openapi.json``):

- ``POST /v1/slices`` (token): ingest a slice; 201 new, 200 repeated (same answer).
- ``POST /v1/clicks`` (token): a click joins the user's history.
- ``POST /v1/rank``: per-task scores of candidate rooms, best first, with the codes used.
- ``GET /v1/rooms/{room_id}``, ``GET /v1/slices/{slice_id}``: stored state.
- ``GET /healthz``, ``GET /metrics`` (Prometheus text).

Threads: the event loop only parses and answers; scoring runs on one scorer thread (so the
compiled scorer is never entered twice at once, and its kernels, which run without the GIL,
overlap the loop's work), writes (encoding, quantising, the fsynced commit) on one writer
thread and reads of rooms and slices on a third, so a slow fsync never holds a rank
request. Each has a bounded queue (``max_queue``): past it the answer is a 503.

``POST /v1/rank`` has a fast path in front of FastAPI (``parse_rank``, ``_fast_rank``): a
plainly valid body is parsed with orjson and answered without routing or pydantic; any
other goes to the FastAPI route, so errors are the route's, byte for byte.

Errors are JSON: ``{"error", "field", "value", "reason"}``; bad input is always a 4xx
(422 invalid, 404 unknown room or slice, 409 slice id of another room, 401 token, 413 body
too large), and anything else a 500 with no internals in the body.

Example:
    >>> serve(ServeConfig(run=Path("runs/demo"), port=8080))     # blocks; Ctrl-C stops it
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from fluidrec.serve.config import ServeConfig
from fluidrec.serve.metrics import Metrics
from fluidrec.serve.schemas import INT64_MAX, ClickIn, RankIn, SliceIn
from fluidrec.serve.service import InputError, Service

log = logging.getLogger("fluidrec.serve")
CONFIG_ENV = "FLUIDREC_SERVE_CONFIG"  # how --workers N hands the config to each worker process


class _Lane:
    """One thread and a bounded queue in front of it (see the module docstring)."""

    def __init__(self, name: str, limit: int) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=f"fluidrec-{name}")
        self.limit, self.waiting = limit, 0

    async def run(self, fn, *args):
        if self.waiting >= self.limit:
            raise InputError("request", None, f"overloaded: {self.waiting} requests already waiting", status=503)
        self.waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self.waiting -= 1


def _shown(value: Any) -> Any:
    """An echoed input value as strict JSON: non-finite floats and other non-JSON values as text, long values cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)[:200]
    return value if len(text) <= 200 else text[:200] + "..."


def _error(status: int, field: str, value: Any, reason: str, errors: list | None = None) -> JSONResponse:
    body = {"error": reason, "field": field, "value": _shown(value), "reason": reason}
    if errors:
        body["errors"] = [{**e, "value": _shown(e["value"])} for e in errors[:20]]
    return JSONResponse(body, status_code=status)


def _field(loc: tuple) -> str:
    """("body", "codes", 2) -> "codes[2]"; ("path", "room_id") -> "room_id"."""
    parts = [p for p in loc if p not in ("body", "path", "query")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _validation_errors(exc) -> list[dict]:
    out = []
    for e in exc.errors():
        ctx = e.get("ctx") or {}
        value = ctx.get("value", None if e.get("type") == "missing" else e.get("input"))
        if e.get("type") == "json_invalid":  # loc is ("body", character offset)
            out.append({"field": "body", "value": None, "reason": f"invalid JSON at character {e['loc'][-1]}: {ctx.get('error', 'decode error')}"})
            continue
        out.append({"field": ctx.get("field") or _field(tuple(e.get("loc", ()))), "value": value, "reason": e.get("msg", "invalid")})
    return out


def _json(result: dict, status: int = 200) -> Response:
    # orjson: a rank answer holds ~1000 floats; the standard library took ~2 ms to write them, orjson ~0.07 ms
    return Response(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json")


def _endpoint(scope: dict) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _guard(app, metrics: Metrics, max_body: int, fast_rank=None):
    """Pure ASGI middleware: request metrics, the body-size limit (a 413 before the body is read)
    and the fast path of ``POST /v1/rank`` (``fast_rank``, see ``_fast_rank``).

    A body without a length is counted as it streams in; past the limit the 413 is sent from
    here and the app sees a disconnect (whatever it answers after that is dropped).
    """

    async def guarded(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        t0, seen, state = time.perf_counter(), 0, {"started": False, "refused": False}
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if fast_rank is not None and scope["path"] == "/v1/rank" and scope["method"] == "POST" and length is not None \
                and length.isdigit() and int(length) <= max_body:  # fmt: skip
            body = await _read_body(receive)
            if body is None:  # the client went away
                return None
            if await fast_rank(body, t0, send):
                return None
            receive = _replay(body, receive)  # not plainly valid: the validating route answers, naming the field

        async def timed_send(msg):
            if msg["type"] == "http.response.start":
                state["started"] = True
                metrics.observe(_endpoint(scope), scope["method"], msg["status"], time.perf_counter() - t0)
            await send(msg)

        async def app_send(msg):
            if not state["refused"]:
                await timed_send(msg)

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > max_body and not state["refused"]:
                state["refused"] = True
                if not state["started"]:
                    await _error(413, "body", seen, f"request body larger than {max_body} bytes")(scope, receive, timed_send)
                return {"type": "http.disconnect"}
            return msg

        if length is not None and length.isdigit() and int(length) > max_body:
            return await _error(413, "body", int(length), f"request body larger than {max_body} bytes")(scope, receive, timed_send)
        await app(scope, limited_receive, app_send)

    return guarded


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands the app the already-read body first, then the connection's messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed


_RANK_FIELDS = frozenset(RankIn.model_fields)


def _is_id(x: Any) -> bool:
    return type(x) is int and 0 <= x <= INT64_MAX  # bool is not int here: strict, as the schema


def parse_rank(body: bytes) -> RankIn | None:
    """The body as a ``RankIn`` when it is plainly valid, without pydantic's per-item work; None when
    it is not (or not plainly): the FastAPI route then validates it and names the field at fault.

    Accepts exactly what ``RankIn`` accepts with these checks: an object of known fields, ids
    and times integers in [0, 2^63), ``candidates`` ``"live"`` or a list of distinct such
    integers, ``sort_by`` a string, ``top_k`` null or such an integer (``tests/serve/test_fast_path.py``).
    """
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict or not d.keys() <= _RANK_FIELDS:
        return None
    user, ts, cands = d.get("user_id"), d.get("ts"), d.get("candidates")
    sort_by, top_k = d.get("sort_by", "click"), d.get("top_k")
    if not (_is_id(user) and _is_id(ts) and type(sort_by) is str and (top_k is None or _is_id(top_k))):
        return None
    if cands != "live":
        if type(cands) is not list or not all(type(x) is int for x in cands):
            return None
        if cands and (min(cands) < 0 or max(cands) > INT64_MAX or len(set(cands)) != len(cands)):
            return None
    return RankIn.model_construct(user_id=user, ts=ts, candidates=cands, sort_by=sort_by, top_k=top_k)


def _fast_rank(service: Service, lane: _Lane, metrics: Metrics):
    """``POST /v1/rank`` without FastAPI's routing, pydantic and response classes (~0.4 ms of a
    request's CPU, docs/serving.md): orjson in, the checks of ``parse_rank``, the scorer lane, orjson
    out. Returns False, untouched, for a body that is not plainly valid; errors it meets
    (503 overloaded, 4xx from the service) are answered as the route would."""

    async def handle(body: bytes, t0: float, send) -> bool:
        req = parse_rank(body)
        if req is None:
            return False
        try:
            status, out = 200, orjson.dumps(await lane.run(service.rank_arrays, req), option=orjson.OPT_SERIALIZE_NUMPY)
        except InputError as exc:
            status, out = exc.status, _error(exc.status, exc.field, exc.value, exc.reason).body
        except Exception:  # noqa: BLE001 - a bug: logged, answered 500 with nothing internal, as the route's handler does
            log.exception("internal error")
            status, out = 500, _error(500, "request", None, "internal error (see the server log)").body
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        metrics.observe("/v1/rank", "POST", status, time.perf_counter() - t0)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})
        return True

    return handle


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error", "field", "value", "reason"}`` (see the module docstring)."""

    @app.exception_handler(InputError)
    async def _input_error(_req, exc: InputError):
        return _error(exc.status, exc.field, exc.value, exc.reason)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req, exc: RequestValidationError):
        errors = _validation_errors(exc)
        first = errors[0] if errors else {"field": "body", "value": None, "reason": "invalid request"}
        return _error(422, first["field"], first["value"], first["reason"], errors)

    @app.exception_handler(HTTPException)
    async def _http(req, exc: HTTPException):
        return _error(exc.status_code, "path", req.url.path, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_req, exc: Exception):
        log.exception("internal error")
        return _error(500, "request", None, "internal error (see the server log)")


def _health(service: Service, startup_s: float | None) -> dict:
    m = service.model
    return {
        "status": "ok", "arm": m.artifacts.arm, "store": service.store.url.split("://")[0], "compiled": bool(m.scorer.compiled),
        "compile": m.compile_state, "compiled_s": m.compiled_s, "levels": m.levels, "codebook_size": m.codebook_size,
        "num_codes": m.num_codes, "tasks": list(m.tasks), "encoder": m.encoder is not None, "code_model": m.code_model is not None,
        "startup_s": startup_s, "pid": os.getpid(),
    }  # fmt: skip


def create_app(service: Service, cfg: ServeConfig, *, token: str | None = None, startup_s: float | None = None, fast: bool = True):
    """The FastAPI app for ``service`` (routes, error handlers, metrics, body limit, token).

    ``fast``: answer plainly valid rank requests on the fast path (``_fast_rank``); False:
    every request goes through FastAPI (the reference the fast path is tested against).
    """
    metrics = Metrics()
    metrics.gauges["fluidrec_scorer_compiled"] = lambda: float(service.model.scorer.compiled)
    if startup_s is not None:
        metrics.gauges["fluidrec_startup_seconds"] = startup_s
    lanes = {name: _Lane(name, cfg.max_queue) for name in ("score", "write", "read")}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        for lane in lanes.values():
            lane.pool.shutdown(wait=True)
        service.store.close()

    app = FastAPI(title="fluidrec serving", version="1", lifespan=lifespan,
                  description="Ranking of live rooms from their content codes. See docs/serving.md.")  # fmt: skip

    def authorized(request: Request) -> None:
        if token is None:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):  # constant time: no token guessing by timing
            raise InputError("Authorization", None, "write endpoints need the header 'Authorization: Bearer <token>'", status=401)

    _add_error_handlers(app)

    @app.post("/v1/slices", status_code=201, dependencies=[Depends(authorized)], summary="ingest a slice of a room")
    async def post_slice(body: SliceIn):
        out = await lanes["write"].run(service.ingest, body)
        metrics.ingest("created" if out["created"] else "duplicate")
        return _json(out, 201 if out["created"] else 200)

    @app.post("/v1/clicks", dependencies=[Depends(authorized)], summary="add a click to a user's history")
    async def post_click(body: ClickIn):
        return _json(await lanes["write"].run(service.click, body))

    @app.post("/v1/rank", summary="rank candidate rooms for a user")
    async def post_rank(body: RankIn):
        # On the scorer thread, not the event loop: the compiled scorer's kernels run without the
        # GIL, so the loop parses and answers other requests meanwhile (scoring inline measured
        # below 100 requests/s: the hand-off costs ~0.4 ms, the lost overlap more).
        return _json(await lanes["score"].run(service.rank_arrays, body))

    @app.get("/v1/rooms/{room_id}", summary="a room's state and vote counts")
    async def get_room(room_id: Annotated[int, Path(ge=0, le=INT64_MAX)]):
        return _json(await lanes["read"].run(service.room, room_id))

    @app.get("/v1/slices/{slice_id}", summary="a stored slice")
    async def get_slice(slice_id: Annotated[int, Path(ge=0, le=INT64_MAX)]):
        return _json(await lanes["read"].run(service.slice, slice_id))

    @app.get("/healthz", summary="liveness and what is served")
    async def healthz():
        counts = await lanes["read"].run(service.store.counts)  # also proves the store answers
        return _json({**_health(service, startup_s), **counts})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def get_metrics():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    return _guard(app, metrics, cfg.max_body_bytes, _fast_rank(service, lanes["score"], metrics) if fast else None)


def build_service(cfg: ServeConfig) -> tuple[Service, float]:
    """Load the model, open the store, warm every path up; returns the service and the seconds it took."""
    from fluidrec.serve.model import Artifacts, ServingModel
    from fluidrec.serve.backends import open_store

    t0 = time.perf_counter()
    artifacts = Artifacts.resolve(cfg.run, arm=cfg.arm, encoder=cfg.encoder, code_model=cfg.code_model)
    model = ServingModel.load(artifacts, compile=cfg.compile == "wait", threads=cfg.threads)
    store = open_store(cfg.state, model.levels, history_len=model.history_len)
    candidates = min(200, cfg.service.max_candidates)
    model.warm_up(candidates)
    if cfg.compile == "background":
        model.compile_in_background(candidates)
    return Service(model, store, cfg.service), time.perf_counter() - t0


def app_from_env():
    """uvicorn factory of each ``--workers N`` process: the config comes in ``FLUIDREC_SERVE_CONFIG``."""
    cfg = ServeConfig.from_json(os.environ[CONFIG_ENV])
    service, seconds = build_service(cfg)
    print(f"fluidrec serve: worker {os.getpid()} ready ({seconds:.1f} s)", file=sys.stderr, flush=True)
    return create_app(service, cfg, token=cfg.read_token(), startup_s=seconds)


def serve(cfg: ServeConfig) -> int:
    """Run the service until interrupted (the port opens only once the model is loaded and warm)."""
    import uvicorn

    token = cfg.read_token()
    if not cfg.loopback and token is None:
        print(f"fluidrec serve: warning: listening on {cfg.host} without --token-file: anyone who reaches it can write state", file=sys.stderr)
    common = {"host": cfg.host, "port": cfg.port, "log_level": "warning", "access_log": False, "timeout_graceful_shutdown": 5}
    if cfg.workers > 1:
        os.environ[CONFIG_ENV] = cfg.to_json()
        uvicorn.run("fluidrec.serve.app:app_from_env", factory=True, workers=cfg.workers, **common)
        return 0
    service, seconds = build_service(cfg)
    print(f"fluidrec serve: ready on http://{cfg.host}:{cfg.port} (arm {service.model.artifacts.arm}, store {service.store.url}, "
          f"compiled {service.model.scorer.compiled}, startup {seconds:.1f} s)", file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(create_app(service, cfg, token=token, startup_s=seconds), **common)
    return 0
