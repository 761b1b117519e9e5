"""Dataset statistics: the figures that say whether a dataset has the properties
FLUID depends on (short room lives, many impressions on young rooms, test rooms
unseen in training).

Example:
    >>> s = dataset_stats("runs/world")
    >>> s["room_minutes_p50"], s["share_test_rooms_unseen_in_train"]
"""

from __future__ import annotations

import os

import numpy as np

from fluidrec.data.io import Dataset

DAY_MS = 86_400_000
MINUTE_MS = 60_000


def test_day_start(last_ts: int) -> int:
    """Start (ms) of the UTC day holding ``last_ts``: the default test split's first instant."""
    return int(last_ts) // DAY_MS * DAY_MS


def dataset_stats(root: str | os.PathLike, batch_size: int = 1 << 20) -> dict:
    """Compute summary statistics of a canonical dataset, streaming impressions.

    Returns a flat dict; every value is a Python int or float.
    """
    ds = Dataset(root)
    rooms = ds.table("rooms", ["room_id", "start_ts", "end_ts"])
    room_ids = rooms.column("room_id").to_numpy()
    order = np.argsort(room_ids)
    room_keys = room_ids[order]
    room_start = rooms.column("start_ts").to_numpy()[order]
    minutes = (rooms.column("end_ts").to_numpy() - rooms.column("start_ts").to_numpy()) / MINUTE_MS

    slices = ds.table("slices", ["room_id", "domain"])
    domain = slices.column("domain").to_numpy(zero_copy_only=False)
    live = domain == "live"
    slices_per_room = np.bincount(np.searchsorted(room_keys, slices.column("room_id").to_numpy()[live]), minlength=len(room_keys))

    n_imp, clicks, young = 0, 0, 0
    imps_per_room = np.zeros(len(room_keys), np.int64)
    room_first_ts = np.full(len(room_keys), np.iinfo(np.int64).max)
    room_last_ts = np.full(len(room_keys), np.iinfo(np.int64).min)
    for batch in ds.iter_batches("impressions", batch_size, ["ts", "room_id", "click"]):
        ts = batch.column("ts").to_numpy()
        idx = np.searchsorted(room_keys, batch.column("room_id").to_numpy())
        n_imp += len(ts)
        clicks += int(batch.column("click").to_numpy().sum())
        young += int(((ts - room_start[idx]) < 10 * MINUTE_MS).sum())
        imps_per_room += np.bincount(idx, minlength=len(room_keys))
        np.minimum.at(room_first_ts, idx, ts)
        np.maximum.at(room_last_ts, idx, ts)

    shown = imps_per_room > 0
    unseen_share = float("nan")
    if shown.any():
        split = test_day_start(room_last_ts[shown].max())
        in_test = shown & (room_last_ts >= split)
        in_train = shown & (room_first_ts < split)
        if in_test.any():
            unseen_share = float((in_test & ~in_train).sum() / in_test.sum())

    def pct(x: np.ndarray, q: float) -> float:
        return float(np.percentile(x, q)) if len(x) else float("nan")

    return {
        "n_users": ds.num_rows("users"),
        "n_authors": ds.num_rows("authors"),
        "n_rooms": int(len(room_keys)),
        "n_slices": int(live.sum()),
        "n_videos": int((domain == "video").sum()),
        "n_impressions": int(n_imp),
        "n_queries": ds.num_rows("queries"),
        "room_minutes_p50": pct(minutes, 50),
        "room_minutes_p90": pct(minutes, 90),
        "slices_per_room_p50": pct(slices_per_room, 50),
        "impressions_per_room_p50": pct(imps_per_room, 50),
        "ctr": float(clicks / n_imp) if n_imp else float("nan"),
        "share_impressions_on_rooms_younger_than_10min": float(young / n_imp) if n_imp else float("nan"),
        "share_test_rooms_unseen_in_train": unseen_share,
    }
