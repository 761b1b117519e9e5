"""Import the KuaiLive-M3 (KLM3) layout as a canonical dataset with slice embeddings.

KuaiLive-M3 is a Kuaishou live-streaming dataset with segment-level multimodal
embeddings and a short-video domain (see docs/real_data.md for where to get it and
which parts of this layout were verified against the published field catalog).
Files read from ``--path`` (names as published; optional ones may be absent):

==============================  ==========================================================
``live_room_meta.parquet``      live_id, author_id, live_name, start_timestamp,
                                end_timestamp (null while live), live_duration (ms)
``live_interaction.csv``        watch sessions: user_id, author_id, live_id,
                                live_play_start_timestamp, live_play_end_timestamp,
                                play_duration (ms), like_cnt, send_gift_cnt,
                                follow_author_cnt, ... (extra columns ignored)
``live_emb_128_ts/``            ``live_emb_128_ts_part*.parquet``: live_stream_id (str),
                                segment_id (str), feature_128 (128 floats), timestamp
                                (segment END, unix ms)
``live_show.parquet``           (optional) covers shown but not entered: live_id,
                                user_id, author_id, show_timestamp
``live_comment.csv``            (optional) live_stream_id, user_id, author_id, content, comment_ts
``author_profile.csv``          (optional) author_id, ...
``user_id_set.csv``             (optional) user_id
``photo_meta.parquet``          (optional) photo_id, author_id, duration, display_type,
                                cover_title, video_texts
``photo_tag.csv``               (optional) photo_id, first/second/third/fourth_level_category_name
``photo_emb_128.parquet``       (optional) photo_id, feature (128 floats)
==============================  ==========================================================

Timestamps may be Parquet timestamps, integer or float unix ms, or ISO date-times (UTC);
each must lie in [1970-01-01, 2200-01-01). A null or NaN start, a negative id or an id
beyond int64 is a bad row (named by file, column, row and value), never a silent
INT64_MIN; a null end means "still live" (end = start + live_duration).

Mapping:

- **rooms** = live rooms (room_id = live_id, author, start, end; a null end becomes
  ``start + live_duration`` or the last segment's end).
- **slices** (domain ``live``) = segments of the rooms that appear in impressions,
  dense slice ids in (room, time) order; a segment spans (previous segment's end,
  its timestamp]; the first starts at the room start. Title = the room's
  ``live_name``; ``comments`` = up to 20 comments posted during the segment.
  Their ``feature_128`` vectors go to ``slice_embeddings.parquet`` (the encoder can
  be skipped); ``slice_sources.parquet`` maps slice ids back to segment / photo ids.
- **impressions**: each watch session is a positive at its start time (click = 1,
  watch_s = play_duration / 1000, like / follow / gift = the counts > 0, long_view =
  watch_s >= ``long_view_s``) on the segment on air then; each ``live_show`` row is
  a negative (all labels 0). Rooms with no segment embedding are dropped with their
  impressions (counted) unless ``keep_rooms_without_segments`` (then one whole-room
  slice without an embedding).
- **short videos** (domain ``video``, room_id -1): photo_meta rows; title =
  cover_title, ocr = video_texts, tags = the 4 tag levels joined by " / ",
  topic_l1..l4 = dense ids of the tag names; ``feature`` vectors go to the same
  embedding file. Video interactions are not imported (canonical impressions are on
  rooms); videos serve cross-domain encoder / code training.
- **queries**: level-4 and level-3 tag names of each video, and hashtags in titles.
- **authors**: author_profile plus every author of a room or video; **users**:
  user_id_set (unless ``max_users``) plus every user with an impression.

Example:
    >>> import_kuailive_m3("/data/klm3", "runs/klm3", ImportOptions(max_users=1000))
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluidrec.data.embeddings import MAX_ABS_VALUE, write_embeddings
from fluidrec.data.importers.common import (
    ID_MAX,
    TIME_RANGE,
    TIME_UNIX_MS,
    BadRows,
    Columns,
    ImportOptions,
    ImportSummary,
    UserCap,
    _bar,
    finish,
    hashtag_queries,
    import_counts,
    parse_id,
    parse_time_ms,
    prepare_out,
    read_csv_rows,
    time_in_range,
    write_impressions,
    write_queries,
)
from fluidrec.data.importers.negatives import add_sampled_negatives
from fluidrec.data.io import PARQUET_WRITE, DatasetWriter, iter_parquet, open_parquet, write_table
from fluidrec.data.schema import LABELS_BINARY, NO_ROOM
from fluidrec.data.validate import TIME_MAX_MS, TIME_MIN_MS
from fluidrec.errors import DataError, check
from fluidrec.utils.io import atomic_path

EMBEDDINGS_FILE = "slice_embeddings.parquet"
SOURCES_FILE = "slice_sources.parquet"
SEGMENT_DIR = "live_emb_128_ts"
SEGMENT_GLOB = "live_emb_128_ts_part*.parquet"
EMBED_DIM = 128
MAX_COMMENTS = 20
TAG_COLUMNS = ("first_level_category_name", "second_level_category_name", "third_level_category_name", "fourth_level_category_name")


# ---------------------------------------------------------------------------
# Readers


def _csv_records(path: Path, required: tuple[str, ...], bad: BadRows, progress: bool) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, {column: raw value}) for the required columns of a headed CSV."""
    index: dict[str, int] | None = None
    width = 0
    for line_no, fields in read_csv_rows(path, progress=progress):
        if index is None:
            names = [f.strip().lstrip("\ufeff") for f in fields]
            missing = [c for c in required if c not in names]
            if missing:
                raise DataError(f"line 1: header lacks required column(s) {missing}", table=str(path), column=missing[0])
            index = {c: names.index(c) for c in required}
            width = len(names)
            continue
        if not fields or fields == [""]:
            bad.report(path, line_no, "empty line")
            continue
        if len(fields) != width:
            bad.report(path, line_no, f"expected {width} fields, got {len(fields)}", ",".join(fields)[:80])
            continue
        yield line_no, {c: fields[i] for c, i in index.items()}


