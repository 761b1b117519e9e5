"""The service's operations, without HTTP: ingest a slice, rank rooms, read a room, record a click.

Each takes a validated request body (``fluidrec.serve.schemas``) and returns a JSON-able dict;
input that is well-formed but wrong for this model or state (a code outside the codebook,
an embedding of the wrong width, a slice id already stored for another room, an unknown
room) raises ``InputError`` naming the field and the value, which the app turns into a 4xx.

Ranking has two paths with the same answers. ``rank_plain`` is the offline one:
``ScoringContext.make_batch`` (via ``score_candidates``) on the rooms' state read from the
store, with the store's rooms as the context's room table, and the model's ``Scorer``.
``rank`` (the service's) reads rooms and histories from the worker's ``StateCache`` (kept
current by the store's change feed) and builds the batch directly in the scorer's serving
layout (``fluidrec.serve.features.request_batch``); tests check it equals ``rank_plain``.

Shapes: B candidates, L levels, K history length, D embedding width, S frame side.

Example:
    >>> svc = Service(model, store, ServiceConfig())
    >>> svc.ingest(SliceIn(slice_id=1, room_id=7, author_id=3, start_ts=t, codes=[3, 1, 4, 1]))["room_codes"]
    [3, 1, 4, 1]
    >>> svc.rank(RankIn(user_id=5, ts=t, candidates=[7]))["room_ids"]
    [7]
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any

import numpy as np

from fluidrec.errors import DataError, check
from fluidrec.serve.cache import StateCache
from fluidrec.serve.model import ServingModel
from fluidrec.serve.schemas import ClickIn, RankIn, SliceIn
from fluidrec.serve.store import NewSlice, SliceConflict, SliceRecord, Store


class InputError(Exception):
    """A request the service refuses: ``status`` (4xx), the ``field`` and ``value`` at fault, and why."""

    def __init__(self, field: str, value: Any, reason: str, status: int = 422) -> None:
        self.field, self.value, self.reason, self.status = field, value, reason, status
        super().__init__(f"{field}: {reason}")


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Limits and defaults of the service.

    Args:
        max_candidates: most rooms one rank request may score (and the cap of ``"live"``).
        slice_ms: a slice's length when a request gives no ``end_ts`` (the world's 2 minutes).
        live_grace_ms: a room stays on air this long after its latest slice's end (a late next slice).
    """

    max_candidates: int = 1000
    slice_ms: int = 120_000
    live_grace_ms: int = 60_000

    def __post_init__(self) -> None:
        check(1 <= self.max_candidates <= 100_000, f"max_candidates must be in [1, 100000], got {self.max_candidates}")
        check(self.slice_ms >= 1, f"slice_ms must be >= 1, got {self.slice_ms}")
        check(self.live_grace_ms >= 0, f"live_grace_ms must be >= 0, got {self.live_grace_ms}")


def _lists(answer: dict[str, Any]) -> dict[str, Any]:
    """A rank answer with its arrays as lists (plain JSON-able values)."""
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in answer.items()}
    out["scores"] = {t: (p.tolist() if isinstance(p, np.ndarray) else p) for t, p in answer["scores"].items()}
    return out


def _slice_json(r: SliceRecord) -> dict[str, Any]:
    return {"slice_id": r.slice_id, "room_id": r.room_id, "author_id": r.author_id, "start_ts": r.start_ts, "end_ts": r.end_ts,
            "codes": list(r.codes), "room_codes": list(r.room_codes), "seq": r.seq}  # fmt: skip


