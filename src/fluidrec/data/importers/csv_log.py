"""Import any interaction log plus an item table (delimited text) as a canonical dataset.

Bring-your-own-data path: an interactions file with a user, an item, optionally a
time and a label column, and an items file with an id column and text columns.

Mapping:

- **Ids** (any strings) become dense int64 ids in order of first appearance;
  ``source_users.parquet`` (user_id, source_id) and ``source_items.parquet``
  (room_id, source_id) beside the tables map them back.
- **Time**: integers are unix milliseconds (``time_unit="s"``: seconds), other
  values are ISO-8601 date-times (UTC unless they carry an offset). Without a time
  column the row order is the time (ts = 0-based row index, ``time_kind =
  "file_order"``).
- **Labels**: without a label column every row is a positive (click = 1); with
  one, ``label >= positive_threshold`` is a click and other rows are logged
  negatives. Other labels 0, watch_s 0.
- **Items** become one-slice rooms that go live at their first interaction and end
  at their last; the non-empty text columns joined by ``" | "`` are the title.
  Items missing from the items file keep a null title (counted) unless
  ``drop_items_without_text``. Items never interacted with are not imported. An
  items file that is empty or matches none of the interacted items is an error (every
  title would be null: the wrong file, id column or delimiter).
- **Checks**: ids are any non-empty strings; times must lie in [1970-01-01, 2200-01-01)
  (after ``time_unit``), labels must be finite. A UTF-8 byte-order mark is skipped;
  decoding and quoting errors name the line where they happen.
- **Queries**: inline ``#hashtags`` of the title, if any (often none: then empty).
- **Authors**: one placeholder author. ``--negatives K`` samples K negatives per positive.

Example:
    >>> fmt = CsvFormat(interactions="log.csv", items="items.csv", user_col="user", item_col="item",
    ...                 time_col="ts", text_cols=("title", "description"))
    >>> import_csv(fmt, "runs/mine", ImportOptions(negatives=4))
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fluidrec.data.importers.common import (
    complete_one_slice_columns,
    drop_rows_without_item,
    TIME_RANGE,
    TIME_UNIX_MS,
    BadRows,
    Columns,
    ImportOptions,
    ImportSummary,
    UserCap,
    check_input_file,
    finish,
    hashtag_queries,
    import_counts,
    item_lifetimes,
    parse_time_ms,
    prepare_out,
    read_csv_rows,
    time_in_range,
    write_impressions,
    write_one_slice_items,
    write_queries,
)
from fluidrec.data.importers.negatives import add_sampled_negatives
from fluidrec.data.io import PARQUET_WRITE, DatasetWriter, write_table
from fluidrec.data.schema import LABELS_BINARY
from fluidrec.errors import DataError, UsageError, check
from fluidrec.utils.io import atomic_path

TIME_FILE_ORDER = "file_order"


@dataclasses.dataclass(frozen=True)
class CsvFormat:
    """How to read a generic interactions file and items file.

    Args:
        interactions: path of the interaction log.
        items: path of the item table.
        delimiter: one field separator character (``"\\t"`` for TSV).
        header: the first line of each file holds column names; without a header
            columns are named by 0-based index (``"0"``, ``"1"``, ...).
        encoding: text encoding of both files.
        user_col, item_col: interaction columns holding user and item ids.
        time_col: interaction time column (None: row order is time).
        time_unit: unit of integer times, ``"ms"`` or ``"s"``.
        label_col: optional numeric label column; ``>= positive_threshold`` is a click.
        positive_threshold: see label_col.
        items_id_col: id column of the items file (default: ``item_col`` with a
            header, column ``"0"`` without).
        text_cols: item text columns joined into the title (at least one).
        drop_items_without_text: drop interactions whose item is not in the items file.
    """

    interactions: str
    items: str
    user_col: str
    item_col: str
    text_cols: tuple[str, ...]
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    time_col: str | None = None
    time_unit: str = "ms"
    label_col: str | None = None
    positive_threshold: float = 1.0
    items_id_col: str | None = None
    drop_items_without_text: bool = False

    def __post_init__(self) -> None:
        check(len(self.delimiter) == 1, f"delimiter must be one character, got {self.delimiter!r}")
        check(bool(self.user_col) and bool(self.item_col), "user_col and item_col are required")
        check(len(self.text_cols) >= 1 and all(self.text_cols), "text_cols needs at least one column name")
        check(self.time_unit in ("ms", "s"), f"time_unit must be 'ms' or 's', got {self.time_unit!r}")
        check(math.isfinite(self.positive_threshold), f"positive_threshold must be finite, got {self.positive_threshold}")
        if not self.header:
            for c in self._all_columns():
                check(c.isdigit(), f"without a header, columns are 0-based indices; got {c!r}")

    def _all_columns(self) -> list[str]:
        cols = [self.user_col, self.item_col, *self.text_cols]
        cols += [c for c in (self.time_col, self.label_col, self.items_id_col) if c]
        return cols


def _resolve(path: Path, first_row: list[str], header: bool, wanted: dict[str, str | None]) -> dict[str, int]:
    """Map role (the CLI flag that names it) -> column index, from header names or 0-based indices."""
    idx: dict[str, int] = {}
    if any("\x00" in f for f in first_row):  # ASCII text read as UTF-8 from a UTF-16 file: every other byte NUL
        raise DataError(
            "line 1 holds NUL bytes: the file looks like UTF-16 without a byte-order mark (try --encoding utf-16-le or utf-16-be)",
            table=str(path),
        )
    for role, name in wanted.items():
        if name is None:
            continue
        if not header:
            if int(name) >= len(first_row):
                raise UsageError(f"{path}: column {name} ({role}) does not exist: the first line has {len(first_row)} fields")
            idx[role] = int(name)
        else:
            names = [h.strip() for h in first_row]
            if name not in names:
                raise UsageError(f"{path}: column {name!r} ({role}) is not in the header {names}")
            idx[role] = names.index(name)
    return idx


def _source_map(out: Path, name: str, key: str, values: list[str]) -> None:
    table = pa.table({key: pa.array(np.arange(len(values), dtype=np.int64)), "source_id": pa.array(values, pa.string())})
    with atomic_path(out / f"{name}.parquet") as tmp:
        pq.write_table(table, tmp, **PARQUET_WRITE)


def import_csv(fmt: CsvFormat, out: str | os.PathLike, options: ImportOptions = ImportOptions()) -> ImportSummary:
    """Import ``fmt.interactions`` + ``fmt.items`` into the canonical dataset ``out``.

    Args:
        fmt: the files and how to read them.
        out: output dataset directory.
        options: seed, negatives, skip_bad_rows, max_users, progress.

    Returns:
        ImportSummary.

    Example:
        >>> import_csv(CsvFormat("log.tsv", "items.tsv", "u", "i", ("title",), delimiter="\\t"), "out")
    """
    started = time.perf_counter()
    inter_path, items_path = Path(fmt.interactions), Path(fmt.items)
    for p in (inter_path, items_path):  # both, before any output: missing, a directory, or empty
        check_input_file(p)
    out = prepare_out(out)
    bad = BadRows(options.skip_bad_rows)
    log = _read_interactions(fmt, inter_path, bad, UserCap(options.max_users), options.progress)

    texts = _read_items(fmt, items_path, log.items, bad, options.progress)
    if not texts:  # every title would be null: the wrong file, id column or delimiter, not a dataset
        raise DataError(
            f"none of the {len(log.items)} interacted items has a row in the items file (check --items / --items-id-col / --delimiter)",
            table=str(items_path),
        )
    imp, dropped = log.imp, 0
    if fmt.drop_items_without_text:
        known = np.fromiter(texts.keys(), np.int64, len(texts))
        imp, dropped = drop_rows_without_item(imp, known, items_path, "interactions left after dropping items missing from the items file")

    n = len(imp["ts"])
    complete_one_slice_columns(imp, request_per_row=True)
    n_pos = int(imp["click"].sum())
    item_ids, start, end = item_lifetimes(imp["room_id"], imp["ts"])
    imp, n_sampled = add_sampled_negatives(imp, item_ids, start, end, options)

    title = [texts.get(int(i)) for i in item_ids]
    with DatasetWriter(out) as tmp:  # the tables appear under `out` together, once validated
        write_one_slice_items(tmp, item_ids=item_ids, start=start, end=end, texts={"title": title})
        user_ids = np.unique(imp["user_id"])
        write_table(tmp, "users", {"user_id": user_ids})
        n_queries = write_queries(tmp, [(q, int(i)) for i, t in zip(item_ids, title) for q in hashtag_queries(t)])
        n_imp = write_impressions(tmp, imp, progress=options.progress)
        _source_map(tmp, "source_users", "user_id", list(log.users))
        _source_map(tmp, "source_items", "room_id", list(log.items))

        summary = finish(
            tmp,
            source="csv",
            options=options,
            config={"format": dataclasses.asdict(fmt)},
            counts=import_counts(
                users=len(user_ids), items=len(item_ids), impressions=n_imp,
                positives=n_pos, logged_negatives=n - n_pos, sampled_negatives=n_sampled,
            ),  # fmt: skip
            bad=bad,
            notes={
                "items_without_text": sum(t is None for t in title),
                "interactions_dropped_without_text": dropped,
                "queries": n_queries,
            },
            time_kind=TIME_UNIX_MS if fmt.time_col else TIME_FILE_ORDER,
            started=started,
        )
    summary.out = str(out)
    return summary


@dataclasses.dataclass
class _Interactions:
    """The good rows of the interactions file, with dense ids."""

    imp: dict[str, np.ndarray]  # ts, user_id, room_id, click
    users: dict[str, int]  # source user id -> dense user_id, in order of first appearance
    items: dict[str, int]  # source item id -> dense room_id, in order of first appearance


def _read_interactions(fmt: CsvFormat, path: Path, bad: BadRows, cap: UserCap, progress: bool) -> _Interactions:
    """Stream the interactions file into columns; a file without one good row is a DataError."""
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    cols = Columns({"ts": np.int64, "user_id": np.int64, "room_id": np.int64, "click": np.int8})
    idx: dict[str, int] | None = None
    width = 0
    row_index = 0
    for line_no, fields in read_csv_rows(path, delimiter=fmt.delimiter, encoding=fmt.encoding, progress=progress):
        if idx is None:
            roles = {"--user-col": fmt.user_col, "--item-col": fmt.item_col, "--time-col": fmt.time_col, "--label-col": fmt.label_col}
            idx = _resolve(path, fields, fmt.header, roles)
            width = len(fields)
            if fmt.header:
                continue
        row = _parse_interaction(fmt, path, bad, line_no, fields, idx, width, row_index)
        if row is None:
            continue
        user, item, ts, click = row
        if not cap.admit(user):
            continue
        uid = users.setdefault(user, len(users))
        iid = items.setdefault(item, len(items))
        cols.append(ts=ts, user_id=uid, room_id=iid, click=click)
        row_index += 1
    imp = cols.arrays()
    if not len(imp["ts"]):
        raise DataError("no valid interactions", table=str(path))
    return _Interactions(imp, users, items)


def _parse_interaction(
    fmt: CsvFormat, path: Path, bad: BadRows, line_no: int, fields: list[str], idx: dict[str, int], width: int, row_index: int
) -> tuple[str, str, int, int] | None:
    """(user, item, ts, click) of one interactions row, or None after reporting it as bad.

    Without a time column the row's ts is ``row_index`` (the count of rows kept so far).
    """
    if not fields or fields == [""]:
        bad.report(path, line_no, "empty line")
        return None
    if len(fields) != width:
        bad.report(path, line_no, f"expected {width} fields, got {len(fields)}", fmt.delimiter.join(fields)[:80])
        return None
    user, item = fields[idx["--user-col"]].strip(), fields[idx["--item-col"]].strip()
    if not user or not item:
        bad.report(path, line_no, f"empty {'user' if not user else 'item'} id")
        return None
    ts: int | None = row_index
    if "--time-col" in idx:
        ts = _parse_row_time(fmt, path, bad, line_no, fields[idx["--time-col"]].strip())
        if ts is None:
            return None
    click = 1
    if "--label-col" in idx:
        raw = fields[idx["--label-col"]].strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            bad.report(path, line_no, "label is not a finite number", raw)
            return None
        click = int(value >= fmt.positive_threshold)
    return user, item, ts, click


def _parse_row_time(fmt: CsvFormat, path: Path, bad: BadRows, line_no: int, raw: str) -> int | None:
    """Unix ms of a time field (integers scaled by ``time_unit``), or None after reporting it as bad."""
    scale = 1000 if fmt.time_unit == "s" else 1
    ts = parse_time_ms(raw)
    if ts is None:
        bad.report(path, line_no, "time is neither an integer nor an ISO-8601 date-time", raw)
        return None
    if raw.lstrip("+-").isdigit():
        ts *= scale
    if not time_in_range(ts):  # before an int64 overflow, and before validate sees it
        bad.report(path, line_no, f"time {TIME_RANGE}" + (" (after --time-unit s)" if scale != 1 and raw.lstrip("+-").isdigit() else ""), raw, column=fmt.time_col)
        return None
    return ts


def _read_items(fmt: CsvFormat, path: Path, items: dict[str, int], bad: BadRows, progress: bool) -> dict[int, str]:
    """Texts of the interacted items, keyed by dense item id."""
    texts: dict[int, str] = {}
    seen: set[str] = set()
    idx: dict[str, int] | None = None
    for line_no, fields in read_csv_rows(path, delimiter=fmt.delimiter, encoding=fmt.encoding, progress=progress):
        if idx is None:
            # Without a header the items file has its own column order: its id defaults to column 0.
            roles: dict[str, str | None] = {"--items-id-col": fmt.items_id_col or (fmt.item_col if fmt.header else "0")}
            roles.update({f"--text-cols #{k + 1}": c for k, c in enumerate(fmt.text_cols)})
            idx = _resolve(path, fields, fmt.header, roles)
            width = len(fields)
            if fmt.header:
                continue
        if not fields or fields == [""]:
            bad.report(path, line_no, "empty line")
            continue
        if len(fields) != width:
            bad.report(path, line_no, f"expected {width} fields, got {len(fields)}", fmt.delimiter.join(fields)[:80])
            continue
        key = fields[idx["--items-id-col"]].strip()
        if not key:
            bad.report(path, line_no, "empty item id")
            continue
        if key in seen:
            bad.report(path, line_no, "duplicate item id", key)
            continue
        seen.add(key)
        if key in items:
            parts = [fields[idx[f"--text-cols #{k + 1}"]].strip() for k in range(len(fmt.text_cols))]
            texts[items[key]] = " | ".join(p for p in parts if p)
    return texts
