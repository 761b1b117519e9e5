"""Import MicroLens-50k (interaction sequences + item titles) as a canonical dataset.

Source layout (as published; both files CRLF):

- ``MicroLens-50k_pairs.tsv``: one line per user, ``user_id<TAB>item item ...``,
  items in chronological order (oldest first), no timestamps, no negatives.
- ``MicroLens-50k_titles.csv``: header ``item,title``, quoted CSV.

Mapping:

- **Time** is synthesised from order: the j-th item of a user's sequence (j = 0,
  1, ...) happens at ``ts = j * step_ms`` (default one pseudo-minute). Users are
  not aligned in real time (there is no information to align them), so "time"
  means "position in the user's own history"; the manifest says
  ``time_kind = "sequence_index"`` and benchmarks should split leave-last-out.
- **Items** become one-slice rooms (room_id = slice_id = item id) that go live at
  their first interaction (earliest pseudo-time over all users) and end at their
  last; the title is the slice title (null when the titles file lacks the item; a
  titles file that is empty or has none of the items is an error).
- **Ids** must be integers in [0, 2^63): a negative id is refused (-1 is ``NO_ROOM``, and
  negative items could never be sampled as negatives). ``step_ms`` times the longest
  sequence must stay before 2200-01-01 (unix ms).
- **Impressions**: every sequence entry is a positive (click = 1; other labels 0,
  watch_s 0); ``--negatives K`` adds K sampled negatives per positive from the
  items live at that pseudo-time. request_id = index of the positive.
- **Authors**: one placeholder author (MicroLens-50k ships no creator ids here).
- **Video feed** (``video_impressions``, for ``fluidrec.sequence``): the same rows as the
  impressions (positives and sampled negatives, at the same pseudo-times), ``long_view`` =
  click, ``watch_ratio`` 1.0 for a positive and 0.0 for a negative (the source has no watch
  time). Split it leave-last-out (``load_event_log(..., split="last")``, the default for
  ``time_kind = "sequence_index"``).
- **Queries**: the title's inline hashtags (``# funny # unexpected ending``), up to 3 per item.

Example:
    >>> summary = import_microlens("shared/data/microlens_50k", "runs/ml50k", ImportOptions(negatives=4))
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from fluidrec.data.importers.common import (
    complete_one_slice_columns,
    TIME_SEQUENCE,
    BadRows,
    Columns,
    ImportOptions,
    ImportSummary,
    UserCap,
    finish,
    hashtag_queries,
    import_counts,
    item_lifetimes,
    parse_id,
    parse_int,
    prepare_out,
    read_csv_rows,
    read_lines,
    video_events_from_impressions,
    write_impressions,
    write_one_slice_items,
    write_queries,
    write_video_impressions,
)
from fluidrec.data.importers.negatives import add_sampled_negatives
from fluidrec.data.io import DatasetWriter, write_table
from fluidrec.data.schema import LABELS_BINARY
from fluidrec.data.validate import TIME_MAX_MS
from fluidrec.errors import DataError, UsageError, check

PAIRS_FILE = "MicroLens-50k_pairs.tsv"
TITLES_FILE = "MicroLens-50k_titles.csv"
STEP_MS = 60_000


def _find(root: Path, name: str, override: str | None) -> Path:
    p = Path(override) if override else root / name
    if not p.is_file():
        raise DataError(f"MicroLens file not found (expected {name} in --path)", table=str(p))
    return p


def import_microlens(
    path: str | os.PathLike,
    out: str | os.PathLike,
    options: ImportOptions = ImportOptions(),
    *,
    pairs_file: str | None = None,
    titles_file: str | None = None,
    step_ms: int = STEP_MS,
) -> ImportSummary:
    """Import MicroLens-50k from directory ``path`` into the canonical dataset ``out``.

    Args:
        path: directory holding the pairs TSV and titles CSV.
        out: output dataset directory.
        options: seed, negatives, skip_bad_rows, max_users, progress.
        pairs_file, titles_file: explicit file paths (default: the published names in ``path``).
        step_ms: pseudo-time between consecutive items of one user.

    Returns:
        ImportSummary (also stored in the manifest).

    Example:
        >>> import_microlens("microlens_50k", "out", ImportOptions(max_users=2000, negatives=1))
    """
    check(0 < step_ms < TIME_MAX_MS, f"step_ms must be in [1, {TIME_MAX_MS}) (pseudo-times are unix ms before 2200), got {step_ms}")
    started = time.perf_counter()
    root = Path(path)
    pairs_path = _find(root, PAIRS_FILE, pairs_file)
    titles_path = _find(root, TITLES_FILE, titles_file)
    out = prepare_out(out)
    bad = BadRows(options.skip_bad_rows)
    imp = _read_pairs(pairs_path, bad, UserCap(options.max_users), step_ms, options.progress)

    item_ids, start, end = item_lifetimes(imp["room_id"], imp["ts"])
    titles = _read_titles(titles_path, set(item_ids.tolist()), bad, options.progress)
    if not titles:  # every title would be null: a wrong or truncated titles file
        raise DataError(f"none of the {len(item_ids)} items in {pairs_path.name} has a title here", table=str(titles_path))

    n = len(imp["ts"])
    complete_one_slice_columns(imp, request_per_row=True, all_clicks=True)
    imp, n_sampled = add_sampled_negatives(imp, item_ids, start, end, options)

    title_col = [titles.get(int(i)) for i in item_ids]
    with DatasetWriter(out) as tmp:  # the tables appear under `out` together, once validated
        write_one_slice_items(tmp, item_ids=item_ids, start=start, end=end, texts={"title": title_col})
        users = np.unique(imp["user_id"])
        write_table(tmp, "users", {"user_id": users})
        queries = [(q, int(i)) for i, t in zip(item_ids, title_col) for q in hashtag_queries(t)]
        n_queries = write_queries(tmp, queries)
        n_imp = write_impressions(tmp, imp, progress=options.progress)
        # The same sequences as the sequence models' feed: positives and sampled negatives, pseudo-times.
        n_video = write_video_impressions(tmp, video_events_from_impressions(imp))

        missing = sum(t is None for t in title_col)
        summary = finish(
            tmp,
            source="microlens",
            options=options,
            config={"path": str(root), "pairs_file": str(pairs_path), "titles_file": str(titles_path), "step_ms": step_ms},
            counts=import_counts(
                users=len(users), items=len(item_ids), impressions=n_imp,
                positives=n, logged_negatives=0, sampled_negatives=n_sampled,
            ),  # fmt: skip
            bad=bad,
            notes={"items_without_title": missing, "queries": n_queries, "video_impressions": n_video},
            time_kind=TIME_SEQUENCE,
            started=started,
            extra={"time_step_ms": step_ms},
        )
    summary.out = str(out)
    return summary


def _read_pairs(pairs_path: Path, bad: BadRows, cap: UserCap, step_ms: int, progress: bool) -> dict[str, np.ndarray]:
    """(ts, user_id, room_id) columns of the pairs file: user u's j-th item at pseudo-time ``j * step_ms``."""
    cols = Columns({"ts": np.int64, "user_id": np.int64, "room_id": np.int64})
    seen_users: set[int] = set()
    for line_no, line in read_lines(pairs_path, progress=progress):
        if cap.full:
            break  # one line per user: nothing more to keep
        row = _parse_pairs_line(pairs_path, bad, line_no, line, step_ms)
        if row is None:
            continue
        user, items = row
        if user in seen_users:
            bad.report(pairs_path, line_no, "user appears on more than one line", user)
            continue
        seen_users.add(user)
        cap.admit(user)
        for j, item in enumerate(items):
            cols.append(ts=j * step_ms, user_id=user, room_id=item)
    imp = cols.arrays()
    if not len(imp["ts"]):
        raise DataError("no valid interactions", table=str(pairs_path))
    return imp


