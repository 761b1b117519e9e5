"""Reading a dataset's video feed into an :class:`~fluidrec.sequence.events.EventLog`, and its summary.

Shape letters: E events, L code levels, n items with a code.

The feed is ``<dataset>/video_impressions.parquet`` (docs/CONTRACTS.md): written by the
synthetic world's video feed (``WorldConfig.video_feed``) and by the MicroLens and MIND
importers. Codes come from one of three places:

- ``codes_dir``: ``<codes_dir>/slice_codes.parquet`` of the main codes stage (item = slice_id);
- ``true_codes=True``: the world's true topic path, through ``fluidrec.codes.oracle`` (the same
  child-index codes the main job's true-topic yardstick uses, so one representation);
- neither: every code is -1 (an ID-only log), ``codebook_size`` 1.

Items missing from the code file get -1 codes.

Example:
    >>> log = load_event_log(Path("runs/world"), Path("runs/codes"), test_days=1)
    >>> event_log_summary(log)["events_per_user_median"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fluidrec.data.schema import TOPIC_COLUMNS, VIDEO_LABELS
from fluidrec.errors import DataError
from fluidrec.sequence.events import UNKNOWN_CODE, EventLog

TABLE = "video_impressions"
SLICE_CODES_FILE = "slice_codes.parquet"
DAY_MS = 86_400_000
DEFAULT_LEVELS = len(TOPIC_COLUMNS)  # the code depth of an ID-only log (all -1)


def _item_codes(dataset_dir: Path, codes_dir: Path | None, true_codes: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(ids (n,), codes (n, L) int64, codebook size) from the chosen source (module docstring)."""
    if true_codes:
        return _true_codes(dataset_dir)
    if codes_dir is None:
        return np.zeros(0, np.int64), np.zeros((0, DEFAULT_LEVELS), np.int64), 1
    from fluidrec.codes.io import MAX_CODEBOOK_SIZE, codebook_size_of, read_codes

    path = codes_dir / SLICE_CODES_FILE
    ids, codes = read_codes(path)
    k = codebook_size_of(path)
    if k is None:  # a file that does not say its K: the codes it holds bound it
        k = int(codes.max()) + 1 if codes.size else 1
        if k > MAX_CODEBOOK_SIZE:
            raise DataError(f"code {k - 1} above the largest codebook fluidrec reads ({MAX_CODEBOOK_SIZE})", table=str(path))
    return ids, codes.astype(np.int64), max(int(k), 1)


