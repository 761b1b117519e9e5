"""Shared machinery of the importers: options, bad-row handling, streaming readers and
writing of the canonical tables (negative sampling lives in ``negatives.py``).

Every importer follows the same shape:

1. stream the source files row by row (with tqdm progress), turning each good row
   into compact numpy columns and each malformed row into a ``DataError`` naming
   the file, the 1-based line and the reason (or, with ``skip_bad_rows``, a count);
2. build items (one-slice rooms, or multi-slice rooms for KuaiLive-M3);
3. optionally sample ``negatives`` per positive from the items live at that moment
   (``negatives.add_sampled_negatives``);
4. sort impressions by time and write every table, the resolved import config and
   the manifest into a ``DatasetWriter``'s temporary directory; ``finish`` runs
   ``validate_dataset`` there, and only a valid dataset is swapped into ``out`` (whole:
   an import that fails, or is killed, leaves the old dataset at ``out`` untouched).

Shape letters: N impressions, P positives, K negatives per positive, I items.

Example:
    >>> opts = ImportOptions(seed=0, negatives=4)
    >>> bad = BadRows(skip=opts.skip_bad_rows)
    >>> for line_no, line in read_lines(path, progress=False):
    ...     if not line:
    ...         bad.report(path, line_no, "empty line")
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import datetime as _dt
import io
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fluidrec.data.io import TableWriter, write_manifest, write_table
from fluidrec.data.schema import LABELS_BINARY
from fluidrec.errors import DataError, UsageError, check
from fluidrec.utils.io import write_json

#: ``manifest["time_kind"]``: real unix-ms times, or times synthesised from order.
TIME_UNIX_MS = "unix_ms"
TIME_SEQUENCE = "sequence_index"
#: Placeholder creator for sources that have no authors (MicroLens, MIND, csv).
PLACEHOLDER_AUTHOR = 0
#: Impressions are written in row groups of this many rows.
WRITE_BATCH = 1 << 20
#: The resolved import configuration is written beside the tables under this name.
CONFIG_FILE = "import_config.json"
#: At most this many sampled negatives per positive (the (P, K) sample must fit in memory).
MAX_NEGATIVES = 1000
#: Ids are stored as int64 and must be >= 0 (-1 is ``NO_ROOM``; negative ids also break
#: the (user, item) keys of negative sampling).
ID_MAX = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """Options every importer takes.

    Args:
        seed: seeds negative sampling (the only randomness in an import).
        negatives: K negatives sampled per positive from the items live at that
            moment (0 = none). Sources with logged negatives keep them and add these.
        skip_bad_rows: skip malformed rows and count them instead of raising.
        max_users: keep only the first N distinct users in file order (fast subsets).
        progress: show tqdm progress bars on stderr.
    """

    seed: int = 0
    negatives: int = 0
    skip_bad_rows: bool = False
    max_users: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        check(isinstance(self.negatives, int) and 0 <= self.negatives <= MAX_NEGATIVES, f"negatives must be an integer in [0, {MAX_NEGATIVES}], got {self.negatives!r}")
        check(self.max_users is None or (isinstance(self.max_users, int) and self.max_users > 0), f"max_users must be > 0, got {self.max_users!r}")


@dataclasses.dataclass
class ImportSummary:
    """What an import did; printed by the CLI and stored in the manifest."""

    source: str
    out: str
    users: int
    items: int
    slices: int
    impressions: int
    positives: int
    logged_negatives: int
    sampled_negatives: int
    bad_rows: int
    bad_rows_by_reason: dict[str, int]
    notes: dict[str, Any]
    seconds: float

    def flat(self) -> dict[str, Any]:
        """A flat dict for ``render_kv`` (reasons and notes inlined)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("bad_rows_by_reason", "notes")}
        d.update({f"bad: {k}": v for k, v in sorted(self.bad_rows_by_reason.items())})
        d.update({f"note: {k}": v for k, v in sorted(self.notes.items())})
        return d


class BadRows:
    """Reject a malformed row (``DataError``) or, when skipping, count it by reason.

    Args:
        skip: count instead of raising.
    """

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.counts: collections.Counter[str] = collections.Counter()

    def report(self, path: str | os.PathLike, line: int, reason: str, value: Any = None, *, column: str | None = None, unit: str = "line") -> None:
        """Handle one bad row: ``line`` is the 1-based line of a text file, or (``unit="row"``) the 0-based row of a Parquet file."""
        if not self.skip:
            raise DataError(f"{unit} {line}: {reason} (use --skip-bad-rows to skip such rows)", table=str(path), column=column, value=value)
        self.counts[f"{Path(path).name}: {reason}"] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# ---------------------------------------------------------------------------
