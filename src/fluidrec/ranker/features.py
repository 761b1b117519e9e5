"""Per-impression feature arrays, built once per (dataset, codes) and shared by every arm.

Everything is causal: an impression sees only its own slice (which must have started by
then), the room code vote over slices so far (computed by ``fluidrec.codes``), the room's
exposure count before it, and the user's clicks strictly earlier in time.

Shape letters: N impressions, K history length, L code levels, P profile columns.

Example:
    >>> cfg = FeatureConfig(history_len=8)
    >>> feats = load_or_build_features("data/tiny", "codes/slice_codes.parquet",
    ...                                "codes/room_codes.parquet", cfg, cache_dir="cache")
    >>> batch = feats.batch(slice(0, 1024))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from fluidrec.data.io import Dataset
from fluidrec.data.schema import LABELS_BINARY, USER_PROFILE_COLUMNS
from fluidrec.errors import DataError, check
from fluidrec.codes.ngram import hash_ids
from fluidrec.ranker.batching import MAX_POSITION, PROFILE_VOCAB, Batch, age_bucket
from fluidrec.utils.io import atomic_path
from fluidrec.utils.lookup import sorted_lookup

DAY_MS = 86_400_000
FEATURES_VERSION = 2  # 2: default history of 64 clicks


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How impressions become features and how the stream splits into train and test.

    Args:
        history_len: K, last clicks kept per user.
        user_buckets: rows of the hashed user-ID table.
        author_buckets: rows of the hashed author-ID table.
        test_days: the last ``test_days`` of the stream are the test set (default: last day).
        test_fraction: if set, the last fraction of impressions is the test set instead.
    """

    history_len: int = 64
    user_buckets: int = 1 << 16
    author_buckets: int = 1 << 14
    test_days: float = 1.0
    test_fraction: float | None = None

    def __post_init__(self) -> None:
        check(1 <= self.history_len <= 256, f"history_len must be in [1, 256], got {self.history_len}")
        check(self.user_buckets >= 1, f"user_buckets must be >= 1, got {self.user_buckets}")
        check(self.author_buckets >= 1, f"author_buckets must be >= 1, got {self.author_buckets}")
        check(self.test_days > 0, f"test_days must be > 0, got {self.test_days}")
        check(
            self.test_fraction is None or 0.0 < self.test_fraction < 1.0,
            f"test_fraction must be in (0, 1), got {self.test_fraction}",
        )


# Arrays with one row per impression (N leading dim); the rest of Features is metadata.
_ROW_ARRAYS = (
    "ts", "user_id", "room_id", "user", "profile", "hour", "position", "age_bucket", "age_min",
    "exposure", "author", "item", "slice_codes", "room_codes", "hist_rows", "labels", "seen",
)  # fmt: skip


