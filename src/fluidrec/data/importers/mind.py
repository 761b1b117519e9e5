"""Import MIND (Microsoft News Dataset) behaviors + news as a canonical dataset.

Source layout (tab-separated, no header; as published):

- ``behaviors.tsv``: ``impression_id, user_id ("U123"), time ("M/D/YYYY h:mm:ss AM/PM"),
  history (space-separated news ids, may be empty), impressions ("N123-1 N456-0")``.
- ``news.tsv``: ``news_id ("N123"), category, subcategory, title, abstract, url,
  title_entities (JSON list), abstract_entities (JSON list)``.

Mapping:

- **Users** ``U123`` -> user_id 123; **news** ``N123`` -> room_id = slice_id = 123.
- **Impressions**: each ``news-label`` entry of a behaviors row is one impression
  at the row's time (read as UTC), request_id = impression_id, position = index in
  the list, click = label; other labels 0, watch_s 0. The ``history`` column has
  no times, so it is not turned into impressions (it is counted in the summary).
- **Items** are one-slice rooms that go live at their first impression and end at
  their last. Text: title -> ``title``, abstract -> ``transcript`` (body text),
  ``"category subcategory"`` -> ``tags``; category -> ``topic_l1`` and subcategory ->
  ``topic_l2`` (dense ids; names in ``manifest["topic_names"]``), l3/l4 = -1.
  News missing from news.tsv keep a null title (counted) unless
  ``drop_items_without_text`` drops their impressions; a news.tsv that is empty or
  has none of the news is an error. Times before 1970 (negative unix time) or ids
  beyond int64 are bad rows.
- **Video feed** (``video_impressions``, for ``fluidrec.sequence``): every impression again
  with ``long_view`` = click, ``watch_ratio`` = click (1.0 / 0.0: no watch time in MIND).
  With ``history_events`` the click history of each user's earliest row is added as clicks
  at **synthetic times**: the k-th of n history news at ``window start - (n - k)`` minutes
  (MIND's history is ordered, oldest first, but has no times; every user's history then ends
  one minute before the first impression of the log), request_id -1, and history news
  become items (one-slice rooms) too. Off by default, so the other tables stay as before.
- **Queries**: the labels of the title's entities (``title_entities``), up to 3 per news.
- **Authors**: one placeholder author.

Example:
    >>> import_mind("MINDsmall_train", "runs/mind", ImportOptions())
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import time
from pathlib import Path

import numpy as np

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
    finish,
    import_counts,
    item_lifetimes,
    parse_id,
    prepare_out,
    read_lines,
    time_in_range,
    video_events_from_impressions,
    write_impressions,
    write_one_slice_items,
    write_queries,
    write_video_impressions,
)
from fluidrec.data.importers.negatives import add_sampled_negatives
from fluidrec.data.io import DatasetWriter, write_table
from fluidrec.data.schema import LABELS_BINARY
from fluidrec.errors import DataError

BEHAVIORS_FILE = "behaviors.tsv"
NEWS_FILE = "news.tsv"
_USER = re.compile(r"U(\d+)")
_NEWS = re.compile(r"N(\d+)")
_ENTRY = re.compile(r"N(\d+)-([01])")
_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_TOO_BIG = "id does not fit int64 (at most 2^63 - 1)"


def _parse_time(text: str) -> int | None:
    try:
        stamp = _dt.datetime.strptime(text.strip(), _TIME_FORMAT).replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    return int(stamp.timestamp() * 1000)


def import_mind(
    path: str | os.PathLike,
    out: str | os.PathLike,
    options: ImportOptions = ImportOptions(),
    *,
    drop_items_without_text: bool = False,
    history_events: bool = False,
) -> ImportSummary:
    """Import a MIND split directory (``behaviors.tsv`` + ``news.tsv``) into ``out``.

    Args:
        path: the split directory (e.g. ``MINDsmall_train``).
        out: output dataset directory.
        options: seed, negatives (added to the logged ones), skip_bad_rows, max_users, progress.
        drop_items_without_text: drop impressions of news missing from news.tsv.
        history_events: also turn each user's click history (the ``history`` column of the
            user's earliest row) into clicks at synthetic times before the log window, in the
            video feed only (module docstring); history news become items too.

    Returns:
        ImportSummary.

    Example:
        >>> import_mind("MINDsmall_train", "out", ImportOptions(max_users=500))
    """
    started = time.perf_counter()
    root = Path(path)
    behaviors = root / BEHAVIORS_FILE
    news_path = root / NEWS_FILE
    for p in (behaviors, news_path):
        if not p.is_file():
            raise DataError("MIND file not found (expected behaviors.tsv and news.tsv in --path)", table=str(p))
    out = prepare_out(out)
    bad = BadRows(options.skip_bad_rows)
    log = _read_behaviors(behaviors, bad, UserCap(options.max_users), options.progress)
    imp = log.imp

    hist = _history_events(log.first_history, int(imp["ts"].min())) if history_events else None
    news = _read_news_of(news_path, imp, hist, bad, options.progress)
    known = np.fromiter(news.keys(), np.int64, len(news))
    imp, dropped = drop_rows_without_item(imp, known, news_path, "impressions left after dropping news missing from news.tsv") if drop_items_without_text else (imp, 0)

    n = len(imp["ts"])
    complete_one_slice_columns(imp, request_per_row=False)
    n_pos = int(imp["click"].sum())
    item_ids, start, end = _item_lifetimes(imp, hist)
    if options.negatives:
        del imp["position"]  # sampled rows have no display position
    imp, n_sampled = add_sampled_negatives(imp, item_ids, start, end, options)

    records = [news.get(int(i)) for i in item_ids]
    texts, topics, topic_names = _news_columns(records)
    with DatasetWriter(out) as tmp:  # the tables appear under `out` together, once validated
        write_one_slice_items(tmp, item_ids=item_ids, start=start, end=end, texts=texts, topics=topics)
        written = _write_users_queries_impressions(tmp, imp, hist, item_ids, records, options.progress)
        summary = finish(
            tmp,
            source="mind",
            options=options,
            config={"path": str(root), "drop_items_without_text": drop_items_without_text,
                    **({"history_events": True} if history_events else {})},
            counts=import_counts(
                users=written.users, items=len(item_ids), impressions=written.impressions,
                positives=n_pos, logged_negatives=n - n_pos, sampled_negatives=n_sampled,
            ),  # fmt: skip
            bad=bad,
            notes={
                "items_without_text": sum(r is None for r in records),
                "impressions_dropped_without_text": dropped,
                "history_entries_not_imported": log.history_entries,
                "video_impressions": written.video_impressions,
                "video_history_events": len(hist["ts"]) if hist else 0,
                "queries": written.queries,
            },
            time_kind=TIME_UNIX_MS,
            started=started,
            extra={"topic_names": topic_names},
        )
    summary.out = str(out)
    return summary


@dataclasses.dataclass
class _Behaviors:
    """The good rows of behaviors.tsv."""

    imp: dict[str, np.ndarray]  # ts, user_id, room_id, request_id, position, click: one row per news-label entry
    history_entries: int  # history news over all kept rows (not imported as impressions)
    first_history: dict[int, tuple[int, list[str]]]  # user -> (ts, history) of the user's earliest row


def _read_behaviors(behaviors: Path, bad: BadRows, cap: UserCap, progress: bool) -> _Behaviors:
    """Stream behaviors.tsv into impression columns; a file without one good row is a DataError."""
    cols = Columns({"ts": np.int64, "user_id": np.int64, "room_id": np.int64, "request_id": np.int64, "position": np.int32, "click": np.int8})
    history_entries = 0
    first_history: dict[int, tuple[int, list[str]]] = {}
    seen_requests: set[int] = set()
    for line_no, line in read_lines(behaviors, progress=progress):
        row = _parse_behaviors_line(behaviors, bad, line_no, line)
        if row is None:
            continue
        request, user, ts, history, entries = row
        if request in seen_requests:
            bad.report(behaviors, line_no, "duplicate impression_id", request)
            continue
        if not cap.admit(user):
            continue
        seen_requests.add(request)
        history_entries += len(history)
        if user not in first_history or ts < first_history[user][0]:
            first_history[user] = (ts, history)
        for pos, e in enumerate(entries):
            cols.append(ts=ts, user_id=user, room_id=int(e.group(1)), request_id=request, position=pos, click=int(e.group(2)))
    imp = cols.arrays()
    if not len(imp["ts"]):
        raise DataError("no valid impressions", table=str(behaviors))
    return _Behaviors(imp, history_entries, first_history)


def _parse_behaviors_line(behaviors: Path, bad: BadRows, line_no: int, line: str) -> tuple[int, int, int, list[str], list[re.Match]] | None:
    """(impression_id, user, ts, history, impression entries) of one row, or None after reporting it as bad."""
    if not line.strip():
        bad.report(behaviors, line_no, "empty line")
        return None
    f = line.split("\t")
    if len(f) != 5:
        bad.report(behaviors, line_no, f"expected 5 tab-separated fields, got {len(f)}", line[:80])
        return None
    request = parse_id(f[0])
    if request is None:
        reason = "impression_id is not an integer" if not f[0].strip().isdigit() else _TOO_BIG
        bad.report(behaviors, line_no, reason, f[0], column="impression_id")
        return None
    m = _USER.fullmatch(f[1].strip())
    if not m or parse_id(m.group(1)) is None:
        bad.report(behaviors, line_no, "user_id is not of the form U<digits>" if not m else _TOO_BIG, f[1], column="user_id")
        return None
    ts = _parse_time(f[2])
    if ts is None:
        bad.report(behaviors, line_no, "time is not 'M/D/YYYY h:mm:ss AM/PM'", f[2], column="time")
        return None
    if not time_in_range(ts):  # e.g. a date before 1970 would be a negative unix time
        bad.report(behaviors, line_no, f"time {TIME_RANGE}", f[2], column="time")
        return None
    history = f[3].split()
    if any(not _NEWS.fullmatch(h) for h in history):
        bad.report(behaviors, line_no, "history has an id not of the form N<digits>", next(h for h in history if not _NEWS.fullmatch(h)))
        return None
    entries = [_ENTRY.fullmatch(tok) for tok in f[4].split()]
    if not entries:
        bad.report(behaviors, line_no, "impressions list is empty")
        return None
    if not all(entries):
        bad.report(behaviors, line_no, "impression entry is not of the form N<digits>-<0|1>", next(t for t, e in zip(f[4].split(), entries) if not e), column="impressions")
        return None
    if any(parse_id(e.group(1)) is None for e in entries):
        bad.report(behaviors, line_no, _TOO_BIG, next(e.group(0) for e in entries if parse_id(e.group(1)) is None), column="impressions")
        return None
    return request, int(m.group(1)), ts, history, entries


def _read_news_of(path: Path, imp: dict[str, np.ndarray], hist: dict[str, np.ndarray] | None, bad: BadRows, progress: bool) -> dict[int, dict]:
    """news.tsv rows of the news in the impressions and the history clicks; none of them there is a DataError."""
    wanted = set(np.unique(imp["room_id"]).tolist()) | (set(np.unique(hist["slice_id"]).tolist()) if hist else set())
    news = _read_news(path, wanted, bad, progress)
    if not news:  # every title would be null: a wrong or truncated news.tsv
        raise DataError(f"none of the news in {BEHAVIORS_FILE} has a row here", table=str(path))
    return news


def _item_lifetimes(imp: dict[str, np.ndarray], hist: dict[str, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, start, end) of the items; history news are items too, live from their first synthetic click."""
    if hist:
        return item_lifetimes(np.concatenate([imp["room_id"], hist["slice_id"]]), np.concatenate([imp["ts"], hist["ts"]]))
    return item_lifetimes(imp["room_id"], imp["ts"])