# Streaming readers with byte-level progress


def _bar(total: int | None, desc: str, enabled: bool, unit: str = "B"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled, file=sys.stderr, leave=False)


class _CountingReader(io.RawIOBase):
    """A raw binary reader that advances a progress bar by the bytes it reads."""

    def __init__(self, raw: io.BufferedReader, bar) -> None:
        self._raw = raw
        self._bar = bar

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._raw.readinto(b)
        if n:
            self._bar.update(n)
        return n


def _text_encoding(encoding: str) -> str:
    """``utf-8-sig`` for UTF-8, so a byte-order mark (Excel writes one) is not part of the first field."""
    import codecs

    try:
        name = codecs.lookup(encoding).name
        "".encode(encoding)  # refuses codecs that are not text encodings (rot13, hex, zlib)
    except LookupError:
        raise UsageError(f"unknown text encoding {encoding!r} (--encoding)") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def check_input_file(p: Path) -> None:
    """An input text file must exist, be a regular file and not be empty (0 bytes)."""
    if p.is_dir():
        raise DataError("expected a file, found a directory", table=str(p))
    if not p.is_file():
        raise DataError("file not found", table=str(p))
    if p.stat().st_size == 0:
        raise DataError("file is empty (0 bytes)", table=str(p))


def undecodable_line(path: str | os.PathLike, encoding: str) -> tuple[int, str]:
    """(1-based line, reason) of the first bytes of ``path`` that do not decode as ``encoding``.

    ``TextIOWrapper`` decodes in 8 KB chunks, so its error comes at the start of the chunk,
    not at the bad byte; this rescans the raw lines with an incremental decoder (exact for
    every ASCII-compatible encoding). Returns (0, reason) if the whole file decodes.
    """
    import codecs

    decoder = codecs.getincrementaldecoder(_text_encoding(encoding))()
    line_no = 0
    with open(path, "rb") as raw:
        for line_no, line in enumerate(raw, start=1):
            try:
                decoder.decode(line)
            except UnicodeError as exc:
                return line_no, getattr(exc, "reason", str(exc))
        try:
            decoder.decode(b"", final=True)
        except UnicodeError as exc:
            return line_no, f"truncated character at the end ({getattr(exc, 'reason', exc)})"
    return 0, "undecodable"


@contextlib.contextmanager
def open_text(path: str | os.PathLike, *, encoding: str = "utf-8", progress: bool = True, desc: str | None = None) -> Iterator[io.TextIOWrapper]:
    """Open a text file for streaming with a byte progress bar; ``newline=""`` leaves line ends to the csv module.

    A UTF-8 byte-order mark is skipped. Raises DataError when the file is missing, a
    directory or empty, UsageError on an unknown encoding.
    """
    p = Path(path)
    encoding = _text_encoding(encoding)
    check_input_file(p)
    bar = _bar(p.stat().st_size, desc or p.name, progress)
    try:
        raw = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        bar.close()
        raise DataError(f"unreadable ({exc.strerror or exc})", table=str(p)) from None
    try:
        text = io.TextIOWrapper(io.BufferedReader(_CountingReader(raw, bar)), encoding=encoding, newline="")
        yield text
    finally:
        raw.close()
        bar.close()


def read_lines(path: str | os.PathLike, *, encoding: str = "utf-8", progress: bool = True) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, line without its CR/LF)``; an undecodable line is a DataError.

    Lines end at LF only, so a stray CR inside a field (a known quirk of some
    published files) does not split a record; a trailing CR (CRLF files) is removed.
    Lines are decoded one by one so a decoding error names its exact line (the
    encoding must be ASCII-compatible, e.g. utf-8, latin-1, gbk). A UTF-8 byte-order
    mark before the first line is skipped.
    """
    p = Path(path)
    encoding = _text_encoding(encoding)
    check_input_file(p)
    bar = _bar(p.stat().st_size, p.name, progress)
    try:
        with open(p, "rb") as raw:
            for line_no, line in enumerate(io.BufferedReader(_CountingReader(raw, bar)), start=1):
                try:
                    text = line.decode(encoding if line_no == 1 else encoding.replace("-sig", ""))
                except UnicodeDecodeError as exc:
                    raise DataError(f"line {line_no}: not valid {encoding.replace('-sig', '')} ({exc.reason})", table=str(p)) from None
                yield line_no, text.rstrip("\r\n")
    except OSError as exc:
        raise DataError(f"unreadable ({exc.strerror or exc})", table=str(p)) from None
    finally:
        bar.close()


def read_csv_rows(path: str | os.PathLike, *, delimiter: str = ",", encoding: str = "utf-8", progress: bool = True) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(1-based line where the record starts, fields)`` from a (quoted) CSV file.

    Records that span lines (quoted newlines) report their first line. A quoting
    error is a DataError naming the line where the bad record starts (for an unbalanced
    quote the csv module only notices at the end of the file), a decoding error one
    naming the exact line of the bad byte (the rest of the file cannot be trusted).
    """
    shown = encoding
    with open_text(path, encoding=encoding, progress=progress) as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        start = 1
        try:
            for fields in reader:
                yield start, fields
                start = reader.line_num + 1
        except csv.Error as exc:
            where = f"line {start}" if start >= reader.line_num else f"line {start} (the record starting there runs to line {reader.line_num}: an unbalanced quote?)"
            raise DataError(f"{where}: CSV quoting error ({exc})", table=str(path)) from None
        except UnicodeError as exc:
            line, reason = undecodable_line(path, encoding)
            where = f"line {line}" if line else f"near line {reader.line_num + 1}"
            raise DataError(f"{where}: not valid {shown} ({reason or exc})", table=str(path)) from None
        except OSError as exc:
            raise DataError(f"unreadable ({exc.strerror or exc})", table=str(path)) from None