def _parquet_batches(path: Path, columns: list[str], progress: bool) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yield (offset of the batch's first row, batch) for the named columns (corrupt pages: DataError)."""
    pf = open_parquet(path, missing="file not found")
    bar = _bar(pf.metadata.num_rows, path.name, progress, unit="row")
    offset = 0
    for batch in iter_parquet(path, 65536, columns, missing="file not found"):
        yield offset, batch
        offset += batch.num_rows
        bar.update(batch.num_rows)
    bar.close()


def _missing(arr: pa.Array) -> np.ndarray:
    """Null entries, and NaN in float columns (pandas writes a missing value as NaN)."""
    null = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(arr.type):
        null = null | np.isnan(arr.fill_null(0).to_numpy(zero_copy_only=False))
    return null


def _int_column(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, ok mask) from an integer or string column; ok: present, an integer in [0, 2^63).

    Ids and counts are never negative (-1 is ``NO_ROOM``); a NaN or a float is not an id.
    """
    if pa.types.is_integer(arr.type):
        ok = ~arr.is_null().to_numpy(zero_copy_only=False)
        raw = arr.fill_null(0).to_numpy(zero_copy_only=False)
        if raw.dtype == np.uint64:
            ok &= raw <= np.uint64(ID_MAX)  # would wrap to negative in int64
        values = raw.astype(np.int64)
        return values, ok & (values >= 0)
    values = arr.to_pylist()
    parsed = [parse_id(str(v)) if v is not None else None for v in values]
    ok = np.array([p is not None for p in parsed], dtype=bool)
    return np.array([p if p is not None else 0 for p in parsed], dtype=np.int64), ok


_UNIT_MS = {"s": 1000, "ms": 1, "us": 1e-3, "ns": 1e-6}


def _ms_column(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(unix ms int64, ok mask) from a timestamp, integer (ms), float (ms) or date-time string column.

    ok: present (not null, not NaN) and in [1970-01-01, 2200-01-01). Values are range-checked
    before any unit conversion, so a huge value never wraps around int64 into a valid-looking
    time (a NaN cast to int64 used to become INT64_MIN).
    """
    if pa.types.is_timestamp(arr.type):  # stored as int64 counts of its unit since the epoch (UTC)
        ok = ~arr.is_null().to_numpy(zero_copy_only=False)
        raw = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64) * _UNIT_MS[arr.type.unit]
    elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        ok = ~_missing(arr)
        raw = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        raw = np.where(ok, raw, 0.0)
    else:
        parsed = [parse_time_ms(str(v)) if v is not None else None for v in arr.to_pylist()]
        ok = np.array([p is not None and time_in_range(p) for p in parsed], dtype=bool)
        return np.array([p if k else 0 for p, k in zip(parsed, ok)], dtype=np.int64), ok
    ok &= (raw >= TIME_MIN_MS) & (raw < TIME_MAX_MS)
    return np.where(ok, np.round(raw), 0).astype(np.int64), ok


def _first_bad(path: Path, bad: BadRows, offset: int, batch: pa.RecordBatch, checks: list[tuple[str, np.ndarray, str]], rows: np.ndarray | None = None) -> np.ndarray:
    """Report each row failing a check, naming the first failing column and its value; returns the ok mask.

    ``checks``: (column, ok mask, what the column must be). ``rows``: batch row of each
    mask entry when the masks cover a filtered subset.
    """
    ok = np.ones(len(checks[0][1]), bool)
    for _, mask, _ in checks:
        ok &= mask
    for j in np.flatnonzero(~ok):
        column, _, what = next(c for c in checks if not c[1][j])
        row = int(j if rows is None else rows[j])
        value = batch.column(column)[row].as_py() if column in batch.schema.names else None
        bad.report(path, offset + row, f"{column} must be {what}", value if value is not None else "null", column=column, unit="row")
    return ok


_ID = "an integer id in [0, 2^63)"
_TIME = "a time in [1970-01-01, 2200-01-01)"