@dataclasses.dataclass(frozen=True)
class _Written:
    """Row counts of the tables ``_write_users_queries_impressions`` wrote."""

    users: int
    queries: int
    impressions: int
    video_impressions: int


def _write_users_queries_impressions(
    tmp: Path, imp: dict[str, np.ndarray], hist: dict[str, np.ndarray] | None, item_ids: np.ndarray, records: list[dict | None], progress: bool
) -> _Written:
    """Write users, queries (title entities), impressions and the video feed (plus history clicks) into ``tmp``."""
    users = np.unique(imp["user_id"])
    write_table(tmp, "users", {"user_id": users})
    n_queries = write_queries(tmp, [(q, int(i)) for i, r in zip(item_ids, records) if r for q in r["entities"]])
    n_imp = write_impressions(tmp, imp, progress=progress)
    video = video_events_from_impressions(imp)
    if hist:
        video = _with_history(video, hist)
    n_video = write_video_impressions(tmp, video)
    return _Written(users=len(users), queries=n_queries, impressions=n_imp, video_impressions=n_video)


def _news_columns(records: list[dict | None]) -> tuple[dict[str, list], dict[str, np.ndarray], dict[str, list[str]]]:
    """(text columns, topic columns, topic names) of the items' news records (None: news missing from news.tsv).

    category -> topic_l1, subcategory -> topic_l2 (dense ids in sorted name order), l3/l4 = -1.
    """
    cats = sorted({r["category"] for r in records if r})
    subs = sorted({r["subcategory"] for r in records if r})
    cat_id = {c: k for k, c in enumerate(cats)}
    sub_id = {c: k for k, c in enumerate(subs)}
    texts = {
        "title": [r["title"] if r else None for r in records],
        "transcript": [r["abstract"] if r else None for r in records],
        "tags": [f"{r['category']} {r['subcategory']}" if r else None for r in records],
    }
    topics = {
        "topic_l1": np.array([cat_id[r["category"]] if r else -1 for r in records], np.int32),
        "topic_l2": np.array([sub_id[r["subcategory"]] if r else -1 for r in records], np.int32),
        "topic_l3": np.full(len(records), -1, np.int32),
        "topic_l4": np.full(len(records), -1, np.int32),
    }
    return texts, topics, {"topic_l1": cats, "topic_l2": subs}