# ---------------------------------------------------------------------------
# Small parsers


_INT = re.compile(r"[+-]?\d{1,40}")  # 40 digits: past int64 either way, and int() stays cheap


def parse_int(text: str) -> int | None:
    """An integer or None (no floats, no blanks)."""
    text = text.strip()
    return int(text) if _INT.fullmatch(text) else None


def parse_id(text: str) -> int | None:
    """An id: an integer in [0, 2^63 - 1] (it is stored as int64), else None."""
    value = parse_int(text)
    return value if value is not None and 0 <= value <= ID_MAX else None


def time_in_range(ms: int) -> bool:
    """Whether ``ms`` is a unix-ms time ``validate_dataset`` accepts: [1970-01-01, 2200-01-01)."""
    from fluidrec.data.validate import TIME_MAX_MS, TIME_MIN_MS

    return TIME_MIN_MS <= ms < TIME_MAX_MS


#: The reason given for a time outside ``time_in_range``.
TIME_RANGE = "outside [1970-01-01, 2200-01-01) as unix ms"


def parse_time_ms(text: str) -> int | None:
    """Parse a timestamp into unix ms: integer ms, or an ISO-8601 date-time (UTC unless it says otherwise)."""
    text = text.strip()
    if not text:
        return None
    if _INT.fullmatch(text):
        return int(text)
    try:
        stamp = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=_dt.timezone.utc)
        return int(round(stamp.timestamp() * 1000))
    except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset, and the like
        return None


_HASHTAG_CLEAN = re.compile(r"\s+")


def hashtag_queries(text: str | None, limit: int = 3) -> list[str]:
    """Hashtag phrases of a title (``"... # funny # unexpected ending"``) as query texts.

    MicroLens titles keep hashtags inline as ``# phrase``; a hashtag runs to the next
    ``#``. Phrases of 2..60 characters are kept, lower-cased, deduplicated, at most ``limit``.
    """
    if not text or "#" not in text:
        return []
    out: list[str] = []
    for part in text.split("#")[1:]:
        q = _HASHTAG_CLEAN.sub(" ", part).strip().lower()
        if 2 <= len(q) <= 60 and q not in out:
            out.append(q)
        if len(out) >= limit:
            break
    return out


class UserCap:
    """Keep only the first ``max_users`` distinct users (in the order they are seen)."""

    def __init__(self, max_users: int | None) -> None:
        self.max_users = max_users
        self.seen: set = set()

    def admit(self, user: Any) -> bool:
        if user in self.seen:
            return True
        if self.max_users is not None and len(self.seen) >= self.max_users:
            return False
        self.seen.add(user)
        return True

    @property
    def full(self) -> bool:
        return self.max_users is not None and len(self.seen) >= self.max_users


class Columns:
    """Growable numpy columns: append Python values row by row, read arrays at the end.

    Values are buffered in lists and flushed into numpy chunks every ``chunk`` rows
    so memory stays near the final array size even for tens of millions of rows.
    """

    def __init__(self, dtypes: Mapping[str, Any], chunk: int = 1 << 18) -> None:
        self.dtypes = dict(dtypes)
        self._lists: dict[str, list] = {k: [] for k in self.dtypes}
        self._chunks: dict[str, list[np.ndarray]] = {k: [] for k in self.dtypes}
        self._chunk = chunk
        self.rows = 0

    def append(self, **values: Any) -> None:
        for k, lst in self._lists.items():
            lst.append(values[k])
        self.rows += 1
        if len(self._lists[next(iter(self._lists))]) >= self._chunk:
            self._flush()

    def _flush(self) -> None:
        for k, lst in self._lists.items():
            if lst:
                self._chunks[k].append(np.asarray(lst, dtype=self.dtypes[k]))
                lst.clear()

    def arrays(self) -> dict[str, np.ndarray]:
        self._flush()
        return {k: (np.concatenate(c) if c else np.zeros(0, dtype=self.dtypes[k])) for k, c in self._chunks.items()}


