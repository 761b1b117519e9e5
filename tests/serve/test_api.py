"""The HTTP API of a real ``fluidrec serve`` process on a loopback port (SQLite store, eager scorer).

Bad input gets a 4xx naming the field and the value (never a 500); slice ingest through the
encoder gives the codes the offline pipeline gave; ingest is idempotent; a rank answer is
the offline scorer's on the same inputs; writes need the token; bodies are size-limited.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.codes.io import read_codes
from fluidrec.codes.rooms import RoomCodeTracker
from fluidrec.serve.process import ServerProcess, request_json

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def world(serve_run):
    """The run's slices (text, ids), rooms, author bios and offline slice codes, by slice id."""
    cols = ["slice_id", "room_id", "author_id", "start_ts", "domain", "title", "transcript", "comments", "ocr", "tags"]
    slices = pq.read_table(serve_run / "world" / "slices.parquet", columns=cols).to_pylist()
    bios = {a["author_id"]: a["bio"] for a in pq.read_table(serve_run / "world" / "authors.parquet").to_pylist()}
    rooms = {r["room_id"]: r for r in pq.read_table(serve_run / "world" / "rooms.parquet").to_pylist()}
    ids, codes = read_codes(serve_run / "codes" / "slice_codes.parquet")
    live = [s for s in slices if s["domain"] == "live"]
    return {"slices": live, "bios": bios, "rooms": rooms, "codes": dict(zip(ids.tolist(), map(tuple, codes.tolist())))}