def _parse_pairs_line(pairs_path: Path, bad: BadRows, line_no: int, line: str, step_ms: int) -> tuple[int, list[int]] | None:
    """(user, items) of one ``user<TAB>item item ...`` line, or None after reporting it as bad."""
    if not line.strip():
        bad.report(pairs_path, line_no, "empty line")
        return None
    parts = line.split("\t")
    if len(parts) != 2:
        bad.report(pairs_path, line_no, f"expected 2 tab-separated fields (user, items), got {len(parts)}", line[:80])
        return None
    user = parse_id(parts[0])
    if user is None:
        bad.report(pairs_path, line_no, _id_reason("user", parts[0]), parts[0], column="user")
        return None
    items = [parse_id(tok) for tok in parts[1].split()]
    if not items:
        bad.report(pairs_path, line_no, "user has no items", line[:80])
        return None
    if any(i is None for i in items):
        tok = next(t for t in parts[1].split() if parse_id(t) is None)
        bad.report(pairs_path, line_no, _id_reason("item", tok), tok, column="items")
        return None
    if (len(items) - 1) * step_ms >= TIME_MAX_MS:  # the pseudo-times would leave the time range (and int64)
        raise UsageError(
            f"{pairs_path}: line {line_no}: {len(items)} items x --step-ms {step_ms} puts pseudo-times past "
            f"2200-01-01 (unix ms {TIME_MAX_MS}); use a smaller --step-ms"
        )
    return user, items


def _id_reason(what: str, token: str) -> str:
    """Why ``token`` is not an id: not an integer, negative, or too big for int64."""
    value = parse_int(token)
    if value is None:
        return f"{what} id is not an integer"
    if value < 0:
        return f"{what} id is negative (ids are >= 0; -1 means 'no room')"
    return f"{what} id does not fit int64 (at most 2^63 - 1)"


def _read_titles(path: Path, wanted: set[int], bad: BadRows, progress: bool) -> dict[int, str]:
    """Read ``item,title`` rows (header required) for the wanted items."""
    titles: dict[int, str] = {}
    seen: set[int] = set()
    for line_no, fields in read_csv_rows(path, progress=progress):
        if line_no == 1:
            if [f.strip().lower() for f in fields] != ["item", "title"]:
                raise DataError(f"line 1: expected header 'item,title', got {','.join(fields)[:80]!r}", table=str(path))
            continue
        if not fields or fields == [""]:
            bad.report(path, line_no, "empty line")
            continue
        if len(fields) != 2:
            bad.report(path, line_no, f"expected 2 fields (item, title), got {len(fields)}", ",".join(fields)[:80])
            continue
        item = parse_id(fields[0])
        if item is None:
            bad.report(path, line_no, _id_reason("item", fields[0]), fields[0], column="item")
            continue
        if item in seen:
            bad.report(path, line_no, "duplicate item id", item)
            continue
        seen.add(item)
        if item in wanted:
            titles[item] = fields[1].strip()
    return titles
