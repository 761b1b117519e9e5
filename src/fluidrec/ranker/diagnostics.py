"""Diagnostics behind the paper's Figures 1 and 5, as data and as matplotlib figures.

- ``IdNormByAge``: item-ID embedding L2 norm against room age at impression, recorded
  during training (Figure 1: the norm has not converged within a room's short life).
- ``gate_by_id_norm``: converged gate weight on the item ID against ID-norm bucket
  (Figure 5: the learnable gate collapses onto the ID).

Example:
    >>> d = json.load(open("runs/baseline/diagnostics.json"))
    >>> plot_id_norm_vs_age(d["id_norm_by_age"], "fig1.png")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fluidrec.utils.figures import pyplot, save_figure

if TYPE_CHECKING:
    from fluidrec.ranker.features import Features
    from fluidrec.ranker.model import Ranker

AGE_BIN_EDGES_MIN = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 90.0, 120.0)


class IdNormByAge:
    """Running mean of item-ID embedding norms per room-age bin (minutes)."""

    def __init__(self, edges: tuple[float, ...] = AGE_BIN_EDGES_MIN) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.sum = np.zeros(len(edges))
        self.count = np.zeros(len(edges), dtype=np.int64)

    def add(self, age_min: np.ndarray, norms: np.ndarray) -> None:
        """age_min, norms: (B,) room age at impression and that room's ID-embedding norm then."""
        b = np.clip(np.searchsorted(self.edges, age_min, side="right") - 1, 0, len(self.edges) - 1)
        self.sum += np.bincount(b, weights=norms, minlength=len(self.edges))
        self.count += np.bincount(b, minlength=len(self.edges))

    def to_dict(self) -> dict[str, Any]:
        mean = np.where(self.count > 0, self.sum / np.maximum(self.count, 1), np.nan)
        return {
            "age_lo_min": self.edges.tolist(),
            "mean_norm": [None if np.isnan(m) else float(m) for m in mean],
            "count": self.count.tolist(),
        }


@torch.no_grad()
def gate_by_id_norm(model: Ranker, feats: Features, rows: slice, n_buckets: int = 5, batch_size: int = 8192) -> dict[str, Any]:
    """Mean gate weight alpha on the ID per quantile bucket of ||g|| (small -> large) over ``rows``.

    Args:
        model: a gated early-fusion ranker (gate_learned / gate_feature).
        feats: features; rows: which rows to average over (e.g. the test period).
    """
    model.eval()
    norms, alphas = [], []
    for b0 in range(rows.start, rows.stop, batch_size):
        batch = feats.batch(slice(b0, min(b0 + batch_size, rows.stop)))
        out = model(batch)
        if "alpha" not in out.aux:
            return {}
        norms.append(out.aux["g"].norm(dim=-1).numpy())
        alphas.append(out.aux["alpha"].numpy())
    if not norms:
        return {}
    n, a = np.concatenate(norms), np.concatenate(alphas)
    edges = np.quantile(n, np.linspace(0, 1, n_buckets + 1))
    b = np.clip(np.searchsorted(edges, n, side="right") - 1, 0, n_buckets - 1)
    return {
        "norm_edges": edges.tolist(),
        "mean_alpha": [float(a[b == i].mean()) if (b == i).any() else None for i in range(n_buckets)],
        "count": np.bincount(b, minlength=n_buckets).tolist(),
        "overall_alpha": float(a.mean()),
    }


def plot_id_norm_vs_age(data: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Figure 1: mean item-ID embedding L2 norm per room-age bin."""
    plt = pyplot()
    xs = [lo for lo, m in zip(data["age_lo_min"], data["mean_norm"], strict=True) if m is not None]
    ys = [m for m in data["mean_norm"] if m is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel("room age at impression (min, bin start)")
    ax.set_ylabel("item-ID embedding L2 norm")
    ax.set_title(title or "Item-ID norm vs room age")
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=120, tight=True)


def plot_gate_by_id_norm(data: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Figure 5: mean gate weight on the item ID per ID-norm bucket."""
    plt = pyplot()
    k = len(data["mean_alpha"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(range(k), [a if a is not None else 0.0 for a in data["mean_alpha"]])
    ax.set_xticks(range(k), [f"Q{i + 1}" for i in range(k)])
    ax.set_ylim(0, 1)
    ax.set_xlabel("item-ID norm bucket (small -> large)")
    ax.set_ylabel("gate weight on item ID")
    ax.set_title(title or "Converged gate weight vs ID norm")
    return save_figure(fig, path, dpi=120, tight=True)


def write_figures(model_dir: str | os.PathLike) -> list[Path]:
    """Render the figures of a trained model directory's diagnostics.json beside it."""
    from fluidrec.utils.io import read_json

    d = Path(model_dir)
    diag = read_json(d / "diagnostics.json")
    made = []
    if any(c > 0 for c in diag.get("id_norm_by_age", {}).get("count", [])):
        made.append(plot_id_norm_vs_age(diag["id_norm_by_age"], d / "fig_id_norm_vs_age.png"))
    if diag.get("gate_by_id_norm"):
        made.append(plot_gate_by_id_norm(diag["gate_by_id_norm"], d / "fig_gate_by_id_norm.png"))
    return made