def _vectors(arr: pa.Array, path: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    """((n, 128) float32, ok mask): rows with a null, a wrong length or a non-finite value are not ok."""
    is_list = pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)
    if not is_list or not (pa.types.is_floating(arr.type.value_type) or pa.types.is_integer(arr.type.value_type)):
        raise DataError(f"expected a list of {EMBED_DIM} floats, got {arr.type}", table=str(path), column=column)
    n = len(arr)
    null = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(arr.type):
        lengths = np.where(null, 0, arr.type.list_size)
    else:
        lengths = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    ok = (~null) & (lengths == EMBED_DIM)
    out = np.zeros((n, EMBED_DIM), np.float32)
    if ok.any():
        good = arr.filter(pa.array(ok))
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: not ok below
            flat = good.flatten().to_numpy(zero_copy_only=False).astype(np.float32)  # (N,) lists of D -> (N*D,)
        out[ok] = flat.reshape(-1, EMBED_DIM)  # (n_ok, 128)
        ok &= np.isfinite(out).all(axis=1) & (np.abs(out) <= MAX_ABS_VALUE).all(axis=1)  # read_embeddings' limits
    return out, ok


# ---------------------------------------------------------------------------
# Import


def import_kuailive_m3(
    path: str | os.PathLike,
    out: str | os.PathLike,
    options: ImportOptions = ImportOptions(),
    *,
    long_view_s: float = 30.0,
    keep_rooms_without_segments: bool = False,
    max_videos: int | None = None,
) -> ImportSummary:
    """Import a KuaiLive-M3 directory into the canonical dataset ``out``.

    Args:
        path: directory holding the KLM3 files (see module docstring).
        out: output dataset directory; also receives ``slice_embeddings.parquet``.
        options: seed, negatives (added to live_show ones), skip_bad_rows, max_users, progress.
        long_view_s: watch seconds from which a session counts as a long view.
        keep_rooms_without_segments: keep rooms that have no segment embedding
            (one whole-room slice, absent from the embedding file).
        max_videos: import at most this many short videos (file order).

    Returns:
        ImportSummary.

    Example:
        >>> import_kuailive_m3("klm3", "out", ImportOptions(max_users=500, negatives=2))
    """
    check(long_view_s >= 0, f"long_view_s must be >= 0, got {long_view_s}")
    check(max_videos is None or max_videos >= 0, f"max_videos must be >= 0, got {max_videos}")
    started = time.perf_counter()
    root = Path(path)
    if not root.is_dir():
        raise DataError("KuaiLive-M3 directory not found", table=str(root))
    out = prepare_out(out)
    bad = BadRows(options.skip_bad_rows)
    notes: dict[str, int] = {}

    log = _read_impressions(root, UserCap(options.max_users), bad, long_view_s, options)
    wanted = np.unique(log.imp["room_id"])
    rooms = _read_rooms(root / "live_room_meta.parquet", wanted, bad, options.progress)
    seg = _read_segments(root / SEGMENT_DIR, wanted, bad, options.progress)
    log, rooms, seg = _keep_rooms_with_meta_and_segments(log, rooms, seg, keep_rooms_without_segments, notes, root)
    imp = log.imp

    slices = _live_slices(root, imp, rooms, seg, keep_rooms_without_segments, notes, bad, options.progress)
    slice_of = _slice_lookup(slices)
    imp["slice_id"] = slice_of(imp["room_id"], imp["ts"])
    imp["request_id"] = np.arange(len(imp["ts"]), dtype=np.int64)
    imp, n_sampled = add_sampled_negatives(imp, rooms["room_id"], rooms["start_ts"], rooms["end_ts"], options, slice_of=slice_of)

    videos = _read_videos(root, bad, options.progress, first_id=len(slices["slice_id"]), max_videos=max_videos)
    notes["videos"] = len(videos["slice_id"])

    with DatasetWriter(out) as tmp:  # the tables appear under `out` together, once validated
        n_slices = _write_authors_rooms_slices(tmp, root, rooms, slices, videos, bad, options.progress)
        n_users = _write_users(tmp, root, imp, bad, options)
        n_queries = _write_queries(tmp, slices, videos)
        n_imp = write_impressions(tmp, imp, progress=options.progress)
        n_emb = _write_embeddings_and_sources(tmp, slices, videos)
        notes.update(slices_without_embedding=int(n_slices - n_emb), queries=n_queries)

        summary = finish(
            tmp,
            source="kuailive-m3",
            options=options,
            config={"path": str(root), "long_view_s": long_view_s,
                    "keep_rooms_without_segments": keep_rooms_without_segments, "max_videos": max_videos},
            counts=import_counts(
                users=n_users, items=len(rooms["room_id"]), slices=n_slices, impressions=n_imp,
                positives=log.positives, logged_negatives=log.logged_negatives, sampled_negatives=n_sampled,
            ),  # fmt: skip
            bad=bad,
            notes=notes,
            time_kind=TIME_UNIX_MS,
            started=started,
            extra={"embeddings": EMBEDDINGS_FILE, "embedding_dim": EMBED_DIM, "topic_names": videos["topic_names"]},
        )
    summary.out = str(out)
    return summary


@dataclasses.dataclass
class _Impressions:
    """Impression columns: the ``positives`` watch sessions first, then the ``logged_negatives`` shows."""

    imp: dict[str, np.ndarray]
    positives: int
    logged_negatives: int