#: Synthetic spacing of history clicks (MIND's history column has an order but no times).
HISTORY_STEP_MS = 60_000


def _history_events(first_history: dict[int, tuple[int, list[str]]], window_start: int) -> dict[str, np.ndarray] | None:
    """Each user's history clicks at ``window_start - (n - k) * HISTORY_STEP_MS`` (k-th of n, oldest first)."""
    users, items, ts = [], [], []
    for user, (_, history) in sorted(first_history.items()):
        n = len(history)
        for k, tok in enumerate(history):
            users.append(user)
            items.append(int(tok[1:]))  # validated as N<digits> when the row was read
            ts.append(window_start - (n - k) * HISTORY_STEP_MS)
    if not users:
        return None
    if min(ts) < 0:
        raise DataError("history too long to place before the log window (times before 1970)", table=BEHAVIORS_FILE, column="history")
    return {"ts": np.array(ts, np.int64), "user_id": np.array(users, np.int64), "slice_id": np.array(items, np.int64)}


def _with_history(video: dict[str, np.ndarray], hist: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feed's impression events plus the history clicks (label 1, watch ratio 1, request_id -1, position 0)."""
    n = len(hist["ts"])
    add = {
        "ts": hist["ts"], "user_id": hist["user_id"], "slice_id": hist["slice_id"],
        "watch_s": np.zeros(n, np.float32), "watch_ratio": np.ones(n, np.float32),
        "long_view": np.ones(n, np.int8), "like": np.zeros(n, np.int8),
        "request_id": np.full(n, -1, np.int64), "position": np.zeros(n, np.int32),
    }  # fmt: skip
    return {k: np.concatenate([v, add[k].astype(v.dtype)]) for k, v in video.items()}


def _read_news(path: Path, wanted: set[int], bad: BadRows, progress: bool) -> dict[int, dict]:
    """Parse news.tsv rows for the wanted news ids (all rows are still checked)."""
    news: dict[int, dict] = {}
    seen: set[int] = set()
    for line_no, line in read_lines(path, progress=progress):
        if not line.strip():
            bad.report(path, line_no, "empty line")
            continue
        f = line.split("\t")
        if len(f) != 8:
            bad.report(path, line_no, f"expected 8 tab-separated fields, got {len(f)}", line[:80])
            continue
        m = _NEWS.fullmatch(f[0].strip())
        if not m or parse_id(m.group(1)) is None:
            bad.report(path, line_no, "news_id is not of the form N<digits>" if not m else _TOO_BIG, f[0], column="news_id")
            continue
        if not f[1].strip():
            bad.report(path, line_no, "category is empty")
            continue
        try:
            ents = json.loads(f[6]) if f[6].strip() else []
            labels = [e["Label"] for e in ents if isinstance(e, dict) and isinstance(e.get("Label"), str) and e["Label"]]
        except (ValueError, TypeError, RecursionError):  # JSON errors; ints over 4300 digits; nesting too deep to parse
            bad.report(path, line_no, "title_entities is not a JSON list", f[6][:80], column="title_entities")
            continue
        nid = int(m.group(1))
        if nid in seen:
            bad.report(path, line_no, "duplicate news_id", f[0])
            continue
        seen.add(nid)
        if nid in wanted:
            uniq: list[str] = []
            for q in labels:
                if q not in uniq:
                    uniq.append(q)
            news[nid] = {
                "category": f[1].strip(),
                "subcategory": f[2].strip(),
                "title": f[3].strip(),
                "abstract": f[4].strip() or None,
                "entities": uniq[:3],
            }
    return news
