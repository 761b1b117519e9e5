"""Quality report of a code model: reconstruction error, utilisation, perplexity, collisions.

Per level l (1-based):
- ``relative_error``: sum ||x - x_hat_{<=l}||^2 / sum ||x||^2, the share of the data's energy
  left after levels 1..l (None for models with normalize_residuals: no reconstruction);
- ``residual_ratio``: sum ||r_l - c||^2 / sum ||r_l||^2, how much of its own input level l removes;
- ``utilisation``: used codewords / K; ``perplexity``: exp(entropy) of the codeword distribution
  (K when all codewords are used equally, 1 when one codeword takes everything).

For the full L-level code: ``collision_rate`` = share of items whose code is shared with at
least one other item; ``unique_code_ratio`` = distinct codes / items.

Against the truth (datasets with a topic path, e.g. the synthetic world):
``code_truth_quality`` gives, per level l, the purity and NMI of the code prefix of depth l
(``(c1, ..., cl)``) against the true topic prefix of depth l (``(topic_l1, ..., topic_ll)``);
``topic_paths`` reads that path for a list of slice ids.

Example:
    >>> report = code_quality(model, x)
    >>> report.levels[0].utilisation, report.collision_rate
    >>> code_truth_quality(model.encode(x), topic_paths("runs/world_small", ids))["nmi_l1"]
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from fluidrec.codes.rqkmeans import RQKMeans
from fluidrec.errors import DataError
from fluidrec.metrics.clustering import nmi, prefix_labels, purity
from fluidrec.utils.lookup import sorted_lookup


@dataclasses.dataclass(frozen=True)
class LevelQuality:
    level: int
    relative_error: float | None
    residual_ratio: float
    used: int
    utilisation: float
    perplexity: float


@dataclasses.dataclass(frozen=True)
class CodeQuality:
    n: int
    codebook_size: int
    levels: list[LevelQuality]
    collision_rate: float
    unique_code_ratio: float

    def as_flat_dict(self) -> dict[str, Any]:
        """One flat mapping (``l1_utilisation``, ...) for tables and JSON."""
        out: dict[str, Any] = {"n": self.n, "codebook_size": self.codebook_size}
        for lv in self.levels:
            for key in ("relative_error", "residual_ratio", "used", "utilisation", "perplexity"):
                out[f"l{lv.level}_{key}"] = getattr(lv, key)
        out["collision_rate"] = self.collision_rate
        out["unique_code_ratio"] = self.unique_code_ratio
        return out


def usage_stats(codes: np.ndarray, codebook_size: int) -> list[tuple[int, float, float]]:
    """Per level (used, utilisation, perplexity) of an (n, L) code array.

    Example:
        >>> usage_stats(np.array([[0], [1], [1], [1]]), 4)   # used 2 of 4, perplexity exp(H(1/4, 3/4))
        [(2, 0.5, 1.7548...)]
    """
    out = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level].astype(np.int64), minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * np.log(p)).sum())
        used = int((counts > 0).sum())
        out.append((used, used / codebook_size, float(np.exp(entropy))))
    return out


def collision_stats(codes: np.ndarray) -> tuple[float, float]:
    """(collision_rate, unique_code_ratio) of full codes (n, L).

    Example:
        >>> collision_stats(np.array([[0, 1], [0, 1], [2, 3]]))   # two items share [0, 1]
        (0.666..., 0.666...)
    """
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    n = len(codes)
    shared = counts[inverse.reshape(-1)] > 1  # inverse (n,)
    return float(shared.sum() / n), float(len(counts) / n)


def code_quality(model: RQKMeans, x: Any, *, source: str = "input", progress: bool = False) -> CodeQuality:
    """Encode x with ``model`` and report per-level and full-code quality.

    Args:
        model: a fitted RQKMeans.
        x: vectors (n, D).
        source: name for error messages.
        progress: tqdm bar over encode blocks.
    """
    codes, errors = model._encode(x, progress=progress, source=source, track_errors=True)
    assert errors is not None
    total = errors[0, 0]  # energy of the (possibly normalised) input of level 1
    usage = usage_stats(codes, model.codebook_size)
    levels = []
    for level in range(model.levels):
        rel = None if model.config.normalize_residuals else float(errors[level, 1] / max(total, 1e-30))
        used, util, ppl = usage[level]
        levels.append(
            LevelQuality(
                level=level + 1,
                relative_error=rel,
                residual_ratio=float(errors[level, 1] / max(errors[level, 0], 1e-30)),
                used=used,
                utilisation=util,
                perplexity=ppl,
            )
        )
    collision, unique = collision_stats(codes)
    return CodeQuality(n=len(codes), codebook_size=model.codebook_size, levels=levels, collision_rate=collision, unique_code_ratio=unique)


def code_truth_quality(codes: np.ndarray, topic_path: np.ndarray) -> dict[str, float]:
    """Purity and NMI of the code prefix against the true topic prefix, per level.

    Args:
        codes: (n, L) codes of n items.
        topic_path: (n, T) true topic ids per level (T = 4 for ``topic_l1..topic_l4``), row i
            for the item of ``codes[i]``. Rows with an unknown first level (``topic_l1 < 0``)
            are left out; a ``-1`` deeper down is one more value.

    Returns:
        ``{"purity_l1": ..., "nmi_l1": ..., ..., "purity_lT": ..., "nmi_lT": ...}``. Level l
        compares ``codes[:, :min(l, L)]`` with ``topic_path[:, :l]`` (a model with fewer levels
        than the taxonomy is scored with its full code at the deeper levels). NaN when no row
        has a known topic.

    Example:
        >>> codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
        >>> truth = np.array([[5, 50], [5, 51], [6, 60], [6, 61]])
        >>> code_truth_quality(codes, truth)["purity_l2"]   # cluster (1, 0) holds 60 and 61
        0.75
    """
    codes = np.asarray(codes)
    topic_path = np.asarray(topic_path)
    if codes.ndim != 2 or topic_path.ndim != 2 or len(codes) != len(topic_path):
        raise ValueError(f"need codes (n, L) and topic_path (n, T) with the same n, got {codes.shape} and {topic_path.shape}")
    known = topic_path[:, 0] >= 0
    codes, topic_path = codes[known], topic_path[known]
    out: dict[str, float] = {}
    for level in range(1, topic_path.shape[1] + 1):
        truth = prefix_labels(topic_path, level)  # (n,)
        pred = prefix_labels(codes, min(level, codes.shape[1]))  # (n,)
        out[f"purity_l{level}"] = purity(truth, pred)
        out[f"nmi_l{level}"] = nmi(truth, pred)
    return out


def topic_paths(dataset_dir: str | os.PathLike, slice_ids: np.ndarray) -> np.ndarray:
    """The true topic path (n, 4) int64 of ``slice_ids`` from a dataset's ``topic_l1..topic_l4``.

    Raises:
        DataError: a topic column is missing, or a slice id is not in the slices table
            (naming the file, column and the first such id).
    """
    from fluidrec.data.io import Dataset
    from fluidrec.data.schema import TOPIC_COLUMNS

    from fluidrec.data.io import open_parquet

    ds = Dataset(dataset_dir)
    path = str(ds.path("slices"))
    names = open_parquet(path).schema_arrow.names  # the schema only: frames are not read
    for col in TOPIC_COLUMNS:
        if col not in names:
            raise DataError("missing ground-truth topic column (purity/NMI need a topic path, e.g. a synthetic world)", table=path, column=col)
    sl = ds.table("slices", ["slice_id", *TOPIC_COLUMNS])
    ids = sl.column("slice_id").to_numpy().astype(np.int64)
    topics = np.stack([sl.column(c).to_numpy().astype(np.int64) for c in TOPIC_COLUMNS], axis=1)  # (N, 4)
    want = np.asarray(slice_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    pos, found = sorted_lookup(ids[order], want)
    if not found.all():
        r = int(np.flatnonzero(~found)[0])
        raise DataError(f"id {int(want[r])} (row {r} of the ids given) is not a slice_id of this dataset", table=path, column="slice_id")
    return topics[order[pos]]
