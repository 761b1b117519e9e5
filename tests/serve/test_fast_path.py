"""The fast path of POST /v1/rank: it takes exactly the plainly valid bodies and answers them byte for
byte as the FastAPI route does; every other body goes to the route, whose answer (the error naming
the field) is unchanged. In process: the ASGI app called directly, fast path on and off."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from fluidrec.serve.app import create_app, parse_rank
from fluidrec.serve.config import ServeConfig
from fluidrec.serve.profile import asgi_post_rank
from fluidrec.serve.schemas import ClickIn, RankIn, SliceIn
from fluidrec.serve.service import Service
from fluidrec.serve.backends import open_store

T = 1_800_000_000_000

PLAIN = [  # valid, and taken by the fast path
    {"user_id": 1, "ts": T + 5000, "candidates": list(range(0, 70, 3))},
    {"user_id": 1, "ts": T + 5000, "candidates": [4, 2**63 - 1, 0], "top_k": 2, "sort_by": "like"},
    {"user_id": 2, "ts": T + 200_000, "candidates": "live", "top_k": None},
]
NOT_PLAIN = [  # refused by parse_rank: the route validates (some are valid for pydantic too, or fail in the service)
    b'{"user_id": 1, "ts": 1, "candidates": [1, true]}', b'{"user_id": 1, "ts": 1, "candidates": [1, 1]}',
    b'{"user_id": 1, "ts": 1, "candidates": [1, -2]}', b'{"user_id": 1, "ts": 1, "candidates": [1, 9223372036854775808]}',
    b'{"user_id": 1, "ts": 1.0, "candidates": [2]}', b'{"user_id": true, "ts": 1, "candidates": [2]}', b'[1]', b'{"user_id": 1',
    b'{"user_id": 18446744073709551616, "ts": 1, "candidates": [2]}', b'{"user_id": 1, "ts": 1, "candidates": [2], "x": 1}',
    b'{"ts": 1, "candidates": [2]}', b'{"user_id": 1, "ts": 1, "candidates": "all"}', b'{"user_id": 1, "ts": 1, "candidates": [2], "top_k": -1}',
    b'{"user_id": 1, "ts": 1, "candidates": [2], "sort_by": 3}', b'{"user_id": 1, "ts": 1, "candidates": [2.0]}',
    b'{"user_id": 1, "ts": 1, "candidates": [NaN]}', b'{"user_id": 1, "ts": 1, "candidates": {"a": 1}}',
]
IN_SERVICE = [  # plainly valid bodies the service refuses: answered from the fast path, as the route would
    b'{"user_id": 1, "ts": 1, "candidates": [1], "sort_by": "revenue"}', b'{"user_id": 1, "ts": 1, "candidates": []}',
]


@pytest.fixture(scope="module")
def apps(serving_model, serve_run, tmp_path_factory):
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('fast') / 's.sqlite'}", serving_model.levels, history_len=serving_model.history_len)
    svc = Service(serving_model, store)
    rng = np.random.default_rng(0)
    for i in range(100):
        codes = rng.integers(0, 8, 4).tolist()
        svc.ingest(SliceIn(slice_id=i, room_id=int(rng.integers(0, 60)), author_id=3, start_ts=T + i * 1000, codes=codes))
    svc.click(ClickIn(user_id=1, ts=T, slice_id=5))
    cfg = ServeConfig(run=serve_run)
    yield create_app(svc, cfg, fast=True), create_app(svc, cfg, fast=False)
    store.close()


def _call(app, body: bytes) -> tuple[int, bytes]:
    """One POST /v1/rank through the ASGI app, no socket."""
    return asgi_post_rank(asyncio.run, app, body)


def test_parse_rank_takes_exactly_the_plainly_valid_bodies():
    for body in PLAIN:
        req = parse_rank(json.dumps(body).encode())
        assert req is not None and req == RankIn.model_validate(body)  # what pydantic makes of it
    for body in NOT_PLAIN:
        assert parse_rank(body) is None, body


@pytest.mark.parametrize("body", [json.dumps(b).encode() for b in PLAIN] + NOT_PLAIN + IN_SERVICE)
def test_fast_path_answers_byte_for_byte_as_the_route(apps, body):
    fast, plain = apps
    got, want = _call(fast, body), _call(plain, body)
    assert got == want
    assert got[0] in (200, 422), got  # never a 5xx for bad input
    if got[0] == 422:
        out = json.loads(got[1])
        assert out["field"] and out["reason"]