# ---------------------------------------------------------------------------
# Writing


def item_lifetimes(item_of_row: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For items defined by their interactions: (ids, first ts, last ts) — items go live at first sight."""
    ids, inv = np.unique(item_of_row, return_inverse=True)
    start = np.full(len(ids), np.iinfo(np.int64).max, dtype=np.int64)
    end = np.full(len(ids), np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(start, inv, ts)
    np.maximum.at(end, inv, ts)
    return ids, start, end


def write_impressions(out: Path, imp: dict[str, np.ndarray], *, progress: bool = True) -> int:
    """Sort impressions by (ts, request_id, clicked first) and stream them to ``impressions.parquet``."""
    keys = [-imp["click"].astype(np.int64)]
    if "request_id" in imp:
        keys.append(imp["request_id"])
    keys.append(imp["ts"])
    order = np.lexsort(keys)  # last key is primary
    n = len(order)
    bar = _bar(n, "write impressions", progress, unit="row")
    with TableWriter(out, "impressions") as w:
        for lo in range(0, max(n, 1), WRITE_BATCH):
            sel = order[lo : lo + WRITE_BATCH]
            if not len(sel) and n:
                break
            w.write({name: col[sel] for name, col in imp.items()})
            bar.update(len(sel))
    bar.close()
    return n


def video_events_from_impressions(imp: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``video_impressions`` columns for an importer's impressions (docs/CONTRACTS.md, docs/world.md "Video feed").

    Real logs carry no watch ratio: ``watch_ratio`` is 1.0 for an interaction (click = 1) and 0.0
    otherwise, ``long_view`` = click (the label a sequence model predicts), ``watch_s`` and
    ``like`` are copied.
    """
    click = imp["click"].astype(np.int8)
    cols = {
        "ts": imp["ts"],
        "user_id": imp["user_id"],
        "slice_id": imp["slice_id"],
        "watch_s": imp["watch_s"].astype(np.float32),
        "watch_ratio": click.astype(np.float32),
        "long_view": click,
        "like": imp["like"].astype(np.int8),
    }
    for name in ("request_id", "position"):
        if name in imp:
            cols[name] = imp[name]
    return cols


def write_video_impressions(out: Path, cols: dict[str, np.ndarray]) -> int:
    """Sort feed events by (ts, user, request, position) and write ``video_impressions.parquet``; returns rows."""
    keys = [cols[k] for k in ("position", "request_id") if k in cols] + [cols["user_id"], cols["ts"]]
    order = np.lexsort(keys)  # last key is primary
    with TableWriter(out, "video_impressions") as w:
        for lo in range(0, max(len(order), 1), WRITE_BATCH):
            sel = order[lo : lo + WRITE_BATCH]
            if len(sel) or not len(order):
                w.write({name: col[sel] for name, col in cols.items()})
    return len(order)


def empty_impressions(with_request: bool = True) -> dict[str, np.ndarray]:
    """Typed empty impression columns (for building up)."""
    cols = {"ts": np.zeros(0, np.int64), "user_id": np.zeros(0, np.int64), "room_id": np.zeros(0, np.int64), "slice_id": np.zeros(0, np.int64)}
    if with_request:
        cols["request_id"] = np.zeros(0, np.int64)
    for lab in LABELS_BINARY:
        cols[lab] = np.zeros(0, np.int8)
    cols["watch_s"] = np.zeros(0, np.float32)
    return cols


def write_one_slice_items(
    out: Path,
    *,
    item_ids: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    texts: Mapping[str, list[str | None]],
    topics: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write authors (one placeholder), rooms and slices for items that are one-slice rooms.

    Each item becomes room ``item_id`` with slice ``item_id`` (``domain="live"``: a
    rankable item with a life), both spanning the item's [start, end].
    """
    n = len(item_ids)
    write_table(out, "authors", {"author_id": np.array([PLACEHOLDER_AUTHOR], np.int64)})
    author = np.full(n, PLACEHOLDER_AUTHOR, np.int64)
    write_table(out, "rooms", {"room_id": item_ids, "author_id": author, "start_ts": start, "end_ts": end})
    cols: dict[str, Any] = {
        "slice_id": item_ids,
        "room_id": item_ids,
        "author_id": author,
        "start_ts": start,
        "end_ts": end,
        "domain": ["live"] * n,
    }
    cols.update(texts)
    if topics:
        cols.update(topics)
    write_table(out, "slices", cols)


def write_queries(out: Path, pairs: list[tuple[str, int]]) -> int:
    """Write (query_text, slice_id) pairs as the queries table; returns the row count."""
    write_table(
        out,
        "queries",
        {
            "query_id": np.arange(len(pairs), dtype=np.int64),
            "query_text": [q for q, _ in pairs],
            "slice_id": np.array([s for _, s in pairs], dtype=np.int64),
        },
    )
    return len(pairs)


def import_counts(
    *,
    users: int,
    items: int,
    impressions: int,
    positives: int,
    logged_negatives: int,
    sampled_negatives: int,
    slices: int | None = None,
) -> dict[str, int]:
    """The ``counts`` that ``finish`` records; ``slices`` defaults to ``items`` (one-slice rooms)."""
    return {
        "users": users,
        "items": items,
        "slices": items if slices is None else slices,
        "impressions": impressions,
        "positives": positives,
        "logged_negatives": logged_negatives,
        "sampled_negatives": sampled_negatives,
    }


def finish(
    out: Path,
    *,
    source: str,
    options: ImportOptions,
    config: Mapping[str, Any],
    counts: Mapping[str, int],
    bad: BadRows,
    notes: Mapping[str, Any],
    time_kind: str,
    started: float,
    extra: Mapping[str, Any] | None = None,
) -> ImportSummary:
    """Write config + manifest (last), validate the dataset, and return the summary.

    ``out`` is the ``DatasetWriter``'s temporary directory; the checksums were computed just
    now, so validation skips re-reading them.
    """
    from fluidrec.data.validate import validate_dataset

    write_json(out / CONFIG_FILE, {"source": source, "options": dataclasses.asdict(options), **config})
    summary = ImportSummary(
        source=source,
        out=str(out),
        users=int(counts["users"]),
        items=int(counts["items"]),
        slices=int(counts["slices"]),
        impressions=int(counts["impressions"]),
        positives=int(counts["positives"]),
        logged_negatives=int(counts["logged_negatives"]),
        sampled_negatives=int(counts["sampled_negatives"]),
        bad_rows=bad.total,
        bad_rows_by_reason=dict(bad.counts),
        notes=dict(notes),
        seconds=0.0,
    )
    manifest_extra = {
        "time_kind": time_kind,
        "negatives_per_positive": options.negatives,
        "import": {k: v for k, v in dataclasses.asdict(summary).items() if k not in ("out", "seconds")},
        **(dict(extra) if extra else {}),
    }
    write_manifest(out, source=source, seed=options.seed, extra=manifest_extra)
    validate_dataset(out, checksums=False)
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary


def prepare_out(out: str | os.PathLike) -> Path:
    """Create the output directory (the CLI checks emptiness / --force before this)."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UsageError(f"output path {p} exists and is not a directory")
    p.mkdir(parents=True, exist_ok=True)
    return p


def drop_rows_without_item(imp: dict[str, np.ndarray], known: np.ndarray, path: Path, what: str) -> tuple[dict[str, np.ndarray], int]:
    """(rows of ``imp`` whose room_id is in ``known``, how many were dropped); DataError naming ``path`` if none is left.

    ``what`` completes the message: "no {what} left after dropping ...".
    """
    keep = np.isin(imp["room_id"], known)
    dropped = int((~keep).sum())
    imp = {k: v[keep] for k, v in imp.items()}
    if not len(imp["ts"]):
        raise DataError(f"no {what}", table=str(path))
    return imp, dropped


def complete_one_slice_columns(imp: dict[str, np.ndarray], *, request_per_row: bool, all_clicks: bool = False) -> None:
    """Complete an item log's columns in place: slice = room (one-slice rooms), the labels the
    source lacks 0, watch_s 0; ``request_per_row``: each row its own request; ``all_clicks``:
    every row is a click (a log of positives), else the source's own ``click`` is kept."""
    n = len(imp["ts"])
    imp["slice_id"] = imp["room_id"]
    if request_per_row:
        imp["request_id"] = np.arange(n, dtype=np.int64)
    for lab in LABELS_BINARY:
        if lab != "click":
            imp[lab] = np.zeros(n, np.int8)
        elif all_clicks:
            imp[lab] = np.ones(n, np.int8)
    imp["watch_s"] = np.zeros(n, np.float32)