def _read_impressions(root: Path, cap: UserCap, bad: BadRows, long_view_s: float, options: ImportOptions) -> _Impressions:
    """Watch sessions (positives) then live_show rows (logged negatives); none at all is a DataError."""
    imp = _read_sessions(root / "live_interaction.csv", cap, bad, long_view_s, options.progress)
    n_pos = len(imp["ts"])
    shows = _read_shows(root / "live_show.parquet", cap, bad, options)
    imp = {k: np.concatenate([imp[k], shows[k]]) for k in imp}
    if not len(imp["ts"]):
        raise DataError("no valid watch sessions or impressions", table=str(root / "live_interaction.csv"))
    return _Impressions(imp, n_pos, len(shows["ts"]))


def _keep_rooms_with_meta_and_segments(
    log: _Impressions, rooms: dict[str, np.ndarray], seg: dict[str, np.ndarray], keep_empty: bool, notes: dict[str, int], root: Path
) -> tuple[_Impressions, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Keep impressions of rooms with metadata and (unless ``keep_empty``) a segment embedding, and the rooms and
    segments they use; drop counts go to ``notes``. Returns (impressions, rooms, segments)."""
    imp, n_pos = log.imp, log.positives
    has_meta = np.isin(imp["room_id"], rooms["room_id"])
    notes["impressions_dropped_room_not_in_meta"] = int((~has_meta).sum())
    seg_rooms = np.unique(seg["room_id"])
    has_seg = np.isin(imp["room_id"], seg_rooms)
    if keep_empty:
        keep = has_meta
    else:
        keep = has_meta & has_seg
        notes["impressions_dropped_room_without_segments"] = int((has_meta & ~has_seg).sum())
    n_pos, n_logged_neg = int(keep[:n_pos].sum()), int(keep[n_pos:].sum())  # sessions come first, then shows
    imp = {k: v[keep] for k, v in imp.items()}
    if not len(imp["ts"]):
        raise DataError("no impressions left: none of their rooms has both metadata and segment embeddings", table=str(root))
    used = np.unique(imp["room_id"])
    rsel = np.isin(rooms["room_id"], used)
    rooms = {k: v[rsel] for k, v in rooms.items()}
    ssel = np.isin(seg["room_id"], used)
    seg = {k: v[ssel] for k, v in seg.items()}
    return _Impressions(imp, n_pos, n_logged_neg), rooms, seg


def _live_slices(
    root: Path, imp: dict[str, np.ndarray], rooms: dict[str, np.ndarray], seg: dict[str, np.ndarray], keep_empty: bool,
    notes: dict[str, int], bad: BadRows, progress: bool,
) -> dict[str, np.ndarray]:
    """The live slices (``_build_live_slices``) with their comments; rooms kept without segments go to ``notes``."""
    slices = _build_live_slices(rooms, seg, keep_empty)
    notes["rooms_without_segments_kept"] = int(len(np.unique(imp["room_id"])) - len(np.unique(seg["room_id"]))) if keep_empty else 0
    slices["comments"] = _read_comments(root / "live_comment.csv", slices, bad, progress)
    return slices


def _write_queries(tmp: Path, slices: dict[str, np.ndarray], videos: dict) -> int:
    """Write the queries: live titles' hashtags, then each video's queries; returns the row count."""
    queries = [(q, int(s)) for s, t in zip(slices["slice_id"], slices["title"]) for q in hashtag_queries(t)]
    queries += [(q, int(s)) for s, qs in zip(videos["slice_id"], videos["queries"]) for q in qs]
    return write_queries(tmp, queries)


def _write_authors_rooms_slices(
    tmp: Path, root: Path, rooms: dict[str, np.ndarray], slices: dict[str, np.ndarray], videos: dict, bad: BadRows, progress: bool
) -> int:
    """Write the authors, rooms and slices (live, then video) tables; returns the slice count."""
    authors = set(rooms["author_id"].tolist()) | set(videos["author_id"].tolist()) | _read_id_set(root / "author_profile.csv", "author_id", bad, progress)
    write_table(tmp, "authors", {"author_id": np.array(sorted(authors), np.int64)})
    write_table(tmp, "rooms", {k: rooms[k] for k in ("room_id", "author_id", "start_ts", "end_ts")})
    n_live = len(slices["slice_id"])
    live_cols = {
        "slice_id": slices["slice_id"],
        "room_id": slices["room_id"],
        "author_id": slices["author_id"],
        "start_ts": slices["start_ts"],
        "end_ts": slices["end_ts"],
        "domain": ["live"] * n_live,
        "title": slices["title"],
        "comments": slices["comments"],
        "ocr": [None] * n_live,
        "tags": [None] * n_live,
        **{f"topic_l{j}": np.full(n_live, -1, np.int32) for j in range(1, 5)},
    }
    all_slices = {k: _concat(live_cols[k], videos[k]) for k in live_cols}
    write_table(tmp, "slices", all_slices)
    return len(all_slices["slice_id"])


def _write_users(tmp: Path, root: Path, imp: dict[str, np.ndarray], bad: BadRows, options: ImportOptions) -> int:
    """Write the users table (the impressions' users, plus user_id_set.csv without a user cap); returns its rows."""
    user_ids = set(np.unique(imp["user_id"]).tolist())
    if options.max_users is None:
        user_ids |= _read_id_set(root / "user_id_set.csv", "user_id", bad, options.progress)
    write_table(tmp, "users", {"user_id": np.array(sorted(user_ids), np.int64)})
    return len(user_ids)


def _write_embeddings_and_sources(tmp: Path, slices: dict[str, np.ndarray], videos: dict) -> int:
    """Write the slice embeddings (the encoder can be skipped) and the slice -> source id map; returns the embedded count."""
    n_live = len(slices["slice_id"])
    emb_ids = np.concatenate([slices["slice_id"][slices["has_emb"]], videos["slice_id"][videos["has_emb"]]])
    emb = np.concatenate([slices["vectors"][slices["has_emb"]], videos["vectors"][videos["has_emb"]]])  # (E, 128)
    write_embeddings(tmp / EMBEDDINGS_FILE, emb_ids, emb)
    sources = pa.table(
        {
            "slice_id": pa.array(np.concatenate([slices["slice_id"], videos["slice_id"]])),
            "source_kind": pa.array(["segment"] * n_live + ["photo"] * len(videos["slice_id"])),
            "source_id": pa.array(list(slices["source_id"]) + [str(p) for p in videos["photo_id"]], pa.string()),
        }
    )
    with atomic_path(tmp / SOURCES_FILE) as part:
        pq.write_table(sources, part, **PARQUET_WRITE)
    return len(emb_ids)


def _concat(a, b):
    if isinstance(a, np.ndarray):
        return np.concatenate([a, np.asarray(b, dtype=a.dtype)])
    return list(a) + list(b)


def _read_sessions(path: Path, cap: UserCap, bad: BadRows, long_view_s: float, progress: bool) -> dict[str, np.ndarray]:
    """Watch sessions -> positive impression columns."""
    if not path.is_file():
        raise DataError("file not found (KuaiLive-M3 watch sessions are required)", table=str(path))
    required = ("user_id", "live_id", "live_play_start_timestamp", "play_duration", "like_cnt", "send_gift_cnt", "follow_author_cnt")
    cols = Columns({"ts": np.int64, "user_id": np.int64, "room_id": np.int64, "watch_s": np.float32, "like": np.int8, "gift": np.int8, "follow": np.int8})
    count_cols = ("play_duration", "like_cnt", "send_gift_cnt", "follow_author_cnt")
    for line_no, r in _csv_records(path, required, bad, progress):
        user, room = parse_id(r["user_id"]), parse_id(r["live_id"])
        if user is None or room is None:
            col = "user_id" if user is None else "live_id"
            bad.report(path, line_no, f"{col} is not {_ID}", r[col], column=col)
            continue
        ts = parse_time_ms(r["live_play_start_timestamp"])
        if ts is None or not time_in_range(ts):
            reason = "is not a time" if ts is None else TIME_RANGE
            bad.report(path, line_no, f"live_play_start_timestamp {reason}", r["live_play_start_timestamp"], column="live_play_start_timestamp")
            continue
        counts = [parse_id(r[c] or "0") for c in count_cols]  # counts: integers in [0, 2^63)
        if any(c is None for c in counts):
            col = count_cols[next(k for k, c in enumerate(counts) if c is None)]
            bad.report(path, line_no, f"{col} must be an integer in [0, 2^63)", r[col], column=col)
            continue
        if not cap.admit(user):
            continue
        dur, like, gift, follow = counts
        cols.append(ts=ts, user_id=user, room_id=room, watch_s=dur / 1000.0, like=int(like > 0), gift=int(gift > 0), follow=int(follow > 0))
    a = cols.arrays()
    n = len(a["ts"])
    imp = {"ts": a["ts"], "user_id": a["user_id"], "room_id": a["room_id"]}
    for lab in LABELS_BINARY:
        imp[lab] = a[lab] if lab in a else np.zeros(n, np.int8)
    imp["click"] = np.ones(n, np.int8)
    imp["long_view"] = (a["watch_s"] >= long_view_s).astype(np.int8)
    imp["watch_s"] = a["watch_s"]
    return imp


def _read_shows(path: Path, cap: UserCap, bad: BadRows, options: ImportOptions) -> dict[str, np.ndarray]:
    """live_show rows -> negative impression columns (empty when the file is absent)."""
    parts: dict[str, list[np.ndarray]] = {"ts": [], "user_id": [], "room_id": []}
    if path.is_file():
        for offset, batch in _parquet_batches(path, ["live_id", "user_id", "show_timestamp"], options.progress):
            room, ok_r = _int_column(batch.column("live_id"))
            user, ok_u = _int_column(batch.column("user_id"))
            ts, ok_t = _ms_column(batch.column("show_timestamp"))
            ok = _first_bad(path, bad, offset, batch, [("live_id", ok_r, _ID), ("user_id", ok_u, _ID), ("show_timestamp", ok_t, _TIME)])
            if options.max_users is not None:  # only users already admitted from watch sessions
                ok &= np.fromiter((u in cap.seen for u in user.tolist()), bool, len(user))
            parts["ts"].append(ts[ok])
            parts["user_id"].append(user[ok])
            parts["room_id"].append(room[ok])
    cols = {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in parts.items()}
    n = len(cols["ts"])
    for lab in LABELS_BINARY:
        cols[lab] = np.zeros(n, np.int8)
    cols["watch_s"] = np.zeros(n, np.float32)
    return cols


def _read_rooms(path: Path, wanted: np.ndarray, bad: BadRows, progress: bool) -> dict[str, np.ndarray]:
    """live_room_meta rows of the wanted rooms (sorted by room_id)."""
    cols = ["live_id", "author_id", "live_name", "start_timestamp", "end_timestamp", "live_duration"]
    ids, authors, names, starts, ends = [], [], [], [], []
    seen: set[int] = set()
    for offset, batch in _parquet_batches(path, cols, progress):
        room, ok_r = _int_column(batch.column("live_id"))
        author, ok_a = _int_column(batch.column("author_id"))
        start, ok_s = _ms_column(batch.column("start_timestamp"))
        end, ok_e = _ms_column(batch.column("end_timestamp"))
        null_e = _missing(batch.column("end_timestamp"))  # still live at export: end from the duration
        dur, ok_d = _int_column(batch.column("live_duration"))
        ok_d &= dur < TIME_MAX_MS  # so start + dur cannot overflow
        end = np.where(ok_e, end, np.where(ok_d, start + np.where(ok_d, dur, 0), start))
        ok_end = (ok_e | null_e) & (end < TIME_MAX_MS)
        ok_dur = ok_e | ok_d | _missing(batch.column("live_duration"))  # a duration is used only when the end is null
        checks = [("live_id", ok_r, _ID), ("author_id", ok_a, _ID), ("start_timestamp", ok_s, _TIME),
                  ("end_timestamp", ok_end, f"null or {_TIME}"), ("live_duration", ok_dur, "null or ms >= 0 ending before 2200")]
        ok = _first_bad(path, bad, offset, batch, checks)
        sel = ok & np.isin(room, wanted)
        name_col = batch.column("live_name").to_pylist()
        for row in np.flatnonzero(sel & (end < start)):
            bad.report(path, offset + int(row), "end_timestamp is before start_timestamp", int(end[row]), column="end_timestamp", unit="row")
        sel &= end >= start
        for row in np.flatnonzero(sel):
            r = int(room[row])
            if r in seen:
                bad.report(path, offset + int(row), "duplicate live_id", r, column="live_id", unit="row")
                continue
            seen.add(r)
            ids.append(r)
            authors.append(int(author[row]))
            names.append((name_col[row] or "").strip() or None)
            starts.append(int(start[row]))
            ends.append(int(end[row]))
    order = np.argsort(np.array(ids, np.int64), kind="stable")
    return {
        "room_id": np.array(ids, np.int64)[order],
        "author_id": np.array(authors, np.int64)[order],
        "title": np.array(names, dtype=object)[order] if names else np.zeros(0, object),
        "start_ts": np.array(starts, np.int64)[order],
        "end_ts": np.array(ends, np.int64)[order],
    }


def _read_segments(seg_dir: Path, wanted: np.ndarray, bad: BadRows, progress: bool) -> dict[str, np.ndarray]:
    """Segment embeddings of the wanted rooms, from every ``live_emb_128_ts_part*.parquet`` shard."""
    shards = sorted(seg_dir.glob(SEGMENT_GLOB)) if seg_dir.is_dir() else []
    if not shards:
        raise DataError(f"no segment embedding shards ({SEGMENT_GLOB})", table=str(seg_dir))
    rooms, seg_ids, ts, vecs = [], [], [], []
    for shard in shards:
        for offset, batch in _parquet_batches(shard, ["live_stream_id", "segment_id", "feature_128", "timestamp"], progress):
            room, ok_r = _int_column(batch.column("live_stream_id"))
            sel = ok_r & np.isin(room, wanted)
            if not sel.any():
                continue
            sub = batch.filter(pa.array(sel))
            rows = np.flatnonzero(sel)
            room, ok_r = room[sel], ok_r[sel]
            t, ok_t = _ms_column(sub.column("timestamp"))
            v, ok_v = _vectors(sub.column("feature_128"), shard, "feature_128")
            sid = sub.column("segment_id").to_pylist()
            ok_s = np.array([s is not None and str(s) != "" for s in sid], bool)
            checks = [("timestamp", ok_t, _TIME), ("feature_128", ok_v, f"{EMBED_DIM} finite floats within +-{MAX_ABS_VALUE:g}"), ("segment_id", ok_s, "a non-empty id")]
            ok = ok_r & _first_bad(shard, bad, offset, batch, checks, rows=rows)
            rooms.append(room[ok])
            ts.append(t[ok])
            vecs.append(v[ok])
            seg_ids.extend(str(s) for s, k in zip(sid, ok) if k)
    return {
        "room_id": np.concatenate(rooms) if rooms else np.zeros(0, np.int64),
        "ts": np.concatenate(ts) if ts else np.zeros(0, np.int64),
        "vectors": np.concatenate(vecs) if vecs else np.zeros((0, EMBED_DIM), np.float32),  # (S, 128)
        "segment_id": np.array(seg_ids, dtype=object),
    }


def _build_live_slices(rooms: dict[str, np.ndarray], seg: dict[str, np.ndarray], keep_empty: bool) -> dict[str, np.ndarray]:
    """Segments -> live slices in (room, time) order with [start, end] intervals."""
    order = np.lexsort((seg["ts"], seg["room_id"]))
    room, end = seg["room_id"][order], seg["ts"][order]
    vectors, source = seg["vectors"][order], seg["segment_id"][order]
    has_emb = np.ones(len(room), bool)
    if keep_empty:  # one whole-room slice, no embedding, for rooms without segments
        empty = np.setdiff1d(rooms["room_id"], room)
        k = np.searchsorted(rooms["room_id"], empty)
        room = np.concatenate([room, empty])
        end = np.concatenate([end, rooms["end_ts"][k]])
        vectors = np.concatenate([vectors, np.zeros((len(empty), EMBED_DIM), np.float32)])
        source = np.concatenate([source, np.array([""] * len(empty), dtype=object)])
        has_emb = np.concatenate([has_emb, np.zeros(len(empty), bool)])
        order = np.lexsort((end, room))
        room, end, vectors, source, has_emb = room[order], end[order], vectors[order], source[order], has_emb[order]
    r = np.searchsorted(rooms["room_id"], room)  # (S,) row of each slice's room
    first = np.ones(len(room), bool)
    first[1:] = room[1:] != room[:-1]
    start = np.empty_like(end)
    start[1:] = end[:-1]
    start[first] = np.minimum(rooms["start_ts"][r[first]], end[first])
    return {
        "slice_id": np.arange(len(room), dtype=np.int64),
        "room_id": room,
        "author_id": rooms["author_id"][r],
        "start_ts": start,
        "end_ts": end,
        "title": list(rooms["title"][r]),
        "vectors": vectors,
        "has_emb": has_emb,
        "source_id": source,
    }


def _slice_lookup(slices: dict[str, np.ndarray]):
    """Return ``slice_of(room_ids, ts)``: the slice on air in each room at each time.

    The slice on air at ``t`` is the first one of the room ending at or after ``t``
    (segments span (previous end, end]); before the first it is the first, after the
    last the last. Vectorised with one searchsorted over (room rank, time) keys.
    """
    room, end = slices["room_id"], slices["end_ts"]
    room_keys = np.unique(room)
    tmin, tmax = (int(end.min()), int(end.max())) if len(end) else (0, 0)
    span = np.int64(tmax - tmin + 1)
    key = np.searchsorted(room_keys, room).astype(np.int64) * span + (end - tmin)  # sorted: slices are in (room, end) order

    def slice_of(room_ids: np.ndarray, ts: np.ndarray) -> np.ndarray:
        rank = np.searchsorted(room_keys, room_ids).astype(np.int64)
        q = rank * span + (np.clip(ts, tmin, tmax) - tmin)
        pos = np.searchsorted(key, q, side="left")
        pos = np.minimum(pos, len(key) - 1)
        past_last = room[pos] != room_ids  # t after the room's last segment: take its last
        pos = np.where(past_last, pos - 1, pos)
        return slices["slice_id"][pos]

    return slice_of


def _read_comments(path: Path, slices: dict[str, np.ndarray], bad: BadRows, progress: bool) -> list[str | None]:
    """Up to MAX_COMMENTS comments per slice, joined by " / " (all None without the file)."""
    n = len(slices["slice_id"])
    if not path.is_file() or n == 0:
        return [None] * n
    wanted = set(np.unique(slices["room_id"]).tolist())
    slice_of = _slice_lookup(slices)
    rooms, ts, texts = [], [], []
    for line_no, r in _csv_records(path, ("live_stream_id", "content", "comment_ts"), bad, progress):
        room, t = parse_id(r["live_stream_id"]), parse_time_ms(r["comment_ts"])
        if room is None or t is None or not time_in_range(t):
            col = "live_stream_id" if room is None else "comment_ts"
            bad.report(path, line_no, f"live_stream_id is not {_ID}" if room is None else f"comment_ts is not {_TIME}", r[col], column=col)
            continue
        text = r["content"].strip()
        if room in wanted and text:
            rooms.append(room)
            ts.append(t)
            texts.append(text)
    per_slice: dict[int, list[str]] = collections.defaultdict(list)
    if rooms:
        for s, text in zip(slice_of(np.array(rooms, np.int64), np.array(ts, np.int64)).tolist(), texts):
            if len(per_slice[s]) < MAX_COMMENTS:
                per_slice[s].append(text)
    return [" / ".join(per_slice[s]) if s in per_slice else None for s in slices["slice_id"].tolist()]


def _read_id_set(path: Path, column: str, bad: BadRows, progress: bool) -> set[int]:
    ids: set[int] = set()
    if path.is_file():
        for line_no, r in _csv_records(path, (column,), bad, progress):
            v = parse_id(r[column])
            if v is None:
                bad.report(path, line_no, f"{column} is not {_ID}", r[column], column=column)
                continue
            ids.add(v)
    return ids


def _read_videos(root: Path, bad: BadRows, progress: bool, *, first_id: int, max_videos: int | None) -> dict:
    """Short videos (photo_meta + photo_tag + photo_emb_128) as video-domain slices."""
    meta = _read_photo_meta(root / "photo_meta.parquet", bad, progress, max_videos)
    photos, titles = meta["photo_id"], meta["title"]
    n = len(photos)
    index = {p: k for k, p in enumerate(photos)}
    tags = _read_photo_tags(root / "photo_tag.csv", index, bad, progress)
    vectors, has_emb = _read_photo_vectors(root / "photo_emb_128.parquet", index, bad, progress)
    names = [sorted({t[j] for t in tags if t and t[j]}) for j in range(4)]
    ids = [{name: k for k, name in enumerate(level)} for level in names]
    topics = {f"topic_l{j + 1}": np.array([ids[j][t[j]] if t and t[j] else -1 for t in tags], np.int32) for j in range(4)}
    queries = []
    for t, title in zip(tags, titles):
        qs = [t[j] for j in (3, 2) if t and t[j]] + hashtag_queries(title)
        queries.append(list(dict.fromkeys(qs))[:4])
    return {
        "slice_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "photo_id": photos,
        "room_id": np.full(n, NO_ROOM, np.int64),
        "author_id": np.array(meta["author_id"], np.int64),
        "start_ts": np.zeros(n, np.int64),
        "end_ts": np.zeros(n, np.int64),
        "domain": ["video"] * n,
        "title": titles,
        "comments": [None] * n,
        "ocr": meta["ocr"],
        "tags": [" / ".join(x for x in t if x) if t else None for t in tags],
        **topics,
        "vectors": vectors,
        "has_emb": has_emb,
        "queries": queries,
        "topic_names": {f"topic_l{j + 1}": names[j] for j in range(4)},
    }


def _read_photo_meta(meta_path: Path, bad: BadRows, progress: bool, max_videos: int | None) -> dict[str, list]:
    """photo_id, author_id, title (cover title) and ocr (video texts) of the first ``max_videos`` good photos (all empty without the file)."""
    photos, authors, titles, ocr = [], [], [], []
    if meta_path.is_file() and max_videos != 0:
        seen: set[int] = set()
        for offset, batch in _parquet_batches(meta_path, ["photo_id", "author_id", "cover_title", "video_texts"], progress):
            pid, ok_p = _int_column(batch.column("photo_id"))
            aid, ok_a = _int_column(batch.column("author_id"))
            cover, vtext = batch.column("cover_title").to_pylist(), batch.column("video_texts").to_pylist()
            good = _first_bad(meta_path, bad, offset, batch, [("photo_id", ok_p, _ID), ("author_id", ok_a, _ID)])
            for row in range(batch.num_rows):
                if not good[row]:
                    continue
                p = int(pid[row])
                if p in seen:
                    bad.report(meta_path, offset + row, "duplicate photo_id", p, column="photo_id", unit="row")
                    continue
                seen.add(p)
                photos.append(p)
                authors.append(int(aid[row]))
                titles.append((cover[row] or "").strip() or None)
                ocr.append((vtext[row] or "").strip() or None)
                if max_videos is not None and len(photos) >= max_videos:
                    break
            if max_videos is not None and len(photos) >= max_videos:
                break
    return {"photo_id": photos, "author_id": authors, "title": titles, "ocr": ocr}


def _read_photo_tags(tag_path: Path, index: dict[int, int], bad: BadRows, progress: bool) -> list[tuple[str, ...] | None]:
    """The four category names of each photo in ``index`` (photo_id -> row), None where photo_tag.csv has none."""
    tags: list[tuple[str, ...] | None] = [None] * len(index)
    if tag_path.is_file() and index:
        for line_no, r in _csv_records(tag_path, ("photo_id", *TAG_COLUMNS), bad, progress):
            p = parse_id(r["photo_id"])
            if p is None:
                bad.report(tag_path, line_no, f"photo_id is not {_ID}", r["photo_id"], column="photo_id")
                continue
            if p in index:
                tags[index[p]] = tuple(r[c].strip() for c in TAG_COLUMNS)
    return tags


def _read_photo_vectors(emb_path: Path, index: dict[int, int], bad: BadRows, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """((n, 128) float32 embeddings, (n,) has-embedding mask) of the photos in ``index`` from photo_emb_128."""
    n = len(index)
    vectors = np.zeros((n, EMBED_DIM), np.float32)
    has_emb = np.zeros(n, bool)
    if emb_path.is_file() and n:
        for offset, batch in _parquet_batches(emb_path, ["photo_id", "feature"], progress):
            pid, ok_p = _int_column(batch.column("photo_id"))
            sel = ok_p & np.fromiter((int(p) in index for p in pid), bool, len(pid))
            if not sel.any():
                continue
            v, ok_v = _vectors(batch.column("feature").filter(pa.array(sel)), emb_path, "feature")
            rows = np.flatnonzero(sel)
            good = _first_bad(emb_path, bad, offset, batch, [("feature", ok_v, f"{EMBED_DIM} finite floats within +-{MAX_ABS_VALUE:g}")], rows=rows)
            for j, row in enumerate(rows):
                if not good[j]:
                    continue
                k = index[int(pid[row])]
                vectors[k], has_emb[k] = v[j], True
    return vectors, has_emb
