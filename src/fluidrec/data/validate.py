"""Validate a canonical dataset directory.

Checks, first, the manifest: a supported ``schema_version``, ``frame_size`` null or a
positive integer, ``row_counts`` equal to each table's rows, and (``checksums``, the
default) each table's and side file's SHA-256 against the one recorded when the
dataset was written, so tables of two runs side by side, or a file changed since,
fail here. Then, per table: required columns, column types, nulls, finite numbers,
value ranges, allowed values and key uniqueness; frames of ``frame_size**2 * 3``
bytes; across tables: references (every impression's user, room and slice exist,
the slice belongs to that room, every live slice's room exists, every room's
author exists, every query's slice exists); and time: every time in
[1970-01-01, 2200-01-01) as unix ms, impressions sorted by ``ts``, intervals with
start <= end.

The first problem found raises a ``DataError`` naming the table, column, row
and value. Impressions are checked in streamed batches, so large datasets fit.

Example:
    >>> report = validate_dataset("runs/world")   # raises DataError on bad data
    >>> report["row_counts"]["impressions"]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluidrec.data.io import MANIFEST, iter_parquet, open_parquet, read_parquet, table_path
from fluidrec.data.schema import NO_ROOM, OPTIONAL_TABLES, SCHEMA_VERSION, TABLES, TableSpec, check_column_kinds
from fluidrec.errors import DataError
from fluidrec.utils.io import read_json, sha256_file

BATCH_ROWS = 1 << 20
#: Times are unix milliseconds in [1970-01-01, 2200-01-01) UTC.
TIME_MIN_MS = 0
TIME_MAX_MS = 7_258_118_400_000
TIME_COLUMNS = {"rooms": ("start_ts", "end_ts"), "slices": ("start_ts", "end_ts"), "impressions": ("ts",), "video_impressions": ("ts",)}


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_schema(spec: TableSpec, schema: pa.Schema, path: Path) -> None:
    for name in spec.required:
        if name not in schema.names:
            raise DataError("required column is missing", table=str(path), column=name)
    check_column_kinds(spec, schema, path)


def _check_values(spec: TableSpec, batch: pa.RecordBatch | pa.Table, path: Path, offset: int) -> None:
    for col in spec.columns:
        if col.name not in batch.schema.names:
            continue
        arr = batch.column(col.name)
        if not col.nullable and arr.null_count:
            row = _first(arr.is_null().to_numpy(zero_copy_only=False))
            raise DataError("null value in a non-nullable column", table=str(path), column=col.name, row=offset + row)
        if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
            values = arr.to_numpy(zero_copy_only=False)
            if pa.types.is_floating(arr.type):
                bad = ~np.isfinite(values)
                if bad.any():
                    row = _first(bad)
                    raise DataError("non-finite number (NaN or inf)", table=str(path), column=col.name, row=offset + row, value=float(values[row]))
            if col.min_value is not None and (values < col.min_value).any():
                row = _first(values < col.min_value)
                raise DataError(f"value below the minimum {col.min_value}", table=str(path), column=col.name, row=offset + row, value=values[row].item())
            if col.max_value is not None and (values > col.max_value).any():
                row = _first(values > col.max_value)
                raise DataError(f"value above the maximum {col.max_value}", table=str(path), column=col.name, row=offset + row, value=values[row].item())
        if col.allowed is not None:
            ok = pc.is_in(arr, value_set=pa.array(col.allowed)).to_numpy(zero_copy_only=False)
            if not ok.all():
                row = _first(~ok)
                raise DataError(f"value not in {list(col.allowed)}", table=str(path), column=col.name, row=offset + row, value=arr[row].as_py())


def _check_unique(values: np.ndarray, path: Path, column: str) -> None:
    order = np.argsort(values, kind="stable")
    dup = np.flatnonzero(values[order][1:] == values[order][:-1])
    if len(dup):
        row = int(order[dup[0] + 1])
        raise DataError("duplicate key", table=str(path), column=column, row=row, value=values[row].item())


def _check_refs(values: np.ndarray, keys: np.ndarray, path: Path, column: str, target: str, offset: int = 0) -> None:
    """keys must be sorted; raise on the first value not in keys."""
    pos = np.searchsorted(keys, values)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    ok = (keys[pos] == values) if len(keys) else np.zeros(len(values), bool)
    if not ok.all():
        row = _first(~ok)
        raise DataError(f"refers to a missing {target}", table=str(path), column=column, row=offset + row, value=values[row].item())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_manifest(root: Path, manifest, checksums: bool) -> dict:
    """The manifest's own fields, and the files it describes; returns the manifest."""
    mpath = str(root / MANIFEST)
    if not isinstance(manifest, dict):
        raise DataError("manifest is not a JSON object", table=mpath, value=type(manifest).__name__)
    if "schema_version" not in manifest:
        raise DataError("manifest has no schema_version", table=mpath, column="schema_version")
    version = manifest["schema_version"]
    if not _is_int(version) or version != SCHEMA_VERSION:
        raise DataError(f"unsupported schema_version (this fluidrec reads {SCHEMA_VERSION})", table=mpath, column="schema_version", value=version)
    size = manifest.get("frame_size")
    if size is not None and (not _is_int(size) or size <= 0):
        raise DataError("frame_size must be a positive integer or null", table=mpath, column="frame_size", value=size)
    counts = manifest.get("row_counts")
    if not isinstance(counts, dict):
        raise DataError("manifest has no row_counts object", table=mpath, column="row_counts", value=counts)
    recorded = manifest.get("tables")
    if recorded is not None and not isinstance(recorded, dict):
        raise DataError("manifest tables must be an object", table=mpath, column="tables", value=type(recorded).__name__)
    for name in TABLES:
        path = table_path(root, name)
        if name in OPTIONAL_TABLES and not path.exists() and name not in counts:
            continue  # an optional table this dataset does not have
        rows = open_parquet(path).metadata.num_rows
        if name not in counts:
            raise DataError(f"row_counts has no entry for {name}", table=mpath, column=f"row_counts.{name}")
        if counts[name] != rows:
            raise DataError(
                f"the file holds {rows} rows but the manifest's row_counts says {counts[name]} "
                "(tables of different runs, or a table changed after the dataset was written)",
                table=str(path), column=f"row_counts.{name}", value=counts[name],
            )  # fmt: skip
        entry = (recorded or {}).get(name)
        if recorded is not None and not isinstance(entry, dict):
            raise DataError(f"manifest tables has no entry for {name}", table=mpath, column=f"tables.{name}")
        if entry is not None and checksums:
            _check_file(path, entry, mpath, f"tables.{name}")
    files = manifest.get("files") or {}
    if not isinstance(files, dict):
        raise DataError("manifest files must be an object", table=mpath, column="files", value=type(files).__name__)
    for rel, entry in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DataError("manifest lists a file outside the dataset", table=mpath, column="files", value=rel)
        path = root / rel
        if not path.is_file():
            raise DataError("file listed in the manifest is missing", table=str(path), column=f"files.{rel}")
        if checksums:
            _check_file(path, entry, mpath, f"files.{rel}")
    return manifest