def _true_codes(dataset_dir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """True-topic codes via ``fluidrec.codes.oracle.child_codes`` (the main job's representation).

    Same codes as ``oracle_codes``, but only the id and topic columns of ``slices`` are read
    (``oracle_codes`` lists the schema by loading the whole table, frames included: 4 s at
    ``small``).
    """
    from fluidrec.codes.oracle import child_codes
    from fluidrec.data.io import Dataset, open_parquet

    ds = Dataset(dataset_dir)
    path = ds.path("slices")
    names = open_parquet(path).schema_arrow.names
    for col in TOPIC_COLUMNS:
        if col not in names:
            raise DataError("missing ground-truth topic column (true_codes needs the topic path)", table=str(path), column=col)
    sl = ds.table("slices", ["slice_id", *TOPIC_COLUMNS])
    ids = sl.column("slice_id").to_numpy().astype(np.int64)
    topics = np.stack([sl.column(c).to_numpy().astype(np.int64) for c in TOPIC_COLUMNS], axis=1)  # (n, L)
    known = topics[:, 0] >= 0
    if not known.any():
        raise DataError("no ground-truth topics (every value is -1)", table=str(path), column=TOPIC_COLUMNS[0])
    codes, n = child_codes(topics[known], ds.manifest.get("world_config", {}).get("branching"), source=str(path))
    return ids[known], codes.astype(np.int64), int(n)


def _lookup_codes(item_raw: np.ndarray, ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(n_items, L) codes of each raw item id; -1 rows for items the code file lacks."""
    out = np.full((len(item_raw), codes.shape[1]), UNKNOWN_CODE, dtype=np.int64)
    if len(ids):
        order = np.argsort(ids, kind="stable")
        pos = np.minimum(np.searchsorted(ids[order], item_raw), len(ids) - 1)
        hit = ids[order][pos] == item_raw
        out[hit] = codes[order[pos[hit]]]
    return out


SPLIT_KINDS = ("auto", "time", "last")


def _split_last(user: np.ndarray, ts: np.ndarray, path: str) -> np.ndarray:
    """is_test: each user's events at the user's last ts (leave-last-out; events sorted by (user, ts))."""
    last = np.r_[user[1:] != user[:-1], True]  # (E,) the last event of each user
    user_last_ts = ts[last][np.cumsum(np.r_[0, last[:-1]])]  # (E,) that user's last ts, per event
    is_test = ts == user_last_ts
    if is_test.all():
        raise DataError("leave-last-out leaves no training event (every user has a single timestamp)", table=path, column="ts")
    return is_test


def _split(ts: np.ndarray, test_days: float, path: str) -> np.ndarray:
    """is_test: ts > last ts - test_days days (the ranker's rule, ``ranker.features``)."""
    if isinstance(test_days, bool) or not isinstance(test_days, (int, float, np.integer, np.floating)) or not test_days > 0:
        raise DataError("test_days must be a number > 0", table=path, column="test_days", value=test_days)
    is_test = ts > int(ts.max()) - int(test_days * DAY_MS)
    if is_test.all() or not is_test.any():
        span = (int(ts.max()) - int(ts.min())) / DAY_MS
        raise DataError(
            f"time split leaves {int((~is_test).sum())} train and {int(is_test.sum())} test events "
            f"(the feed spans {span:.2f} days); choose a smaller test_days",
            table=path, column="ts", value=test_days,
        )  # fmt: skip
    return is_test


def load_event_log(
    dataset_dir: Path,
    codes_dir: Path | None,
    test_days: float = 1,
    *,
    true_codes: bool = False,
    label: str = "long_view",
    split: str = "auto",
) -> EventLog:
    """Read ``<dataset_dir>/video_impressions.parquet`` into an :class:`EventLog`.

    Args:
        dataset_dir: canonical dataset with ``video_impressions.parquet``.
        codes_dir: directory with ``slice_codes.parquet`` (item = slice_id); None = no codes
            (all -1, codebook size 1) unless ``true_codes``.
        test_days: the last ``test_days`` days are the test split.
        true_codes: codes from the true topic path instead of ``codes_dir``.
        label: which 0/1 column is the label (``VIDEO_LABELS``).
        split: "time" (the last ``test_days``), "last" (each user's last timestamp: leave-last-out),
            or "auto": "last" for datasets whose times are synthesised from order
            (``manifest["time_kind"] == "sequence_index"``, MicroLens), else "time".

    Raises:
        DataError: missing table or column, a split with no train or no test events, bad codes.
    """
    from fluidrec.data.io import Dataset

    dataset_dir, codes_dir = Path(dataset_dir), None if codes_dir is None else Path(codes_dir)
    if label not in VIDEO_LABELS:
        raise DataError(f"label must be one of {VIDEO_LABELS}", table=TABLE, column="label", value=label)
    if true_codes and codes_dir is not None:
        raise DataError("give codes_dir or true_codes, not both", table=str(codes_dir), column="true_codes")
    if split not in SPLIT_KINDS:
        raise DataError(f"split must be one of {SPLIT_KINDS}", table=TABLE, column="split", value=split)
    ds = Dataset(dataset_dir)
    path = str(ds.path(TABLE))
    if split == "auto":
        split = "last" if ds.manifest.get("time_kind") == "sequence_index" else "time"
    t = ds.table(TABLE, ["ts", "user_id", "slice_id", "watch_ratio", label])
    ids, codes, k = _item_codes(dataset_dir, codes_dir, true_codes)
    return build_event_log(
        ts=t.column("ts").to_numpy(),
        user_id=t.column("user_id").to_numpy(),
        item_id=t.column("slice_id").to_numpy(),
        watch_ratio=t.column("watch_ratio").to_numpy(),
        label=t.column(label).to_numpy(),
        code_ids=ids,
        codes=codes,
        codebook_size=k,
        test_days=test_days,
        split=split,
        source=path,
    )


def build_event_log(
    *,
    ts: np.ndarray,
    user_id: np.ndarray,
    item_id: np.ndarray,
    watch_ratio: np.ndarray,
    label: np.ndarray,
    code_ids: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    codebook_size: int = 1,
    test_days: float = 1,
    split: str = "time",
    source: str = "events",
) -> EventLog:
    """An EventLog from raw per-event arrays in any order: sorts by (user, ts), re-indexes, splits, marks cold.

    Args:
        ts, user_id, item_id, watch_ratio, label: (E,) raw event columns (raw ids, unix ms).
        code_ids: (n,) raw item ids that have codes; codes: (n, L) their codes (None: all -1, L = 4).
        codebook_size: N of the codes.
        test_days: the last ``test_days`` days are the test split (``split="time"``).
        split: "time" or "last" (each user's last timestamp is the test split).
        source: name for error messages.

    Example:
        >>> log = build_event_log(ts=ts, user_id=u, item_id=i, watch_ratio=w, label=y)
    """
    ts = np.asarray(ts).astype(np.int64)
    if ts.size == 0:
        raise DataError("the video feed has no events", table=source)
    user_raw = np.asarray(user_id).astype(np.int64)
    order = np.lexsort((ts, user_raw))  # (user, ts); stable, so ties keep the input order
    ts, user_raw = ts[order], user_raw[order]
    _, user = np.unique(user_raw, return_inverse=True)
    item_raw, item = np.unique(np.asarray(item_id).astype(np.int64)[order], return_inverse=True)
    user, item = user.reshape(-1).astype(np.int64), item.reshape(-1).astype(np.int64)  # flat (N,) int64 arrays
    if codes is None:
        code_ids, codes = np.zeros(0, np.int64), np.zeros((0, DEFAULT_LEVELS), np.int64)
    if split not in ("time", "last"):
        raise DataError("split must be 'time' or 'last'", table=source, column="split", value=split)
    is_test = _split(ts, test_days, source) if split == "time" else _split_last(user, ts, source)
    seen = np.zeros(len(item_raw), dtype=bool)
    seen[item[~is_test]] = True
    return EventLog(
        user=user,
        item=item,
        ts=ts,
        watch_ratio=np.asarray(watch_ratio).astype(np.float32)[order],
        label=np.asarray(label).astype(np.int8)[order],
        codes=_lookup_codes(item_raw, np.asarray(code_ids, np.int64), np.asarray(codes, np.int64))[item],  # (E, L)
        is_test=is_test,
        cold=is_test & ~seen[item],
        item_raw=item_raw.astype(np.int64),
        codebook_size=int(codebook_size),
        n_users=int(user.max()) + 1,
        n_items=int(len(item_raw)),
    )


def event_log_summary(log: EventLog) -> dict[str, Any]:
    """Figures a report prints beside the sequence results (every value a Python int or float).

    Keys: events, users, items, events_per_user_mean / _median / _p90 / _max, test_events,
    test_share, cold_share_of_test (test events whose item no training event has),
    cold_items_test (distinct such items), label_rate, label_rate_train / _test,
    watch_ratio_mean, code_levels, codebook_size, coded_share (events with a known level-1 code),
    span_days.

    Example:
        >>> s = event_log_summary(log); s["events_per_user_median"], s["cold_share_of_test"]
    """
    per_user = np.bincount(log.user, minlength=log.n_users)
    test = log.is_test

    def rate(mask: np.ndarray) -> float:
        return float(log.label[mask].mean()) if mask.any() else float("nan")

    return {
        "events": len(log),
        "users": log.n_users,
        "items": log.n_items,
        "events_per_user_mean": float(per_user.mean()),
        "events_per_user_median": float(np.median(per_user)),
        "events_per_user_p90": float(np.percentile(per_user, 90)),
        "events_per_user_max": int(per_user.max()),
        "test_events": int(test.sum()),
        "test_share": float(test.mean()),
        "cold_share_of_test": float(log.cold[test].mean()) if test.any() else float("nan"),
        "cold_items_test": int(len(np.unique(log.item[log.cold]))),
        "label_rate": rate(np.ones(len(log), bool)),
        "label_rate_train": rate(~test),
        "label_rate_test": rate(test),
        "watch_ratio_mean": float(log.watch_ratio.mean()),
        "code_levels": log.levels,
        "codebook_size": log.codebook_size,
        "coded_share": float((log.codes[:, 0] >= 0).mean()),
        "span_days": float((int(log.ts.max()) - int(log.ts.min())) / DAY_MS),
    }


TRUTH_FILE = "world/video_truth.parquet"  # fluidrec.data.world.video_feed.TRUTH_FILE under world/


def read_feed_truth(dataset_dir: Path, log: EventLog) -> dict[str, np.ndarray] | None:
    """The world's per-event truth (``p_long_view``, ``p_long_view_no_id``) in the log's (user, ts) order.

    None when the dataset has no truth file (imported data). The table is re-sorted exactly as
    ``build_event_log`` sorts it, so row i of the result belongs to event i of ``log``.

    Example:
        >>> truth = read_feed_truth(Path("runs/world"), log); truth["p_long_view"].shape   # (E,)
    """
    from fluidrec.data.io import Dataset, read_parquet

    path = Path(dataset_dir) / TRUTH_FILE
    if not path.is_file():
        return None
    t = Dataset(dataset_dir).table(TABLE, ["ts", "user_id"])
    truth = read_parquet(path, ["p_long_view", "p_long_view_no_id"])
    if truth.num_rows != t.num_rows or t.num_rows != len(log):
        raise DataError(f"has {truth.num_rows} rows, the feed {t.num_rows} and the log {len(log)}", table=str(path))
    order = np.lexsort((t.column("ts").to_numpy().astype(np.int64), t.column("user_id").to_numpy().astype(np.int64)))
    return {c: truth.column(c).to_numpy().astype(np.float64)[order] for c in truth.column_names}


def truth_yardsticks(log: EventLog, truth: dict[str, np.ndarray]) -> dict[str, float]:
    """AUC / GAUC (by user) / cold AUC of the oracle and of the ID-free ceiling on the test split.

    Example:
        >>> truth_yardsticks(log, read_feed_truth(dataset_dir, log))["oracle_auc"]
    """
    from fluidrec.metrics.auc import auc
    from fluidrec.metrics.gauc import gauc

    test, cold = log.is_test, log.is_test & log.cold
    out: dict[str, float] = {}
    for name, key in (("oracle", "p_long_view"), ("no_id_ceiling", "p_long_view_no_id")):
        p = truth[key]
        out[f"{name}_auc"] = float(auc(log.label[test], p[test]))
        out[f"{name}_gauc"] = float(gauc(log.user[test], log.label[test], p[test]))
        out[f"{name}_cold_auc"] = float(auc(log.label[cold], p[cold])) if cold.any() else float("nan")
    return out


def summary_line(summary: dict[str, Any]) -> str:
    """One readable line of :func:`event_log_summary` (printed when a feed is generated or loaded)."""
    s = summary
    return (
        f"video feed: {s['events']:,} events, {s['users']:,} users, {s['items']:,} items; "
        f"events/user mean {s['events_per_user_mean']:.0f} median {s['events_per_user_median']:.0f} max {s['events_per_user_max']}; "
        f"test {s['test_share']:.1%} of events, cold {s['cold_share_of_test']:.1%} of test; label rate {s['label_rate']:.3f}"
    )