@dataclasses.dataclass
class Features:
    """Feature arrays for every impression, in time order, plus the train/test split.

    Attributes (N rows unless noted):
        ts, user_id, room_id: raw keys (int64).
        user, author: hashed table indices; item: room index into ``room_vocab`` + 1 (0 = unknown).
        profile: (N, P); hour, position, age_bucket: context ints; age_min: float32 minutes.
        exposure: impressions of this room strictly before this one.
        slice_codes, room_codes: (N, L) int32.
        hist_rows: (N, K) int32 rows of the user's last K clicks strictly earlier in time, -1 pad.
        labels: (N, 5) int8 in LABELS_BINARY order.
        seen: bool, the room appears in the training rows.
        room_vocab: (R,) sorted room ids of the rooms table (the item-ID vocabulary).
        n_train: rows [0, n_train) train, [n_train, N) test.
        num_codes: codebook size per level (max code + 1).
    """

    ts: np.ndarray
    user_id: np.ndarray
    room_id: np.ndarray
    user: np.ndarray
    profile: np.ndarray
    hour: np.ndarray
    position: np.ndarray
    age_bucket: np.ndarray
    age_min: np.ndarray
    exposure: np.ndarray
    author: np.ndarray
    item: np.ndarray
    slice_codes: np.ndarray
    room_codes: np.ndarray
    hist_rows: np.ndarray
    labels: np.ndarray
    seen: np.ndarray
    room_vocab: np.ndarray
    n_train: int
    num_codes: int
    config: FeatureConfig

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def levels(self) -> int:
        return int(self.slice_codes.shape[1])

    def batch(self, rows: slice | np.ndarray, share_histories: bool = True) -> Batch:
        """A Batch of the given rows (a slice is zero-copy apart from the history gather).

        Args:
            rows: which impressions.
            share_histories: store each run of consecutive rows with the same history once
                (``Batch.hist_group``). The rows of one request (same user and ts) are adjacent in
                the time-sorted stream and have the same history, so a slate of ~6 rooms embeds
                its user's K clicks once. False: one history per row (same model outputs).
        """
        hist = self.hist_rows[rows]  # (B, K)
        group = None
        if share_histories and len(hist) > 1:
            starts = np.r_[True, (hist[1:] != hist[:-1]).any(1)]  # (B,) row opens a new history
            if not starts.all():
                group = np.cumsum(starts) - 1  # (B,) index into the H distinct histories
                hist = hist[starts]  # (H, K)
        mask = hist >= 0
        hist_codes = self.slice_codes[np.where(mask, hist, 0)]  # (H, K, L)
        arrays = {
            "user": self.user[rows],
            "profile": self.profile[rows].astype(np.int64),
            "hour": self.hour[rows].astype(np.int64),
            "position": self.position[rows].astype(np.int64),
            "age_bucket": self.age_bucket[rows].astype(np.int64),
            "age_min": self.age_min[rows],
            "exposure": self.exposure[rows].astype(np.float32),
            "author": self.author[rows],
            "item": self.item[rows],
            "slice_codes": self.slice_codes[rows].astype(np.int64),
            "room_codes": self.room_codes[rows].astype(np.int64),
            "hist_codes": hist_codes.astype(np.int64),
            "hist_mask": mask,
        }
        if group is not None:
            arrays["hist_group"] = group.astype(np.int64)
        return Batch.from_numpy(arrays, self.labels[rows])

    def save(self, path: str | os.PathLike) -> Path:
        """Write all arrays to one .npz atomically."""
        meta = {
            "n_train": self.n_train,
            "num_codes": self.num_codes,
            "config": dataclasses.asdict(self.config),
            "version": FEATURES_VERSION,
        }
        arrays = {k: getattr(self, k) for k in (*_ROW_ARRAYS, "room_vocab")}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Features:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("version") != FEATURES_VERSION:
                raise DataError("feature cache has another version; delete it", table=str(path))
            arrays = {k: z[k] for k in (*_ROW_ARRAYS, "room_vocab")}
        return cls(
            **arrays, n_train=int(meta["n_train"]), num_codes=int(meta["num_codes"]),
            config=FeatureConfig(**meta["config"]),
        )  # fmt: skip


