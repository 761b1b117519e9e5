"""Request bodies of the HTTP API (pydantic models: validation and the OpenAPI page at /docs).

Every id and time is a JSON integer in [0, 2^63) (strict: ``"7"``, ``7.0`` and ``true`` are
refused, not coerced), times are unix milliseconds, unknown fields are refused, and
floats must be finite. A refused body becomes a 4xx naming the field and the value
(``fluidrec.serve.app``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

INT64_MAX = 2**63 - 1
Id = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
Ts = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SliceIn(_Body):
    """A new slice of a room. Give exactly one content source: ``text`` (and/or ``frame``), ``embedding`` or ``codes``."""

    slice_id: Id
    room_id: Id
    author_id: Id
    start_ts: Ts
    end_ts: Ts | None = Field(None, description="default: start_ts + the slice length (--slice-ms)")
    room_start_ts: Ts | None = Field(None, description="when the room went live (default: its first slice's start)")
    text: dict[str, str | None] | None = Field(None, description="text fields the encoder reads, e.g. {\"title\": ..., \"transcript\": ...}")
    frame: str | None = Field(None, description="base64 of the raw RGB uint8 frame, S*S*3 bytes (S: the encoder's frame size)")
    embedding: list[Finite] | None = Field(None, description="a precomputed embedding (the code model's width)")
    codes: list[Annotated[int, Field(strict=True)]] | None = Field(None, description="precomputed codes, one per level")


class RankIn(_Body):
    """Rank candidate rooms for one user at one time."""

    user_id: Id
    ts: Ts
    candidates: list[int] | Literal["live"] = Field(description='room ids (distinct), or "live" for every room on air at ts')
    sort_by: str = Field("click", description="the task whose score orders the rooms")
    top_k: Id | None = Field(None, description="return only the best top_k rooms")

    @field_validator("candidates", mode="before")
    @classmethod
    def _room_ids(cls, v: Any) -> Any:
        # One message naming the element, instead of one error per member of the union type.
        if v == "live":
            return v
        if not isinstance(v, list):
            raise PydanticCustomError("candidates", 'expected a list of room ids or "live"', {"field": "candidates", "value": v})
        seen: set[int] = set()
        for i, x in enumerate(v):
            if type(x) is not int or not 0 <= x <= INT64_MAX:
                raise PydanticCustomError("candidates", "a room id is an integer in [0, 2^63)", {"field": f"candidates[{i}]", "value": x})
            if x in seen:
                raise PydanticCustomError("candidates", "room id given twice", {"field": f"candidates[{i}]", "value": x})
            seen.add(x)
        return v


class ClickIn(_Body):
    """A click: the clicked slice's code joins the user's history (newest first). Name the slice, or the room (its slice on air)."""

    user_id: Id
    ts: Ts
    slice_id: Id | None = None
    room_id: Id | None = None