def _check_file(path: Path, entry, mpath: str, key: str) -> None:
    want = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(want, str):
        raise DataError("manifest entry has no sha256", table=mpath, column=key, value=entry)
    got = sha256_file(path)
    if got != want:
        raise DataError(
            f"SHA-256 {got[:12]}... differs from the manifest's {want[:12]}... "
            "(a file of another run, or changed after the dataset was written)",
            table=str(path), column="sha256", value=got[:16],
        )  # fmt: skip


def _check_times(values: np.ndarray, path: Path, column: str, offset: int = 0) -> None:
    bad = (values < TIME_MIN_MS) | (values >= TIME_MAX_MS)
    if bad.any():
        row = _first(bad)
        raise DataError("time outside [1970-01-01, 2200-01-01) in unix ms", table=str(path), column=column, row=offset + row, value=int(values[row]))


def _check_frames(slices: pa.Table, frame_size, path: Path, mpath: Path) -> None:
    """Every non-null frame is frame_size x frame_size x 3 uint8 bytes."""
    if "frame" not in slices.column_names:
        return
    frames = slices.column("frame")
    if frames.null_count == len(frames):
        return
    if frame_size is None:
        raise DataError("slices have frames but the manifest's frame_size is null", table=str(mpath), column="frame_size")
    want = frame_size * frame_size * 3
    lengths = pc.fill_null(pc.binary_length(frames), want).to_numpy()
    if (lengths != want).any():
        row = _first(lengths != want)
        raise DataError(f"frame has {int(lengths[row])} bytes, expected {want} ({frame_size}x{frame_size}x3 uint8; frame_size from the manifest)",
                        table=str(path), column="frame", row=row, value=int(lengths[row]))  # fmt: skip


