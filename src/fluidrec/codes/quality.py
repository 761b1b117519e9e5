"""Quality report of a code model: reconstruction error, utilisation, perplexity, collisions.

Per level l (1-based):
- ``relative_error``: sum ||x - x_hat_{<=l}||^2 / sum ||x||^2, the share of the data's energy
  left after levels 1..l (None for models with normalize_residuals: no reconstruction);
- ``residual_ratio``: sum ||r_l - c||^2 / sum ||r_l||^2, how much of its own input level l removes;
- ``utilisation``: used codewords / K; ``perplexity``: exp(entropy) of the codeword distribution
  (K when all codewords are used equally, 1 when one codeword takes everything).

For the full L-level code: ``collision_rate`` = share of items whose code is shared with at
least one other item; ``unique_code_ratio`` = distinct codes / items.

Example:
    >>> report = code_quality(model, x)
    >>> report.levels[0].utilisation, report.collision_rate
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fluidrec.codes.rqkmeans import RQKMeans


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
    shared = counts[inverse.reshape(-1)] > 1
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
