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
import json
import os
import time
from pathlib import Path

from fluidrec.encoder.config import EncoderConfig, encoder_demo
from fluidrec.encoder.evaluate import evaluate_encoder
from fluidrec.encoder.model import read_model_meta
from fluidrec.encoder.train import is_trained, train_encoder
from fluidrec.errors import UsageError
from fluidrec.utils.io import atomic_path, to_jsonable, write_json


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ablation row: its Table-6 group, name, and the config fields it changes."""

    group: str
    name: str
    model: dict
    train: dict


VARIANTS = (
    # A from-scratch table has nothing pretrained to keep: it must train (the demo freezes
    # MiniLM's word table only to save CPU), so this row also unfreezes it.
    Variant("backbone", "scratch_text", {"backbone": "scratch"}, {"freeze_word_embeddings": False}),
    Variant("fusion", "dual_tower", {"fusion": "dual"}, {}),
    Variant("schedule", "single_stage", {}, {"align_fraction": 0.0}),
    Variant("domain", "live_only", {}, {"video_ratio": 0.0}),
)
REFERENCE = Variant("reference", "ours", {}, {})


def ablation_demo(seed: int = 0) -> EncoderConfig:
    """Reduced-size reference config for the ablation (five trainings on two CPU cores)."""
    return encoder_demo(seed).replace(train={"steps": 100, "checkpoint_every": 50, "eval_gallery": 500, "probe_items": 1000})


def ablation_reproduce(seed: int = 0) -> EncoderConfig:
    """The ablation of ``fluidrec reproduce``: exactly ``encoder_demo(seed)``.

    Identical to the main encoder's config on purpose: pass the main encoder as
    ``run_ablation(..., reference_dir=...)`` and only the four variants are trained. With the
    EOS-only last layer a demo run costs well under a minute on two cores, so the variants keep
    the full recipe (same steps, same evaluation) instead of a reduced one.

    Example:
        >>> run_ablation(world, out / "ablation", ablation_reproduce(0), reference_dir=out / "encoder")
    """
    return encoder_demo(seed)


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


# Fields that change how fast or how often a run saves, never what it learns: a reused
# reference may differ from the ablation config in these.
_NEUTRAL_TRAIN_FIELDS = ("checkpoint_every", "num_threads")


def _comparable(cfg: EncoderConfig) -> dict:
    d = json.loads(json.dumps(to_jsonable(cfg)))
    for k in _NEUTRAL_TRAIN_FIELDS:
        d["train"].pop(k, None)
    return d


def _reference_config(reference_dir: Path, cfg: EncoderConfig | None) -> EncoderConfig:
    """The config a reused reference model was trained with; must match ``cfg`` when given."""
    if not is_trained(reference_dir):
        raise UsageError(f"reference_dir {reference_dir} is not a trained encoder (no model.pt/config.json); train it first")
    ref = EncoderConfig.from_dict(read_model_meta(reference_dir))
    if cfg is not None and _comparable(cfg) != _comparable(ref):
        a, b = _comparable(cfg), _comparable(ref)
        diff = sorted(f"{part}.{k}" for part in ("model", "train") for k in a[part] if a[part][k] != b[part].get(k))
        diff += ["seed"] if a["seed"] != b["seed"] else []
        raise UsageError(
            f"reference_dir {reference_dir} was trained with a different config ({', '.join(diff)}); "
            "the variants would differ from it in more than one choice. Pass cfg=None to use its config."
        )
    return ref


def run_ablation(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: EncoderConfig | None = None,
    *,
    variants: tuple[str, ...] | None = None,
    progress: bool = True,
    reference_dir: str | os.PathLike | None = None,
) -> dict:
    """Train and evaluate the reference config and its one-change variants.

    Args:
        dataset_dir: canonical dataset with queries.
        out_dir: one sub-directory per run, plus ``ablation.json`` / ``ablation.md``.
        cfg: the reference config (default ``ablation_demo()``, or the config of
            ``reference_dir`` when that is given).
        variants: names to run (default all: scratch_text, dual_tower, single_stage, live_only).
        progress: tqdm bars.
        reference_dir: an already-trained model to use as the reference row instead of training
            it again (e.g. the main encoder of ``fluidrec reproduce``). Its config (model, recipe,
            seed; checkpointing and threads aside) must be ``cfg``, so each variant still differs
            from it in one choice and all rows are evaluated on the same held-out pairs.

    Returns ``{"rows": {name: {"group", "change", live/video metrics, probe accs}}, "table": markdown}``.

    Example:
        >>> model_dir = train_encoder(encoder_demo(0), "data/world", "runs/encoder")
        >>> run_ablation("data/world", "runs/ablation", reference_dir=model_dir)["table"]
    """
    if reference_dir is not None:
        cfg = _reference_config(Path(reference_dir), cfg)
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
    seconds: dict[str, float] = {}
    for v in [REFERENCE, *chosen]:
        t0 = time.perf_counter()
        if v is REFERENCE and reference_dir is not None:
            model_dir = Path(reference_dir)
        else:
            run_cfg = cfg.replace(model=v.model, train=v.train)
            model_dir = train_encoder(run_cfg, dataset_dir, out / v.name, progress=progress)
        metrics = evaluate_encoder(model_dir, dataset_dir)
        rows[v.name] = {"group": v.group, "change": {**v.model, **v.train}, **metrics}
        seconds[v.name] = round(time.perf_counter() - t0, 2)
    table = _table(rows)
    result = {"rows": rows, "table": table, "config": cfg.to_dict(), "seconds": seconds,
              "reference_dir": None if reference_dir is None else str(reference_dir)}
    write_json(out / "ablation.json", result)
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text("# Encoder ablation (shape of FLUID Table 6)\n\n" + table + "\n")
    return result
