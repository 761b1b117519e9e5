"""The encoder ablation in the shape of FLUID Table 6, on any canonical dataset.

One reference run (the given config: MiniLM, single tower, two stages, cross-domain data)
and four variants, each changing one design choice:

| group    | variant                 | change                                  |
|----------|-------------------------|-----------------------------------------|
| backbone | scratch text transformer| ``model.backbone = "scratch"``          |
| fusion   | dual tower              | ``model.fusion = "dual"``               |
| schedule | single stage            | ``train.align_fraction = 0``            |
| domain   | live only               | ``train.video_ratio = 0``               |

Each run trains into ``out_dir/<variant>/`` (resumable) and is evaluated on the same held-out
pairs (same seed, same split); results go to ``ablation.json`` and a markdown table
``ablation.md``.

Example:
    >>> res = run_ablation("data/world", "runs/ablation", ablation_demo(seed=0))
    >>> res["rows"]["ours"]["live"]["q2i_recall@10"]
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from fluidrec.encoder.config import EncoderConfig, encoder_demo
from fluidrec.encoder.evaluate import evaluate_encoder
from fluidrec.encoder.train import train_encoder
from fluidrec.errors import UsageError
from fluidrec.utils.io import atomic_path, write_json


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ablation row: its Table-6 group, name, and the config fields it changes."""

    group: str
    name: str
    model: dict
    train: dict


VARIANTS = (
    Variant("backbone", "scratch_text", {"backbone": "scratch"}, {}),
    Variant("fusion", "dual_tower", {"fusion": "dual"}, {}),
    Variant("schedule", "single_stage", {}, {"align_fraction": 0.0}),
    Variant("domain", "live_only", {}, {"video_ratio": 0.0}),
)
REFERENCE = Variant("reference", "ours", {}, {})


def ablation_demo(seed: int = 0) -> EncoderConfig:
    """Reduced-size reference config for the ablation (five trainings on two CPU cores)."""
    return encoder_demo(seed).replace(train={"steps": 100, "checkpoint_every": 50, "eval_gallery": 500, "probe_items": 1000})


def _table(rows: dict[str, dict]) -> str:
    cols = [("live", "q2i"), ("live", "i2q"), ("video", "q2i"), ("video", "i2q")]
    head = "| group | variant | " + " | ".join(f"{d} {k.upper()} R@10/50" for d, k in cols) + " | probe L1 | probe L2 |"
    lines = [head, "|" + "---|" * (4 + len(cols))]

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    for name, r in rows.items():
        cells = [f"{pct(r[d][f'{k}_recall@10'])}/{pct(r[d][f'{k}_recall@50'])}" for d, k in cols]
        lines.append(f"| {r['group']} | {name} | " + " | ".join(cells) + f" | {pct(r['probe_acc_level1'])} | {pct(r['probe_acc_level2'])} |")
    return "\n".join(lines)


def run_ablation(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: EncoderConfig | None = None,
    *,
    variants: tuple[str, ...] | None = None,
    progress: bool = True,
) -> dict:
    """Train and evaluate the reference config and its one-change variants.

    Args:
        dataset_dir: canonical dataset with queries.
        out_dir: one sub-directory per run, plus ``ablation.json`` / ``ablation.md``.
        cfg: the reference config (default ``ablation_demo()``).
        variants: names to run (default all: scratch_text, dual_tower, single_stage, live_only).
        progress: tqdm bars.

    Returns ``{"rows": {name: {"group", "change", live/video metrics, probe accs}}, "table": markdown}``.
    """
    cfg = cfg or ablation_demo()
    chosen = list(VARIANTS)
    if variants is not None:
        known = {v.name for v in VARIANTS}
        unknown = [v for v in variants if v not in known]
        if unknown:
            raise UsageError(f"unknown ablation variants {unknown}; choose from {sorted(known)}")
        chosen = [v for v in VARIANTS if v.name in variants]
    out = Path(out_dir)
    rows: dict[str, dict] = {}
    for v in [REFERENCE, *chosen]:
        run_cfg = cfg.replace(model=v.model, train=v.train)
        model_dir = train_encoder(run_cfg, dataset_dir, out / v.name, progress=progress)
        metrics = evaluate_encoder(model_dir, dataset_dir)
        rows[v.name] = {"group": v.group, "change": {**v.model, **v.train}, **metrics}
    table = _table(rows)
    result = {"rows": rows, "table": table, "config": cfg.to_dict()}
    write_json(out / "ablation.json", result)
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text("# Encoder ablation (shape of FLUID Table 6)\n\n" + table + "\n")
    return result
