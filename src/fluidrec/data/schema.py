"""The canonical dataset schema: one set of Parquet tables for every source.

A dataset is a directory holding ``<table>.parquet`` for each table below plus
``manifest.json``. Time is unix milliseconds (UTC). Impressions are sorted by
``ts``. Columns marked optional may be absent; when present they must have the
declared type.

Conventions
-----------
- ``slices.domain`` is ``"live"`` (a 2-minute slice of a room) or ``"video"`` (a
  short video). Video slices have ``room_id = -1`` (they belong to no room).
- ``slices.frame`` is raw RGB uint8 bytes of shape (frame_size, frame_size, 3),
  frame_size given in the manifest (``frame_size``); null when a source has none.
- ``slices.topic_l1..topic_l4`` are ground-truth taxonomy ids where the source
  knows them (the synthetic world, tagged real data), ``-1`` where unknown.
- Impression labels are 0/1 except ``watch_s`` (seconds watched, >= 0).
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from fluidrec.errors import DataError

SCHEMA_VERSION = 1

LABELS_BINARY = ("click", "long_view", "like", "follow", "gift")
LABELS = LABELS_BINARY + ("watch_s",)
TEXT_FIELDS = ("title", "transcript", "comments", "ocr", "tags")
TOPIC_COLUMNS = ("topic_l1", "topic_l2", "topic_l3", "topic_l4")
USER_PROFILE_COLUMNS = ("age_bucket", "gender", "region", "activity_level")
DOMAINS = ("live", "video")
NO_ROOM = -1


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool = True
    nullable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    allowed: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: str | None = None  # column that must be unique

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def arrow_schema(self, present: list[str] | None = None) -> pa.Schema:
        """Arrow schema of the columns in ``present`` (default: all declared)."""
        names = present if present is not None else [c.name for c in self.columns]
        return pa.schema([pa.field(n, self.column(n).type, nullable=self.column(n).nullable) for n in names])


_i64, _i32, _i8, _f32 = pa.int64(), pa.int32(), pa.int8(), pa.float32()

AUTHORS = TableSpec(
    "authors",
    (
        Column("author_id", _i64),
        Column("quality", _f32, required=False),
        Column("bio", pa.string(), required=False, nullable=True),
        Column("home_topic_l1", _i32, required=False),
    ),
    key="author_id",
)

ROOMS = TableSpec(
    "rooms",
    (
        Column("room_id", _i64),
        Column("author_id", _i64),
        Column("start_ts", _i64),
        Column("end_ts", _i64),
    ),
    key="room_id",
)

SLICES = TableSpec(
    "slices",
    (
        Column("slice_id", _i64),
        Column("room_id", _i64),
        Column("author_id", _i64, required=False),
        Column("start_ts", _i64),
        Column("end_ts", _i64),
        Column("domain", pa.string(), allowed=DOMAINS),
        *(Column(f, pa.string(), required=(f == "title"), nullable=True) for f in TEXT_FIELDS),
        Column("frame", pa.binary(), required=False, nullable=True),
        *(Column(t, _i32, required=False, min_value=-1) for t in TOPIC_COLUMNS),
    ),
    key="slice_id",
)

IMPRESSIONS = TableSpec(
    "impressions",
    (
        Column("ts", _i64),
        Column("request_id", _i64, required=False),
        Column("user_id", _i64),
        Column("room_id", _i64),
        Column("slice_id", _i64),
        Column("position", _i32, required=False, min_value=0),
        *(Column(lab, _i8, min_value=0, max_value=1) for lab in LABELS_BINARY),
        Column("watch_s", _f32, min_value=0),
    ),
)

QUERIES = TableSpec(
    "queries",
    (
        Column("query_id", _i64),
        Column("query_text", pa.string()),
        Column("slice_id", _i64),
    ),
    key="query_id",
)

USERS = TableSpec(
    "users",
    (
        Column("user_id", _i64),
        *(Column(c, _i32, required=False, min_value=0) for c in USER_PROFILE_COLUMNS),
    ),
    key="user_id",
)

#: The short-video feed (docs/world.md, "Video feed"; docs/CONTRACTS.md): one row per video
#: shown in a user's feed, sorted by ``ts``. An optional table: datasets without a video
#: feed have no file, and ``validate_dataset`` checks it only when present.
VIDEO_IMPRESSIONS = TableSpec(
    "video_impressions",
    (
        Column("ts", _i64),
        Column("user_id", _i64),
        Column("slice_id", _i64),
        Column("request_id", _i64, required=False),
        Column("position", _i32, required=False, min_value=0),
        Column("watch_s", _f32, min_value=0),
        Column("watch_ratio", _f32, min_value=0),
        Column("long_view", _i8, min_value=0, max_value=1),
        Column("like", _i8, required=False, min_value=0, max_value=1),
    ),
)
VIDEO_LABELS = ("long_view", "like")  # the 0/1 columns a sequence model may predict

TABLES: dict[str, TableSpec] = {t.name: t for t in (AUTHORS, ROOMS, SLICES, IMPRESSIONS, QUERIES, USERS, VIDEO_IMPRESSIONS)}
#: Tables a dataset may lack (every other table in TABLES is required).
OPTIONAL_TABLES = frozenset({VIDEO_IMPRESSIONS.name})


def _same_kind(actual: pa.DataType, declared: pa.DataType) -> bool:
    kinds = (
        pa.types.is_integer,
        pa.types.is_floating,
        lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
    )
    return any(k(actual) and k(declared) for k in kinds)


def check_column_kinds(spec: TableSpec, schema: pa.Schema, path: object) -> None:
    """Each declared column present in ``schema`` has the declared kind (int, float, string, binary; extra columns pass).

    Used by the readers (``data.io``) and by ``validate_dataset``; raises a DataError naming the file and column.
    """
    declared = {c.name for c in spec.columns}
    for field in schema:
        if field.name not in declared:
            continue  # extra columns are allowed (sources may carry more)
        want = spec.column(field.name).type
        if not _same_kind(field.type, want):
            raise DataError(f"wrong type {field.type}, expected {want}", table=str(path), column=field.name)