def read_slice_codes(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Slice codes file -> (slice_ids (n,), codes (n, L)). Format: docs/CONTRACTS.md."""
    from fluidrec.codes.io import read_codes

    return read_codes(path)


def read_room_code_rows(path: str | os.PathLike) -> np.ndarray:
    """Room codes file -> codes (n_impressions, L), one row per impression in order."""
    from fluidrec.codes.io import read_room_codes

    return read_room_codes(path)


def _last_k_before(group: np.ndarray, ts: np.ndarray, event: np.ndarray, k: int) -> np.ndarray:
    """For each row, the rows of the group's last ``k`` events with strictly smaller ts (-1 pad).

    Vectorised: sort by (group, ts); the events before row i are the events before the
    first row of i's (group, ts) run; count them with a cumulative sum.
    """
    n = len(group)
    order = np.lexsort((ts, group))  # stable, time order within group
    g, t, e = group[order], ts[order], event[order]
    run_start = np.r_[True, (g[1:] != g[:-1]) | (t[1:] != t[:-1])]
    first_of_run = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
    group_start = np.r_[True, g[1:] != g[:-1]]
    first_of_group = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    cum = np.r_[0, np.cumsum(e)]  # cum[j] = events among sorted rows [0, j)
    before = cum[first_of_run]  # events strictly earlier than the row's ts (any group)
    floor = cum[first_of_group]  # events of earlier groups
    event_pos = np.flatnonzero(e)  # sorted positions of events
    out_sorted = np.full((n, k), -1, dtype=np.int64)
    for j in range(k):  # j = 0 is the most recent
        idx = before - 1 - j
        ok = idx >= floor
        out_sorted[ok, j] = order[event_pos[idx[ok]]]
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out.astype(np.int32)


def _count_before(group: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Rows of the same group with strictly smaller ts."""
    n = len(group)
    order = np.lexsort((ts, group))
    g, t = group[order], ts[order]
    run_start = np.r_[True, (g[1:] != g[:-1]) | (t[1:] != t[:-1])]
    first_of_run = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
    group_start = np.r_[True, g[1:] != g[:-1]]
    first_of_group = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    out = np.empty(n, dtype=np.int64)
    out[order] = first_of_run - first_of_group
    return out


def build_features(
    dataset_dir: str | os.PathLike,
    codes_path: str | os.PathLike,
    room_codes_path: str | os.PathLike,
    cfg: FeatureConfig | None = None,
) -> Features:
    """Build the per-impression features of a canonical dataset.

    Args:
        dataset_dir: canonical dataset (impressions sorted by ts; rooms; users optional).
        codes_path: slice codes Parquet (slice_id, c1..cL).
        room_codes_path: room codes Parquet (row, room_id, r1..rL), one row per impression.
        cfg: feature and split settings.

    Raises:
        DataError: codes and dataset do not match (missing slice, wrong row count, levels differ),
            an impression names an unknown room, or a slice starts after its impression.
    """
    cfg = cfg or FeatureConfig()
    ds = Dataset(dataset_dir)
    imp = _read_impressions(ds)
    ts, user_id, room_id = imp.ts, imp.user_id, imp.room_id
    rooms = _look_up_rooms(ds, imp)
    age_min = ((ts - rooms.start[rooms.pos]) / 60_000.0).astype(np.float32)
    profile = _user_profiles(ds, user_id)
    _check_slices_started(ds, imp)
    codes = _read_codes(codes_path, room_codes_path, imp.slice_id)
    n_train = _train_rows(ts, cfg, imp.path)
    seen = np.isin(room_id, np.unique(room_id[:n_train]))

    return Features(
        ts=ts,
        user_id=user_id,
        room_id=room_id,
        user=hash_ids(user_id, cfg.user_buckets),
        profile=profile,
        hour=((ts // 3_600_000) % 24).astype(np.int8),
        position=np.clip(imp.position, 0, MAX_POSITION).astype(np.int8),
        age_bucket=age_bucket(age_min).astype(np.int8),
        age_min=age_min,
        exposure=_count_before(room_id, ts).astype(np.int32),
        author=hash_ids(rooms.author[rooms.pos], cfg.author_buckets),
        item=(rooms.pos + 1).astype(np.int64),
        slice_codes=codes.slice_codes,
        room_codes=codes.room_codes,
        hist_rows=_last_k_before(user_id, ts, imp.labels[:, 0].astype(np.int64), cfg.history_len),
        labels=imp.labels,
        seen=seen,
        room_vocab=rooms.vocab,
        n_train=n_train,
        num_codes=codes.num_codes,
        config=cfg,
    )


@dataclasses.dataclass(frozen=True)
class _Impressions:
    """The impression columns the features are built from (N rows, time order)."""

    path: str  # the impressions file, for error messages
    ts: np.ndarray  # (N,) int64
    user_id: np.ndarray  # (N,) int64
    room_id: np.ndarray  # (N,) int64
    slice_id: np.ndarray  # (N,) int64
    position: np.ndarray  # (N,) int64, 0 without a position column
    labels: np.ndarray  # (N, 5) int8 in LABELS_BINARY order


def _read_impressions(ds: Dataset) -> _Impressions:
    """Read the impressions; an empty table or one not sorted by ts is a DataError."""
    imp_path = str(ds.path("impressions"))
    cols = ds.table("impressions").column_names
    imp = ds.table("impressions", [c for c in ("ts", "user_id", "room_id", "slice_id", "position", *LABELS_BINARY) if c in cols])
    ts = imp.column("ts").to_numpy().astype(np.int64)
    n = len(ts)
    if n == 0:
        raise DataError("no impressions", table=imp_path)
    if np.any(np.diff(ts) < 0):
        row = int(np.flatnonzero(np.diff(ts) < 0)[0] + 1)
        raise DataError("impressions are not sorted by ts", table=imp_path, column="ts", row=row, value=int(ts[row]))
    return _Impressions(
        path=imp_path,
        ts=ts,
        user_id=imp.column("user_id").to_numpy().astype(np.int64),
        room_id=imp.column("room_id").to_numpy().astype(np.int64),
        slice_id=imp.column("slice_id").to_numpy().astype(np.int64),
        position=imp.column("position").to_numpy().astype(np.int64) if "position" in cols else np.zeros(n, np.int64),
        labels=np.stack([imp.column(c).to_numpy() for c in LABELS_BINARY], axis=1).astype(np.int8),
    )


@dataclasses.dataclass(frozen=True)
class _RoomLookup:
    """The rooms table sorted by room_id, and each impression's row in it."""

    vocab: np.ndarray  # (R,) sorted room ids
    author: np.ndarray  # (R,) author of each room
    start: np.ndarray  # (R,) start ts of each room
    pos: np.ndarray  # (N,) row of each impression's room


def _look_up_rooms(ds: Dataset, imp: _Impressions) -> _RoomLookup:
    """Find every impression's room (start time for the room age, and author); an unknown room is a DataError."""
    rooms = ds.table("rooms", ["room_id", "author_id", "start_ts"])
    r_ids = rooms.column("room_id").to_numpy().astype(np.int64)
    r_order = np.argsort(r_ids)
    room_vocab = r_ids[r_order]
    r_author = rooms.column("author_id").to_numpy().astype(np.int64)[r_order]
    r_start = rooms.column("start_ts").to_numpy().astype(np.int64)[r_order]
    pos, found = sorted_lookup(room_vocab, imp.room_id)
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        raise DataError("room_id not in the rooms table", table=imp.path, column="room_id", row=row, value=int(imp.room_id[row]))
    return _RoomLookup(room_vocab, r_author, r_start, pos)


def _user_profiles(ds: Dataset, user_id: np.ndarray) -> np.ndarray:
    """(N, P) int16 profile columns of each impression's user (absent columns and users read as 0)."""
    profile = np.zeros((len(user_id), len(USER_PROFILE_COLUMNS)), dtype=np.int16)
    if ds.has("users"):
        ucols = ds.table("users").column_names
        users = ds.table("users", [c for c in ("user_id", *USER_PROFILE_COLUMNS) if c in ucols])
        u_ids = users.column("user_id").to_numpy().astype(np.int64)
        u_order = np.argsort(u_ids)
        upos, known = sorted_lookup(u_ids[u_order], user_id)
        for j, c in enumerate(USER_PROFILE_COLUMNS):
            if c in ucols:
                vals = users.column(c).to_numpy().astype(np.int64)[u_order]
                profile[:, j] = np.where(known, np.clip(vals[upos], 0, PROFILE_VOCAB - 1), 0)
    return profile


def _check_slices_started(ds: Dataset, imp: _Impressions) -> None:
    """Causality: the slice shown must exist and have started by the impression time."""
    slices = ds.table("slices", ["slice_id", "start_ts"])
    s_ids = slices.column("slice_id").to_numpy().astype(np.int64)
    s_order = np.argsort(s_ids)
    s_sorted, s_start = s_ids[s_order], slices.column("start_ts").to_numpy().astype(np.int64)[s_order]
    spos, found = sorted_lookup(s_sorted, imp.slice_id)
    bad = ~found | (s_start[spos] > imp.ts)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        why = "slice_id not in the slices table" if not found[row] else "slice starts after the impression"
        raise DataError(why, table=imp.path, column="slice_id", row=row, value=int(imp.slice_id[row]))


@dataclasses.dataclass(frozen=True)
class _Codes:
    """Slice codes of each impression's slice and the row-aligned room codes."""

    slice_codes: np.ndarray  # (N, L) int32
    room_codes: np.ndarray  # (N, L) int32
    num_codes: int  # max code + 1


def _read_codes(codes_path: str | os.PathLike, room_codes_path: str | os.PathLike, slice_id: np.ndarray) -> _Codes:
    """Slice codes by slice_id, room codes one row per impression; files that do not match the dataset are a DataError."""
    n = len(slice_id)
    c_ids, c_codes = read_slice_codes(codes_path)
    c_order = np.argsort(c_ids)
    cpos, found = sorted_lookup(c_ids[c_order], slice_id)
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        raise DataError(
            f"impression row {row} shows a slice with no code (codes and dataset do not match)",
            table=str(codes_path), column="slice_id", value=int(slice_id[row]),
        )  # fmt: skip
    slice_codes = c_codes[c_order][cpos].astype(np.int32)
    room_codes = np.asarray(read_room_code_rows(room_codes_path), dtype=np.int32)
    if room_codes.shape[0] != n:
        raise DataError(
            f"has {room_codes.shape[0]} rows but the dataset has {n} impressions (codes and dataset do not match)",
            table=str(room_codes_path),
        )
    if room_codes.shape[1] != slice_codes.shape[1]:
        raise DataError(
            f"room codes have {room_codes.shape[1]} levels, slice codes {slice_codes.shape[1]}", table=str(room_codes_path)
        )
    if min(slice_codes.min(), room_codes.min()) < 0:
        raise DataError("negative code", table=str(codes_path))
    return _Codes(slice_codes, room_codes, int(max(slice_codes.max(), room_codes.max())) + 1)


def _train_rows(ts: np.ndarray, cfg: FeatureConfig, imp_path: str) -> int:
    """Rows [0, n_train) of the time-sorted stream are the training set; both sides must be non-empty."""
    n = len(ts)
    if cfg.test_fraction is not None:
        n_train = int(np.floor(n * (1.0 - cfg.test_fraction)))
    else:
        n_train = int(np.searchsorted(ts, ts[-1] - int(cfg.test_days * DAY_MS), side="right"))
    if not 0 < n_train < n:
        raise DataError(
            f"time split leaves {n_train} train and {n - n_train} test rows (stream spans "
            f"{(ts[-1] - ts[0]) / DAY_MS:.2f} days); set test_fraction instead",
            table=imp_path, column="ts",
        )  # fmt: skip
    return n_train


def _fingerprint(*paths: str | os.PathLike, cfg: FeatureConfig) -> str:
    h = hashlib.sha1(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    for p in paths:
        p = Path(p).resolve()
        files = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        for f in files:
            st = f.stat()
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_or_build_features(
    dataset_dir: str | os.PathLike,
    codes_path: str | os.PathLike,
    room_codes_path: str | os.PathLike,
    cfg: FeatureConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Features:
    """``build_features`` with an on-disk cache keyed by the inputs' paths, sizes, mtimes and cfg.

    The main job builds features once and every arm reuses them.
    """
    cfg = cfg or FeatureConfig()
    if cache_dir is None:
        return build_features(dataset_dir, codes_path, room_codes_path, cfg)
    path = Path(cache_dir) / f"features-{_fingerprint(dataset_dir, codes_path, room_codes_path, cfg=cfg)}.npz"
    if path.exists():
        return Features.load(path)
    feats = build_features(dataset_dir, codes_path, room_codes_path, cfg)
    feats.save(path)
    return feats


def features_for_run(
    run_config: dict,
    section: str,
    dataset_dir: str | os.PathLike,
    codes_path: str | os.PathLike | None = None,
    room_codes_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Features:
    """The features a trained run evaluates on: its saved ``FeatureConfig`` (``run_config[section]["features"]``)
    over ``dataset_dir``, with the code files it was trained on unless others are given."""
    fcfg = FeatureConfig(**run_config[section]["features"])
    return load_or_build_features(
        dataset_dir, codes_path or run_config["codes_path"], room_codes_path or run_config["room_codes_path"], fcfg, cache_dir
    )
