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

import numpy as np

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
    head = "| group | variant | " + " | ".join(f"{d} {k.upper()} R@10/50" for d, k in cols) + " | probe L1 | probe L2 | probe L3 |"
    lines = [head, "|" + "---|" * (5 + len(cols))]

    def cell(r: dict, key: str) -> str:
        v, sd = metric_value(r, key), r["sd"].get(key)
        if v is None:
            return "n/a"
        return f"{100 * v:.1f}" + ("" if sd is None else f"±{100 * sd:.1f}")

    for name, r in rows.items():
        rec = [f"{cell(r, f'{d}.{k}_recall@10')}/{cell(r, f'{d}.{k}_recall@50')}" for d, k in cols]
        probes = [cell(r, f"probe_acc_level{lv}") for lv in (1, 2, 3)]
        lines.append(f"| {r['group']} | {name} | " + " | ".join(rec + probes) + " |")
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
    seeds: tuple[int, ...] | None = None,
    peers: bool = False,
    progress: bool = True,
    reference_dir: str | os.PathLike | None = None,
) -> dict:
    """Train and evaluate the reference config and its one-change variants, on one or more seeds.

    Args:
        dataset_dir: canonical dataset with queries.
        out_dir: one sub-directory per run (``<variant>/`` for the first seed,
            ``seed<s>/<variant>/`` for the others), plus ``ablation.json`` / ``ablation.md``.
        cfg: the reference config (default ``ablation_demo()``, or the config of
            ``reference_dir`` when that is given).
        variants: names to run (default all: scratch_text, dual_tower, single_stage, live_only).
        seeds: the seeds to repeat every row on (default ``(cfg.seed,)``); the seed changes the
            initialisation, the batches and the held-out split, so each seed's rows share one split.
        peers: add the ``lsa`` peer row (``encoder_lsa(seed, like=cfg)``) and, on a generated
            world, the ``oracle`` row (``encoder.oracle``: the true-likelihood ranking, retrieval only).
        progress: tqdm bars.
        reference_dir: an already-trained model to use as the first seed's reference row instead
            of training it again (e.g. the main encoder of ``fluidrec reproduce``). Its config
            (model, recipe, seed; checkpointing and threads aside) must be ``cfg``, so each variant
            still differs from it in one choice and all rows are evaluated on the same held-out pairs.

    Returns ``{"rows": {name: {"group", "change", live/video metrics, probe accs (seed means),
    "sd": the same keys' seed standard deviations, "per_seed": {seed: metrics}}}, "comparisons":
    ablation_comparisons(rows), "table": markdown, "seeds", "seconds", ...}``.

    Example:
        >>> model_dir = train_encoder(encoder_demo(0), "data/world", "runs/encoder")
        >>> run_ablation("data/world", "runs/ablation", reference_dir=model_dir, seeds=(0, 1, 2))["comparisons"]
    """
    if reference_dir is not None:
        cfg = _reference_config(Path(reference_dir), cfg)
    cfg = cfg or ablation_demo()
    chosen = _chosen_variants(variants)
    seeds = tuple(seeds) if seeds else (cfg.seed,)
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"ablation seeds repeat: {list(seeds)}")
    out = Path(out_dir)
    per_seed: dict[str, dict[int, dict]] = {}
    seconds: dict[str, float] = {}
    for i, seed in enumerate(seeds):
        run_cfg = cfg.replace(seed=seed)
        where = out if i == 0 else out / f"seed{seed}"
        reuse = Path(reference_dir) if (reference_dir is not None and i == 0) else None
        for name, metrics, secs in _seed_rows(dataset_dir, where, run_cfg, chosen, peers, progress, reuse):
            per_seed.setdefault(name, {})[seed] = metrics
            seconds[name] = round(seconds.get(name, 0.0) + secs, 2)
    rows = {name: _summary_row(name, chosen, runs) for name, runs in per_seed.items()}
    comparisons = ablation_comparisons(rows)
    table = _table(rows)
    result = {"rows": rows, "comparisons": comparisons, "table": table, "seeds": list(seeds), "config": cfg.to_dict(),
              "seconds": seconds, "reference_dir": None if reference_dir is None else str(reference_dir)}
    write_json(out / "ablation.json", result)
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text("# Encoder ablation (shape of FLUID Table 6)\n\n" + table + "\n\n" + comparisons_md(comparisons) + "\n")
    return result


def _chosen_variants(variants: tuple[str, ...] | None) -> list[Variant]:
    if variants is None:
        return list(VARIANTS)
    known = {v.name for v in VARIANTS}
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise UsageError(f"unknown ablation variants {unknown}; choose from {sorted(known)}")
    return [v for v in VARIANTS if v.name in variants]