@pytest.fixture(scope="module")
def server(serve_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    (d / "token").write_text(TOKEN + "\n")
    args = ["--run", str(serve_run), "--state", f"sqlite:///{d / 'state.sqlite'}", "--compile", "off", "--token-file", str(d / "token")]
    with ServerProcess(args, log=d / "server.log") as srv:
        yield srv


def call(server, method, path, body=None, token=TOKEN):
    return request_json(method, server.url + path, body, token=token)


def _room_slices(world, room_id):
    return sorted((s for s in world["slices"] if s["room_id"] == room_id), key=lambda s: s["start_ts"])


def _text(world, s):
    fields = {f: s[f] for f in ("title", "transcript", "comments", "ocr", "tags")}
    return {**fields, "bio": world["bios"].get(s["author_id"])}


def _ingest_codes(server, world, s, **extra):
    room = world["rooms"][s["room_id"]]
    body = {"slice_id": s["slice_id"], "room_id": s["room_id"], "author_id": s["author_id"], "start_ts": s["start_ts"],
            "room_start_ts": room["start_ts"], "codes": list(world["codes"][s["slice_id"]]), **extra}  # fmt: skip
    return call(server, "POST", "/v1/slices", body)


def test_healthz(server):
    status, h = call(server, "GET", "/healthz")
    assert status == 200 and h["status"] == "ok" and h["arm"] == "fluid" and h["store"] == "sqlite"
    assert h["levels"] == 4 and h["encoder"] and h["code_model"] and "click" in h["tasks"]


def test_ingest_through_the_encoder_gives_the_offline_codes(server, world):
    for s in _room_slices(world, 3)[:4]:
        body = {"slice_id": s["slice_id"], "room_id": s["room_id"], "author_id": s["author_id"], "start_ts": s["start_ts"], "text": _text(world, s)}
        status, out = call(server, "POST", "/v1/slices", body)
        assert status == 201, out
        assert out["source"] == "encoder" and tuple(out["codes"]) == world["codes"][s["slice_id"]]


def test_ingest_is_idempotent_on_slice_id(server, world):
    s = _room_slices(world, 4)[0]
    status, first = _ingest_codes(server, world, s)
    assert status == 201 and first["created"]
    status, again = _ingest_codes(server, world, s)
    assert status == 200 and not again["created"]
    assert {k: v for k, v in again.items() if k not in ("created", "source")} == {k: v for k, v in first.items() if k not in ("created", "source")}
    status, room = call(server, "GET", f"/v1/rooms/{s['room_id']}")
    assert status == 200 and room["slices"] == 1 and [sum(v.values()) for v in room["votes"]] == [1, 1, 1, 1]
    status, err = _ingest_codes(server, world, {**s, "room_id": 3})  # same id, another room: idempotency cannot hold
    assert status == 409 and err["field"] == "slice_id" and err["value"] == s["slice_id"]


BAD = [  # (path, body, status, field, value)
    ("/v1/rank", {"user_id": "7", "ts": 1, "candidates": [1]}, 422, "user_id", "7"),
    ("/v1/rank", {"user_id": 7, "ts": -5, "candidates": [1]}, 422, "ts", -5),
    ("/v1/rank", {"user_id": 7, "ts": 1, "candidates": [1, "x"]}, 422, "candidates[1]", "x"),
    ("/v1/rank", {"user_id": 7, "ts": 1, "candidates": [1, 1]}, 422, "candidates[1]", 1),
    ("/v1/rank", {"user_id": 7, "ts": 1, "candidates": "all"}, 422, "candidates", "all"),
    ("/v1/rank", {"user_id": 7, "ts": 1, "candidates": []}, 422, "candidates", []),
    ("/v1/rank", {"user_id": 7, "ts": 1, "candidates": list(range(1001))}, 422, "candidates", 1001),
    ("/v1/rank", {"user_id": 7, "ts": 1, "candidates": [1], "sort_by": "revenue"}, 422, "sort_by", "revenue"),
    ("/v1/rank", {"user_id": 7, "ts": 1, "candidates": [1], "extra": True}, 422, "extra", True),
    ("/v1/rank", {"user_id": 2**64, "ts": 1, "candidates": [1]}, 422, "user_id", 2**64),
    ("/v1/rank", {"ts": 1, "candidates": [1]}, 422, "user_id", None),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "codes": [1, 2, 3]}, 422, "codes", [1, 2, 3]),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "codes": [1, 2, 3, 99]}, 422, "codes[3]", 99),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "codes": [1, 2, 3, 4.5]}, 422, "codes[3]", 4.5),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "embedding": [0.5] * 3}, 422, "embedding", 3),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "text": {"lyrics": "la"}}, 422, "text.lyrics", "la"),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "text": {"title": "   "}}, 422, "text", None),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1}, 422, "text", None),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 9, "end_ts": 5, "codes": [1, 2, 3, 4]}, 422, "end_ts", 5),
    ("/v1/slices", {"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "codes": [1, 2, 3, 4], "text": {"title": "a"}}, 422, "codes", None),
    ("/v1/clicks", {"user_id": 1, "ts": 1, "slice_id": 123456789}, 404, "slice_id", 123456789),
    ("/v1/clicks", {"user_id": 1, "ts": 1}, 422, "slice_id", None),
]


@pytest.mark.parametrize("path, body, status, field, value", BAD, ids=[f"{b[0]}:{b[3]}:{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_4xx_naming_field_and_value(server, path, body, status, field, value):
    got, out = call(server, "POST", path, body)
    assert got == status, out
    assert out["field"] == field and out["value"] == value, out
    assert out["reason"]


def test_malformed_bodies_and_paths(server):
    got, out = call(server, "POST", "/v1/rank", b'{"user_id": 3,')
    assert got == 422 and out["field"] == "body" and "JSON" in out["reason"]
    got, out = call(server, "POST", "/v1/slices", b'{"slice_id": 1, "room_id": 1, "author_id": 1, "start_ts": 1, "embedding": [NaN]}')
    assert got == 422 and out["field"] == "embedding[0]" and out["value"] == "nan"
    got, out = call(server, "POST", "/v1/rank", [1, 2])
    assert got == 422 and out["field"] == "body"
    got, out = call(server, "GET", "/v1/rooms/abc")
    assert got == 422 and out["field"] == "room_id" and out["value"] == "abc"
    got, out = call(server, "GET", "/v1/rooms/123456789")
    assert got == 404 and out["field"] == "room_id" and out["value"] == 123456789
    got, out = call(server, "GET", "/v1/nothing")
    assert got == 404 and out["field"] == "path"



def _raw(server, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """One request over a plain socket: the server may answer before it has read the body."""
    import json
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(data.lower().split(b"content-length:")[1].split(b"\r\n")[0]):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head_out, _, payload = data.partition(b"\r\n\r\n")
    return int(head_out.split()[1]), json.loads(payload)


def test_bodies_over_the_limit_get_413(server):
    too_big = 1 << 21
    got, out = _raw(server, b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % too_big)
    assert got == 413 and out["field"] == "body" and out["value"] == too_big  # refused from the header, body never read
    chunk = b"x" * 300_000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    got, out = _raw(server, b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", chunked)
    assert got == 413 and out["field"] == "body"  # no length given: counted as it streams in


def test_writes_need_the_token(server, world):
    s = _room_slices(world, 5)[0]
    body = {"slice_id": s["slice_id"], "room_id": s["room_id"], "author_id": 1, "start_ts": s["start_ts"], "codes": [0, 0, 0, 0]}
    for token in (None, "wrong"):
        got, out = call(server, "POST", "/v1/slices", body, token=token)
        assert got == 401 and out["field"] == "Authorization" and out["value"] is None
    got, _ = call(server, "POST", "/v1/rank", {"user_id": 1, "ts": 1, "candidates": [1]}, token=None)
    assert got == 200  # reading needs no token


def test_rank_is_the_offline_score_of_the_same_inputs(server, world, serve_run):
    from fluidrec.ranker.evaluate import ScoringContext, score_candidates
    from fluidrec.ranker.model import load_checkpoint

    room_ids = [10, 11, 12, 13, 14]
    tracker, on_air, t = RoomCodeTracker(4), {}, 0
    for r in room_ids:
        for s in _room_slices(world, r)[:3]:
            got, out = _ingest_codes(server, world, s)
            assert got == 201, out
            tracker.add_slice(r, world["codes"][s["slice_id"]])
            on_air[r], t = world["codes"][s["slice_id"]], max(t, s["start_ts"])
    user = 3
    clicked = [_room_slices(world, r)[0]["slice_id"] for r in (11, 13, 10)]
    for sid in clicked:
        got, out = call(server, "POST", "/v1/clicks", {"user_id": user, "ts": t, "slice_id": sid})
        assert got == 200, out
    cands = [*room_ids, 987654321]  # a room the store has never seen: unknown codes, still scored
    got, out = call(server, "POST", "/v1/rank", {"user_id": user, "ts": t + 1000, "candidates": cands})
    assert got == 200, out
    assert out["history"] == 3 and out["unknown_rooms"] == [987654321]

    model = load_checkpoint(serve_run / "rankers" / "fluid" / "model.pt")
    ctx = ScoringContext.from_dataset(serve_run / "world", model)
    sc = np.array([on_air.get(r, (-1,) * 4) for r in cands])
    rc = np.array([tracker.code(r) for r in cands])
    hist = np.array([world["codes"][sid] for sid in reversed(clicked)])  # newest first
    p = score_candidates(model, ctx, user, np.array(cands), sc, rc, t + 1000, history_codes=hist)
    order = np.argsort(-p["click"], kind="stable")
    assert out["room_ids"] == [cands[i] for i in order]
    for task, scores in out["scores"].items():
        np.testing.assert_allclose(scores, p[task][order], atol=2e-5)
    assert out["slice_codes"] == sc[order].tolist() and out["room_codes"] == rc[order].tolist()

    got, top = call(server, "POST", "/v1/rank", {"user_id": user, "ts": t + 1000, "candidates": cands, "top_k": 2, "sort_by": "like"})
    assert got == 200 and top["room_ids"] == [cands[i] for i in np.argsort(-p["like"], kind="stable")[:2]]


def test_live_candidates_are_the_rooms_on_air(server, world):
    s = _room_slices(world, 20)[0]
    got, _ = _ingest_codes(server, world, s, end_ts=s["start_ts"] + 120_000)
    assert got == 201
    got, out = call(server, "POST", "/v1/rank", {"user_id": 1, "ts": s["start_ts"] + 60_000, "candidates": "live"})
    assert got == 200 and 20 in out["room_ids"]
    got, out = call(server, "POST", "/v1/rank", {"user_id": 1, "ts": s["start_ts"] + 10 * 60_000, "candidates": "live"})
    assert got == 200 and 20 not in out["room_ids"]  # ended more than the grace (60 s) ago


def test_metrics_count_requests_and_no_server_errors(server):
    call(server, "POST", "/v1/rank", {"user_id": 1, "ts": 1, "candidates": [1]})
    import urllib.request

    text = urllib.request.urlopen(server.url + "/metrics").read().decode()
    assert 'fluidrec_requests_total{endpoint="/v1/rank",method="POST",status="200"}' in text
    assert 'fluidrec_request_duration_seconds_bucket{endpoint="/v1/rank",le="+Inf"}' in text
    assert 'kind="server"' not in text, "some request got a 5xx"
