"""Truth rows (synthetic worlds only): what the world itself scores on the logged impressions.

The yardsticks every ranker arm stands beside (``shared/DESIGN.md``, "Yardsticks"). Each
row scores an impression with a part of the world's own click logit
(``fluidrec.data.world.World.click_logit_parts``), all on the logit scale:

- ``oracle``: the full click logit the clicks were drawn from (``sigmoid`` of it is
  ``World.click_prob``). No model can beat it except by luck.
- ``ceiling_no_id``: the logit without the per-room effect and the (user, room) pair
  noise: ``bias + affinity + quality + user_bias + position``. What a model that knows the
  content, the author, the user and the position perfectly, but has no item ID, can reach.
- ``content_only``: the user's content affinity with the slice on air, alone.
- ``position_only``: ``-position_weight * log2(1 + position)``, the floor any arm must beat.

An arm's quality is its share of the headroom between ``position_only`` and
``ceiling_no_id`` (``headroom_share``): 0 = no better than position, 1 = as good as any
ID-free model can be; above 1 means it memorises per-room effects (an item ID can).

Example:
    >>> rows = truth_rows("runs/world_small", n_train=feats.n_train, seen_mask=feats.seen)
    >>> rows["oracle"]["auc"], rows["ceiling_no_id"]["auc_new_room"]
    >>> headroom_share(0.70, rows["position_only"]["auc"], rows["ceiling_no_id"]["auc"])
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow as pa

from fluidrec.errors import DataError, UsageError
from fluidrec.metrics import auc, gauc, logloss

TRUTH_ROWS = ("oracle", "ceiling_no_id", "content_only", "position_only")
_IMPRESSION_COLUMNS = ("user_id", "room_id", "slice_id", "position", "click")


def headroom_share(auc: float, position_only: float, ceiling: float) -> float:
    """An AUC's share of the headroom: ``(auc - position_only) / (ceiling - position_only)``.

    Args:
        auc: the arm's AUC.
        position_only: AUC of the position-only truth row (the floor).
        ceiling: AUC of the ``ceiling_no_id`` truth row.

    Returns:
        0 at the floor, 1 at the ceiling (above 1 or below 0 outside them); NaN when an
        input is NaN or there is no headroom (``ceiling <= position_only``).

    Example:
        >>> headroom_share(0.70, 0.60, 0.75)   # 0.10 of 0.15
        0.6666666666666666
    """
    values = (float(auc), float(position_only), float(ceiling))
    if any(math.isnan(v) for v in values) or values[2] <= values[1]:
        return float("nan")
    return (values[0] - values[1]) / (values[2] - values[1])


def _load(dataset_dir: str | os.PathLike):
    from fluidrec.data.io import Dataset
    from fluidrec.data.world import World

    ds = Dataset(dataset_dir)
    world = World.load(dataset_dir)  # DataError naming world/ when the dataset has no truth (real data)
    return ds, world


def _read_impressions(ds, rows: np.ndarray | slice | None) -> tuple[dict[str, np.ndarray], int]:
    """The impression columns the truth needs, for ``rows``; also the table's total row count."""
    names = ds.table("impressions").schema.names
    table = ds.table("impressions", [c for c in _IMPRESSION_COLUMNS if c in names])
    n = table.num_rows
    if isinstance(rows, slice):
        table = table.take(pa.array(np.arange(n)[rows]))
    elif rows is not None:
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise UsageError(f"a boolean rows mask must have shape ({n},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise UsageError(f"rows must index the {n} impressions, got range [{idx.min()}, {idx.max()}]")
        table = table.take(pa.array(idx % n if len(idx) else idx))
    return {c: table.column(c).to_numpy().astype(np.int64) for c in table.column_names}, n


def _scores(world, imp: dict[str, np.ndarray], impressions_path: str) -> dict[str, np.ndarray]:
    try:
        parts = world.click_logit_parts(imp["user_id"], imp["room_id"], imp["slice_id"], imp.get("position"))
    except UsageError as exc:  # ids outside the world's arrays: the truth belongs to another dataset
        raise DataError(f"impressions do not match the world truth ({exc})", table=impressions_path) from None
    ceiling = parts["bias"] + parts["affinity"] + parts["quality"] + parts["user_bias"] + parts["position"]
    return {
        "oracle": parts["logit"],
        "ceiling_no_id": ceiling,
        "content_only": parts["affinity"],
        "position_only": parts["position"],
    }


def truth_scores(dataset_dir: str | os.PathLike, rows: np.ndarray | slice | None = None) -> dict[str, np.ndarray]:
    """Per-impression truth scores (logit scale) of a synthetic world's impressions.

    Args:
        dataset_dir: a dataset made by ``fluidrec world generate`` (has ``world/``).
        rows: impression rows to score: integer indices, a boolean mask, a slice, or
            None for all (in impression order).

    Returns:
        ``{name: (n,) float64}`` for every name in ``TRUTH_ROWS``;
        ``sigmoid(scores["oracle"])`` equals ``World.click_prob`` at the logged position.

    Raises:
        DataError: no world truth (an imported real dataset), or ids the truth lacks.

    Example:
        >>> s = truth_scores("runs/world_small", rows=slice(-1000, None))
        >>> s["oracle"].shape
        (1000,)
    """
    ds, world = _load(dataset_dir)
    imp, _ = _read_impressions(ds, rows)
    return _scores(world, imp, str(ds.path("impressions")))


def truth_rows(
    dataset_dir: str | os.PathLike, n_train: int, seen_mask: np.ndarray | None = None
) -> dict[str, dict[str, float | None]]:
    """Truth rows over the test impressions (rows ``>= n_train``) of a synthetic world.

    Args:
        dataset_dir: a dataset made by ``fluidrec world generate``.
        n_train: number of training impressions (e.g. ``Features.n_train``); the rest is the test set.
        seen_mask: (n,) over all impressions, or (n - n_train,) over the test rows: True
            where the impression's room appears in the training rows (``Features.seen``).
            Default: computed from the impressions' ``room_id``.

    Returns:
        ``{row: {"auc", "auc_new_room", "gauc", "logloss", "headroom", "headroom_new_room"}}``
        for every row in ``TRUTH_ROWS``. ``auc_new_room`` is over test impressions of rooms
        not seen in training (NaN when there are none); ``gauc`` groups by user;
        ``logloss`` is the oracle's (its probabilities are calibrated), None for the other
        rows (their logits are not probabilities); ``headroom`` is ``headroom_share`` of
        the row's AUC (new rooms: against the new-room floor and ceiling).

    Raises:
        DataError: no world truth; UsageError: ``n_train`` or ``seen_mask`` do not fit.

    Example:
        >>> rows = truth_rows("runs/world_small", feats.n_train, feats.seen)
        >>> round(rows["ceiling_no_id"]["headroom"], 6)
        1.0
    """
    ds, world = _load(dataset_dir)
    imp, n = _read_impressions(ds, None)
    if not 0 < n_train < n:
        raise UsageError(f"n_train must be in (0, {n}) for {n} impressions, got {n_train}")
    if "click" not in imp:
        raise DataError("missing column", table=str(ds.path("impressions")), column="click")
    test = {k: v[n_train:] for k, v in imp.items()}
    if seen_mask is None:
        seen = np.isin(test["room_id"], np.unique(imp["room_id"][:n_train]))
    else:
        seen_mask = np.asarray(seen_mask, dtype=bool).ravel()
        if len(seen_mask) == n:
            seen = seen_mask[n_train:]
        elif len(seen_mask) == n - n_train:
            seen = seen_mask
        else:
            raise UsageError(f"seen_mask must have {n} (all) or {n - n_train} (test) entries, got {len(seen_mask)}")
    scores = _scores(world, test, str(ds.path("impressions")))
    y, new = test["click"], ~seen
    out: dict[str, dict[str, float | None]] = {}
    for name in TRUTH_ROWS:
        s = scores[name]
        out[name] = {
            "auc": auc(y, s),
            "auc_new_room": auc(y[new], s[new]) if new.any() else float("nan"),
            "gauc": gauc(test["user_id"], y, s),
            "logloss": logloss(y, 1.0 / (1.0 + np.exp(-s))) if name == "oracle" else None,
        }
    for key, src in (("headroom", "auc"), ("headroom_new_room", "auc_new_room")):
        floor, ceiling = out["position_only"][src], out["ceiling_no_id"][src]
        for name in TRUTH_ROWS:
            out[name][key] = headroom_share(out[name][src], floor, ceiling)
    return out