def _seed_rows(dataset_dir, where: Path, cfg: EncoderConfig, chosen: list[Variant], peers: bool, progress: bool, reuse: Path | None):
    """Yield ``(row name, metrics, seconds)`` for one seed: the reference, the variants, then the peers."""
    for v in [REFERENCE, *chosen]:
        t0 = time.perf_counter()
        if v is REFERENCE and reuse is not None:
            model_dir = reuse
        else:
            model_dir = train_encoder(cfg.replace(model=v.model, train=v.train), dataset_dir, where / v.name, progress=progress)
        yield v.name, evaluate_encoder(model_dir, dataset_dir), time.perf_counter() - t0
    if not peers:
        return
    from fluidrec.encoder.config import encoder_lsa
    from fluidrec.encoder.lsa import train_lsa

    t0 = time.perf_counter()
    lsa_dir = train_lsa(encoder_lsa(cfg.seed, like=cfg), dataset_dir, where / "lsa")
    yield "lsa", evaluate_encoder(lsa_dir, dataset_dir), time.perf_counter() - t0
    if (Path(dataset_dir) / "world").is_dir():
        from fluidrec.encoder.oracle import oracle_retrieval

        t0 = time.perf_counter()
        yield "oracle", oracle_retrieval(dataset_dir, cfg.eval_settings()), time.perf_counter() - t0


PEER_ROWS = {"lsa": ("peer", {"encoder": "lsa (TF-IDF + TruncatedSVD)"}), "oracle": ("truth", {"encoder": "true query likelihood (ceiling)"})}


def _metric_keys(metrics: dict) -> list[str]:
    """Flat names of a row's numeric metrics: ``live.q2i_recall@10``, ..., ``probe_acc_level2``."""
    keys = [f"{d}.{k}" for d in ("live", "video") for k in metrics.get(d, {})]
    return keys + sorted(k for k in metrics if k.startswith("probe_acc"))


def metric_value(metrics: dict, key: str) -> float | None:
    """A row's metric by its flat name (``live.q2i_recall@10``, ``probe_acc_level2``); None when absent."""
    dom, _, name = key.rpartition(".")
    v = metrics.get(dom, {}).get(name) if dom else metrics.get(name)
    return None if v is None else float(v)


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


def _summary_row(name: str, chosen: list[Variant], runs: dict[int, dict]) -> dict:
    """One Table-6 row over seeds: seed means in the metrics' own shape, plus ``sd`` and ``per_seed``."""
    v = next((x for x in [REFERENCE, *chosen] if x.name == name), None)
    group, change = (v.group, {**v.model, **v.train}) if v is not None else PEER_ROWS[name]
    first = next(iter(runs.values()))
    row: dict = {"group": group, "change": change, "n": first.get("n"), "sd": {}, "per_seed": {str(s): m for s, m in runs.items()}}
    for key in _metric_keys(first):
        mean, sd = _mean_sd([metric_value(m, key) for m in runs.values()])
        dom, _, metric = key.rpartition(".")
        (row.setdefault(dom, {}) if dom else row)[metric] = mean
        row["sd"][key] = sd
    return row


COMPARED = ("live.q2i_recall@10", "video.q2i_recall@10", "probe_acc_level2", "probe_acc_level3")


def ablation_comparisons(rows: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Each row against ``ours`` on the headline metrics: is the difference beyond the seed spread?

    ``delta`` = row mean - ours mean; ``spread`` = the larger of the two rows' seed standard
    deviations; ``separated`` = ``|delta| > spread`` (None with one seed: no spread to compare with).

    Example:
        >>> ablation_comparisons(res["rows"])["lsa"]["live.q2i_recall@10"]
        {'delta': -0.004, 'spread': 0.006, 'separated': False}
    """
    ours = rows.get("ours")
    out: dict[str, dict[str, dict]] = {}
    if ours is None:
        return out
    for name, r in rows.items():
        if name == "ours":
            continue
        cmp = {}
        for key in COMPARED:
            a, b = metric_value(r, key), metric_value(ours, key)
            if a is None or b is None:
                continue
            sds = [s for s in (r["sd"].get(key), ours["sd"].get(key)) if s is not None]
            spread = max(sds) if len(sds) == 2 else None
            cmp[key] = {"delta": a - b, "spread": spread, "separated": None if spread is None else bool(abs(a - b) > spread)}
        out[name] = cmp
    return out


def comparisons_md(comparisons: dict[str, dict[str, dict]]) -> str:
    """One line per row: each headline metric's difference to ``ours`` and whether it exceeds the seed spread."""
    lines = ["| vs ours | " + " | ".join(COMPARED) + " |", "|---|" + "---|" * len(COMPARED)]
    for name, cmp in comparisons.items():
        cells = []
        for key in COMPARED:
            c = cmp.get(key)
            if c is None:
                cells.append("—")
                continue
            verdict = "1 seed" if c["separated"] is None else ("beyond spread" if c["separated"] else "within spread")
            cells.append(f"{100 * c['delta']:+.1f} ({verdict})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