class Service:
    """Ingest, rank, read: the store holds all state, so several Service processes may share one store."""

    def __init__(self, model: ServingModel, store: Store, config: ServiceConfig | None = None) -> None:
        if store.levels != model.levels:
            raise DataError(f"store has {store.levels} levels, the model {model.levels}")
        self.model, self.store, self.config = model, store, config or ServiceConfig()
        self.cache = StateCache(store)  # rank's reads of rooms and histories (read through where the store has no change feed)

    # ------------------------------------------------------------------ ingest
    def _codes_of(self, req: SliceIn) -> tuple[tuple[int, ...], str]:
        """The slice's codes and where they came from: given, quantized from an embedding, or encoded from content."""
        m = self.model
        given = [name for name in ("codes", "embedding") if getattr(req, name) is not None]
        content = req.text is not None or req.frame is not None
        if len(given) + content != 1:
            field = "codes" if req.codes is not None else ("embedding" if req.embedding is not None else "text")
            why = "give exactly one of: text (and/or frame), embedding, codes"
            raise InputError(field, None, why)
        if req.codes is not None:
            if len(req.codes) != m.levels:
                raise InputError("codes", req.codes, f"expected {m.levels} codes (one per level), got {len(req.codes)}")
            for i, c in enumerate(req.codes):
                if not 0 <= c < m.codebook_size:
                    raise InputError(f"codes[{i}]", c, f"a code lies in [0, {m.codebook_size})")
            return tuple(req.codes), "codes"
        if m.code_model is None:
            raise InputError("embedding" if req.embedding is not None else "text", None, "this service has no code model (codes/model); send codes")
        if req.embedding is not None:
            if len(req.embedding) != m.embedding_dim:
                raise InputError("embedding", len(req.embedding), f"expected {m.embedding_dim} values, got {len(req.embedding)}")
            return m.quantize(np.asarray(req.embedding, np.float32)), "embedding"
        return m.quantize(self._embed(req)), "encoder"

    def _embed(self, req: SliceIn) -> np.ndarray:
        m = self.model
        if m.encoder is None:
            raise InputError("text", None, "this service has no encoder (start it with --encoder DIR); send an embedding or codes")
        texts = req.text or {}
        for name in texts:
            if name not in m.fields:
                raise InputError(f"text.{name}", texts[name], f"not a field of this encoder; its fields: {', '.join(m.fields)}")
        frame = None
        if req.frame is not None and m.frame_size is not None:  # a text-only encoder ignores frames
            frame = self._frame(req.frame)
        try:
            return m.embed({k: v for k, v in texts.items() if v is not None}, frame)
        except DataError as exc:
            raise InputError("text", None, exc.reason) from None

    def _frame(self, data: str) -> np.ndarray:
        s = self.model.frame_size
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("frame", data[:40], "not base64") from None
        if len(raw) != s * s * 3:
            raise InputError("frame", len(raw), f"expected {s * s * 3} bytes ({s}x{s}x3 uint8 RGB), got {len(raw)}")
        return np.frombuffer(raw, np.uint8).reshape(s, s, 3)  # (S, S, 3)

    def ingest(self, req: SliceIn) -> dict[str, Any]:
        """Code the slice and fold it into its room's vote; a repeated slice_id returns the stored result."""
        end = req.start_ts + self.config.slice_ms if req.end_ts is None else req.end_ts
        if end < req.start_ts:
            raise InputError("end_ts", req.end_ts, f"before start_ts {req.start_ts}")
        stored = self.store.get_slice(req.slice_id)  # idempotent without re-encoding a repeated slice
        if stored is None:
            codes, source = self._codes_of(req)
            new = NewSlice(req.slice_id, req.room_id, req.author_id, req.start_ts, end, codes, req.room_start_ts)
            try:
                res = self.store.add_slice(new)
            except SliceConflict as exc:
                raise InputError("slice_id", req.slice_id, str(exc), status=409) from None
            record, created = res.record, res.created
        else:
            record, created, source = stored, False, "stored"
        if record.room_id != req.room_id:
            raise InputError("slice_id", req.slice_id, f"slice {req.slice_id} is already stored for room {record.room_id}", status=409)
        return {**_slice_json(record), "created": created, "source": source}

    # ------------------------------------------------------------------ rank
    def _candidates(self, req: RankIn) -> list[int]:
        limit = self.config.max_candidates
        if req.candidates == "live":
            return self.store.live_rooms(req.ts, self.config.live_grace_ms, limit)
        if len(req.candidates) > limit:
            raise InputError("candidates", len(req.candidates), f"at most {limit} candidates per request")
        if not req.candidates:
            raise InputError("candidates", [], 'give at least one room id, or "live"')
        return list(req.candidates)

    def _check_rank(self, req: RankIn) -> list[int]:
        if req.sort_by not in self.model.tasks:
            raise InputError("sort_by", req.sort_by, f"not a task of this model; its tasks: {', '.join(self.model.tasks)}")
        return self._candidates(req)

    def _answer(self, req: RankIn, rooms: np.ndarray, known: np.ndarray, sc: np.ndarray, rc: np.ndarray, probs: dict, history: int) -> dict[str, Any]:
        """The answer as arrays: rooms best first by ``sort_by``, per-task scores rounded to 6 decimals."""
        order = np.argsort(-probs[req.sort_by], kind="stable")[: req.top_k]
        return {
            "user_id": req.user_id, "ts": req.ts, "sort_by": req.sort_by, "arm": self.model.artifacts.arm, "history": history,
            "room_ids": rooms[order],
            "scores": {t: np.round(p[order].astype(np.float64), 6) for t, p in probs.items()},
            "slice_codes": sc[order], "room_codes": rc[order], "unknown_rooms": rooms[~known],
        }  # fmt: skip

    def _empty(self, req: RankIn, history: int) -> dict[str, Any]:
        m = self.model
        return {"user_id": req.user_id, "ts": req.ts, "sort_by": req.sort_by, "arm": m.artifacts.arm, "history": history,
                "room_ids": [], "scores": {t: [] for t in m.tasks}, "slice_codes": [], "room_codes": [], "unknown_rooms": []}  # fmt: skip

    def rank_arrays(self, req: RankIn) -> dict[str, Any]:
        """``rank``'s answer with numpy arrays in place of lists (what the HTTP layer writes with orjson).

        The fast path: room state and the history come from the worker's ``StateCache``
        (kept current by the store's change feed), the batch is built directly in the
        scorer's serving layout (``fluidrec.serve.features.request_batch``). Same scores
        as ``rank_plain``, the offline path (``tests/serve/test_service.py``).
        """
        from fluidrec.serve.features import request_batch

        m = self.model
        ids = self._check_rank(req)
        hist, tab = self.cache.request(req.user_id, m.history_len, ids)  # (K', L) newest first; the rooms' state
        if not ids:
            return self._empty(req, len(hist))
        rooms = np.asarray(ids, np.int64)
        sc, rc = m.ranker_codes(tab.slice_codes), m.ranker_codes(tab.room_codes)
        scorer = m.scorer  # one read: a swap to the compiled scorer mid-request is seen whole or not at all
        batch = request_batch(scorer.model, m.context, req.user_id, rooms, tab, sc, rc, req.ts, m.ranker_codes(hist))
        return self._answer(req, rooms, tab.known, sc, rc, scorer(batch), len(hist))

    def rank(self, req: RankIn) -> dict[str, Any]:
        """Per-task scores of the candidates and their order by ``sort_by`` (best first), with the codes used."""
        return _lists(self.rank_arrays(req))

    def rank_plain(self, req: RankIn) -> dict[str, Any]:
        """``rank`` by the offline path, the reference of the fast one: every read from the store,
        ``score_candidates`` (``ScoringContext.make_batch`` with the store's rooms as its room table)."""
        from fluidrec.ranker.evaluate import score_candidates

        m = self.model
        ids = self._check_rank(req)
        history = self.store.history(req.user_id, m.history_len)
        if not ids:
            return _lists(self._empty(req, len(history)))
        rooms = np.asarray(ids, np.int64)
        tab = self.store.room_table(ids)
        sc, rc = m.ranker_codes(tab.slice_codes), m.ranker_codes(tab.room_codes)
        # The store's rooms become the context's room table (sorted, as ScoringContext looks them up)
        by_id = np.argsort(rooms[tab.known])
        ctx = dataclasses.replace(m.context, room_ids=rooms[tab.known][by_id], room_start=tab.start_ts[tab.known][by_id],
                                  room_author=tab.author_id[tab.known][by_id])  # fmt: skip
        hist = np.asarray(history, np.int64).reshape(-1, m.levels)  # (K', L), newest first
        probs = score_candidates(m.scorer, ctx, req.user_id, rooms, sc, rc, req.ts, history_codes=m.ranker_codes(hist))
        return _lists(self._answer(req, rooms, tab.known, sc, rc, probs, len(history)))

    # ------------------------------------------------------------------ reads and clicks
    def room(self, room_id: int) -> dict[str, Any]:
        """A room's state: author, start, slice on air, room code and the vote counts per level."""
        st = self.store.rooms([room_id], with_votes=True).get(room_id)
        if st is None:
            raise InputError("room_id", room_id, "no slice of this room has been ingested", status=404)
        votes = st.votes
        return {
            "room_id": st.room_id, "author_id": st.author_id, "start_ts": st.start_ts, "slices": st.slices,
            "slice_on_air": {"slice_id": st.last_slice_id, "start_ts": st.last_start_ts, "end_ts": st.last_end_ts, "codes": list(st.slice_codes)},
            "room_codes": list(st.room_codes),
            "votes": [{str(c): n for c, n in sorted(level.items())} for level in votes.counts],
            "leader_votes": list(votes.best),
        }  # fmt: skip

    def slice(self, slice_id: int) -> dict[str, Any]:
        rec = self.store.get_slice(slice_id)
        if rec is None:
            raise InputError("slice_id", slice_id, "no such slice has been ingested", status=404)
        return _slice_json(rec)

    def click(self, req: ClickIn) -> dict[str, Any]:
        """Append the clicked slice's code (``slice_id``, else ``room_id``'s slice on air) to the user's history."""
        if (req.slice_id is None) == (req.room_id is None):
            raise InputError("slice_id", req.slice_id, "give exactly one of slice_id, room_id")
        if req.slice_id is not None:
            rec = self.store.get_slice(req.slice_id)
            if rec is None:
                raise InputError("slice_id", req.slice_id, "no such slice has been ingested", status=404)
            slice_id, codes = rec.slice_id, rec.codes
        else:
            st = self.store.rooms([req.room_id]).get(req.room_id)
            if st is None:
                raise InputError("room_id", req.room_id, "no slice of this room has been ingested", status=404)
            slice_id, codes = st.last_slice_id, st.slice_codes
        n = self.store.add_click(req.user_id, codes, req.ts)
        return {"user_id": req.user_id, "slice_id": slice_id, "codes": list(codes), "history": min(n, self.model.history_len)}
