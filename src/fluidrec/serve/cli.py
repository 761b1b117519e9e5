"""``fluidrec serve``: the HTTP ranking service on a trained run (see docs/serving.md).

    fluidrec serve --run runs/demo                                   # SQLite at runs/demo/serve/state.sqlite
    fluidrec serve --run runs/demo --state redis://127.0.0.1:6379/0 --workers 2 --token-file token.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fluidrec.utils.cli import bounded_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP ranking service: ingest slices, keep room votes in a store, rank live rooms",
        description="Serve a trained ranker with its encoder and code model. State (room votes, user histories) lives in "
        "SQLite (WAL, one file; default <run>/serve/state.sqlite) or Redis. API docs at http://HOST:PORT/docs.",
    )  # fmt: skip
    p.add_argument("--run", required=True, help="a `fluidrec reproduce` run directory, or a `fluidrec ranker train` output directory")
    p.add_argument("--state", default=None, help="sqlite:///PATH or redis://HOST:PORT[/DB] (default sqlite:///<run>/serve/state.sqlite)")
    p.add_argument("--arm", default="fluid", help="ranker of a reproduce run: rankers/<arm> (default fluid)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=bounded_int(1, 65535, "a port"), default=8000, help="default 8000")
    p.add_argument("--workers", type=bounded_int(1, 64, "a worker count"), default=1, help="processes sharing the store (default 1)")
    p.add_argument("--token-file", default=None, help="file with a bearer token required by POST /v1/slices and /v1/clicks")
    p.add_argument("--encoder", default=None, help="encoder directory (default: the run's encoder/)")
    p.add_argument("--code-model", default=None, help="RQ-KMeans model directory (default: the run's codes/model/)")
    p.add_argument(
        "--compile", choices=("background", "wait", "off"), default="background",
        help="background: serve eagerly at once, compiled once built (default); wait: listen only once compiled; off: eager only",
    )  # fmt: skip
    p.add_argument("--threads", type=bounded_int(1, 64, "a thread count"), default=1, help="threads of the compiled scorer's backbone kernel per worker (default 1; other torch ops use 1)")
    p.add_argument("--max-candidates", type=positive_int, default=1000, help="most rooms per rank request (default 1000)")
    p.add_argument("--max-body-bytes", type=positive_int, default=1 << 20, help="larger request bodies get 413 (default 1 MiB)")
    p.add_argument("--slice-ms", type=positive_int, default=120_000, help="slice length when a slice has no end_ts (default 120000)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from fluidrec.serve.app import serve
    from fluidrec.serve.config import ServeConfig
    from fluidrec.serve.service import ServiceConfig

    cfg = ServeConfig(
        run=Path(args.run), state=args.state, arm=args.arm, host=args.host, port=args.port, workers=args.workers,
        token_file=Path(args.token_file) if args.token_file else None, encoder=Path(args.encoder) if args.encoder else None,
        code_model=Path(args.code_model) if args.code_model else None, compile=args.compile, threads=args.threads,
        max_body_bytes=args.max_body_bytes, service=ServiceConfig(max_candidates=args.max_candidates, slice_ms=args.slice_ms),
    )  # fmt: skip
    return serve(cfg)