def _check_intervals(table: pa.Table, path: Path) -> None:
    start = table.column("start_ts").to_numpy()
    end = table.column("end_ts").to_numpy()
    if (end < start).any():
        row = _first(end < start)
        raise DataError("end_ts is before start_ts", table=str(path), column="end_ts", row=row, value=int(end[row]))


def _load_small(root: Path, name: str) -> pa.Table:
    spec = TABLES[name]
    path = table_path(root, name)
    table = read_parquet(path)
    _check_schema(spec, table.schema, path)
    _check_values(spec, table, path, 0)
    for column in TIME_COLUMNS.get(name, ()):
        _check_times(table.column(column).to_numpy(), path, column)
    if spec.key:
        _check_unique(table.column(spec.key).to_numpy(), path, spec.key)
    return table


def validate_dataset(root: str | os.PathLike, *, checksums: bool = True) -> dict:
    """Validate the manifest and every table of the dataset at ``root``; return a short report.

    Args:
        checksums: verify each file's SHA-256 against the manifest (reads every byte once;
            the row counts are checked either way). Datasets written before the manifest
            recorded checksums are checked without them.

    Raises:
        DataError: on the first problem, naming table, column, row and value.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset directory not found", table=str(root))
    manifest = _check_manifest(root, read_json(root / MANIFEST), checksums)

    small = {name: _load_small(root, name) for name in ("authors", "rooms", "slices", "queries", "users")}
    rooms, slices = small["rooms"], small["slices"]
    _check_frames(slices, manifest.get("frame_size"), table_path(root, "slices"), root / MANIFEST)
    _check_intervals(rooms, table_path(root, "rooms"))
    _check_intervals(slices, table_path(root, "slices"))

    author_keys = np.sort(small["authors"].column("author_id").to_numpy())
    room_ids = rooms.column("room_id").to_numpy()
    room_keys = np.sort(room_ids)
    slice_ids = slices.column("slice_id").to_numpy()
    slice_order = np.argsort(slice_ids)
    slice_keys = slice_ids[slice_order]
    slice_room = slices.column("room_id").to_numpy()[slice_order]
    user_keys = np.sort(small["users"].column("user_id").to_numpy())

    _check_refs(rooms.column("author_id").to_numpy(), author_keys, table_path(root, "rooms"), "author_id", "author")
    live = slices.column("domain").to_numpy(zero_copy_only=False) == "live"
    slice_rooms_raw = slices.column("room_id").to_numpy()
    bad_video = (~live) & (slice_rooms_raw != NO_ROOM)
    if bad_video.any():
        row = _first(bad_video)
        raise DataError(f"video slice must have room_id {NO_ROOM}", table=str(table_path(root, "slices")), column="room_id", row=row, value=int(slice_rooms_raw[row]))
    live_rows = np.flatnonzero(live)
    if len(live_rows):
        try:
            _check_refs(slice_rooms_raw[live_rows], room_keys, table_path(root, "slices"), "room_id", "room")
        except DataError as exc:  # report the row in the full table, not in the live subset
            raise DataError(exc.reason, table=exc.table, column=exc.column, row=int(live_rows[exc.row]), value=exc.value) from None
    _check_refs(small["queries"].column("slice_id").to_numpy(), slice_keys, table_path(root, "queries"), "slice_id", "slice")

    n_impressions = _validate_impressions(root, room_keys, slice_keys, slice_room, user_keys)
    counts = {name: t.num_rows for name, t in small.items()}
    counts["impressions"] = n_impressions
    if table_path(root, "video_impressions").exists():
        counts["video_impressions"] = _validate_video_impressions(root, slice_keys, user_keys)
    if "tables" not in manifest:
        verified = "not recorded (dataset written by an older fluidrec)"
    else:
        verified = "verified" if checksums else "skipped"
    return {"dataset": str(root), "ok": True, "row_counts": counts, "source": manifest.get("source"), "checksums": verified}


def _validate_impressions(root: Path, room_keys, slice_keys, slice_room, user_keys) -> int:
    spec = TABLES["impressions"]
    path = table_path(root, "impressions")
    pf = open_parquet(path)
    _check_schema(spec, pf.schema_arrow, path)
    offset, last_ts = 0, None
    for batch in iter_parquet(path, BATCH_ROWS):
        _check_values(spec, batch, path, offset)
        ts = batch.column("ts").to_numpy()
        _check_times(ts, path, "ts", offset)
        if len(ts):
            if last_ts is not None and ts[0] < last_ts:
                raise DataError("impressions are not sorted by ts", table=str(path), column="ts", row=offset, value=int(ts[0]))
            down = ts[1:] < ts[:-1]
            if down.any():
                row = _first(down) + 1
                raise DataError("impressions are not sorted by ts", table=str(path), column="ts", row=offset + row, value=int(ts[row]))
            last_ts = ts[-1]
        _check_refs(batch.column("user_id").to_numpy(), user_keys, path, "user_id", "user", offset)
        room = batch.column("room_id").to_numpy()
        _check_refs(room, room_keys, path, "room_id", "room", offset)
        sl = batch.column("slice_id").to_numpy()
        _check_refs(sl, slice_keys, path, "slice_id", "slice", offset)
        owner = slice_room[np.searchsorted(slice_keys, sl)]
        if (owner != room).any():
            row = _first(owner != room)
            raise DataError(f"slice belongs to room {owner[row]}, not to the impression's room", table=str(path), column="slice_id", row=offset + row, value=int(sl[row]))
        offset += batch.num_rows
    return offset


def _check_sorted_ts(ts: np.ndarray, last_ts, path: Path, offset: int, what: str):
    """Raise unless ``ts`` continues a stream sorted by time; returns the new last ts."""
    if not len(ts):
        return last_ts
    if last_ts is not None and ts[0] < last_ts:
        raise DataError(f"{what} are not sorted by ts", table=str(path), column="ts", row=offset, value=int(ts[0]))
    down = ts[1:] < ts[:-1]
    if down.any():
        row = _first(down) + 1
        raise DataError(f"{what} are not sorted by ts", table=str(path), column="ts", row=offset + row, value=int(ts[row]))
    return ts[-1]


def _validate_video_impressions(root: Path, slice_keys, user_keys) -> int:
    """The optional video feed: schema, values, times sorted, users and slices exist.

    Any slice may be an item (importers write real items as one-slice rooms, domain "live").
    """
    spec = TABLES["video_impressions"]
    path = table_path(root, "video_impressions")
    _check_schema(spec, open_parquet(path).schema_arrow, path)
    offset, last_ts = 0, None
    for batch in iter_parquet(path, BATCH_ROWS):
        _check_values(spec, batch, path, offset)
        ts = batch.column("ts").to_numpy()
        _check_times(ts, path, "ts", offset)
        last_ts = _check_sorted_ts(ts, last_ts, path, offset, "video impressions")
        _check_refs(batch.column("user_id").to_numpy(), user_keys, path, "user_id", "user", offset)
        sl = batch.column("slice_id").to_numpy()
        _check_refs(sl, slice_keys, path, "slice_id", "slice", offset)
        offset += batch.num_rows
    return offset
