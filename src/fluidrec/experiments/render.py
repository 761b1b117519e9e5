"""Figures and ``report.md`` of a finished main-job run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from fluidrec.experiments.config import ReproduceConfig
from fluidrec.experiments.figures import case_review_figure, utilisation_figure
from fluidrec.experiments.report import ROW_NAMES, write_report
from fluidrec.simulate.ab import METRICS
from fluidrec.utils.figures import pyplot, save_figure
from fluidrec.utils.io import read_json


def headline_figure(results: dict, path: Path) -> Path:
    """Left: CTR AUC of the Table 3 arms overall and on new rooms. Right: FLUID's A/B changes with 95% CIs."""
    plt = pyplot()
    t3 = results["table3"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    rows = list(t3)
    x = np.arange(len(rows))
    ax1.bar(x - 0.2, [t3[r]["auc"] for r in rows], 0.4, label="all test impressions")
    ax1.bar(x + 0.2, [t3[r]["auc_new_room"] for r in rows], 0.4, label="rooms unseen in training")
    lo = min(min(t3[r]["auc"], t3[r]["auc_new_room"]) for r in rows)
    hi = max(max(t3[r]["auc"], t3[r]["auc_new_room"]) for r in rows)
    ax1.set_ylim(lo - 0.01, hi + 0.01)
    ax1.set_xticks(x, [ROW_NAMES[r].replace(" (", "\n(") for r in rows], fontsize=7)
    ax1.set_ylabel("CTR AUC (test day)")
    ax1.legend(fontsize=7)
    ax1.set_title("Offline (Table 3)")
    if results.get("table4"):
        arms = list(results["table4"])
        y = np.arange(len(METRICS))
        for k, arm in enumerate(arms):
            d = results["table4"][arm]
            mid = np.array([d[m]["delta"] for m in METRICS]) * 100
            err = np.array([[mid[i] - d[m]["ci_low"] * 100, d[m]["ci_high"] * 100 - mid[i]] for i, m in enumerate(METRICS)]).T
            ax2.errorbar(mid, y + (k - 1) * 0.22, xerr=err, fmt="o", capsize=3, label=ROW_NAMES[arm])
        ax2.axvline(0, color="grey", lw=0.8)
        ax2.set_yticks(y, [m.replace("_", " ") for m in METRICS], fontsize=7)
        ax2.set_xlabel("relative change vs baseline (%), 95% CI")
        ax2.legend(fontsize=7)
        ax2.set_title("Simulated online A/B (Table 4)")
    fig.tight_layout()
    return save_figure(fig, path)


def _case_review(paths, path: Path, depth: int) -> tuple[Path, list]:
    from fluidrec.codes import read_codes
    from fluidrec.data.io import Dataset

    ds = Dataset(paths.world)
    sl = ds.table("slices", ["slice_id", "domain", "title", "frame"])
    ids, codes = read_codes(paths.slice_codes)
    order = np.argsort(ids)
    sid = sl.column("slice_id").to_numpy()
    aligned = codes[order[np.searchsorted(ids[order], sid)]]
    return case_review_figure(
        aligned, sl.column("domain").to_numpy(zero_copy_only=False), sl.column("title").to_pylist(),
        sl.column("frame").to_pylist(), ds.frame_size, path, depth=depth,
    )  # fmt: skip


def _notes(cfg: ReproduceConfig, paths, results: dict) -> list[str]:
    conf = read_json(paths.root / "config.json")
    enc = conf["encoder"]["model"]
    rk = conf["ranker"]["model"]
    ds = results["dataset"]
    ab = results["online_ab"]
    ev = results["encoder"]
    return [
        f"Command: `fluidrec reproduce --scale {cfg.scale} --seed {cfg.seed} --out {paths.root}`. "
        "Every number below comes from this run's `results.json`; the paper's figures are quoted beside ours.",
        "",
        "**Sizes used** (reduced to fit two CPU cores; the paper's production run is six orders of magnitude larger):",
        f"- world: scale `{cfg.scale}`, {ds['n_impressions']:,} impressions, {ds['n_rooms']:,} rooms "
        f"(median life {ds['room_minutes_p50']:.1f} min), {ds['n_slices']:,} live slices, {ds['n_videos']:,} short videos, "
        f"CTR {ds['ctr']:.2%}; last day = test, {ds['share_test_rooms_unseen_in_train']:.1%} of test rooms unseen in training.",
        f"- encoder: text backbone `{enc['backbone']}` ({'first ' + str(enc['lm_layers']) if enc.get('lm_layers') else 'all'} layer(s)), "
        f"fusion `{enc['fusion']}`, {enc['text_tokens']} text tokens, {enc['visual_tokens']} visual tokens, "
        f"{conf['encoder']['train']['steps']} training steps; held-out live Q2I Recall@10 {ev['live']['q2i_recall@10']:.3f} "
        f"(video {ev['video']['q2i_recall@10']:.3f}), linear-probe accuracy on topic level 1 {ev['probe_acc_level1']:.2f}, level 2 {ev['probe_acc_level2']:.2f}.",
        f"- codes: RQ-KMeans {cfg.code_levels} levels x {cfg.codebook_size} codewords (the paper: 4 x 64); "
        f"full-code collision rate {results['codes'].get('collision_rate', float('nan')):.3f}.",
        f"- ranker: token width {rk['dim']}, {rk['layers']} fusion layer(s), {rk['heads']} attention head(s), one pass in time order, "
        f"batch {conf['ranker']['batch_size']}.",
        f"- online A/B: {ab['n_requests']:,} held-out requests of {ab['n_users']:,} users, up to {cfg.ab_candidates} live rooms "
        f"scored per request, slate of {ab['config']['slate']}; {cfg.n_boot} bootstrap resamples over users.",
        f"- encoder ablation (Table 6): {cfg.ablation_steps} training steps per variant, reference included (a reduced run; "
        "the main encoder above trains longer)" if cfg.ablation_steps else "- encoder ablation: skipped",
        "",
        "**How this protocol differs from the paper's** (read before comparing numbers):",
        "- Evaluation is offline with a frozen model: every arm trains one pass over days 0..n-2 in time order and is "
        "scored on the last day without further updates. Almost all test-day rooms are new, so no arm has a trained ID "
        "row for them; in production the ranker keeps training online during the day, which is when the item ID earns "
        "its keep (and where the paper measures).",
        "- The world's click model has a per-room random effect that only an item ID can learn, and content affinity "
        "that codes can carry; its parameters come from the papers or stated assumptions (docs/world.md) and were not "
        "tuned towards any arm.",
        "- Every arm keeps the author-ID token; persistent authors carry much of a room's content and quality.",
        "- Models, encoder and data are orders of magnitude smaller than the paper's; the staged warmup splits one "
        "pass into stages (0.3/0.2/0.2/0.1/rest), so each stage sees a few hundred thousand impressions.",
    ]


def render_outputs(cfg: ReproduceConfig, paths, results: dict) -> Path:
    """Write figures under ``figures/`` and ``report.md``; returns the report path."""
    from fluidrec.ranker.diagnostics import write_figures

    fig_dir = paths.figures
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    headline_figure(results, fig_dir / "headline.png")
    figures["Headline: offline AUC and simulated online A/B"] = "figures/headline.png"
    for arm, name, caption in (
        ("baseline", "fig_id_norm_vs_age.png", "Figure 1: item-ID embedding L2 norm vs room age (baseline arm)"),
        ("gate_learned", "fig_gate_by_id_norm.png", "Figure 5: converged gate weight on the item ID vs ID-norm bucket (LARM learnable gate)"),
    ):
        made = {p.name: p for p in write_figures(paths.ranker(arm))}
        if name in made:
            shutil.copyfile(made[name], fig_dir / name)
            figures[caption] = f"figures/{name}"
    q = results["codes"]
    levels = [k for k in range(1, cfg.code_levels + 1)]
    utilisation_figure([q[f"l{k}_utilisation"] for k in levels], [q[f"l{k}_perplexity"] for k in levels], cfg.codebook_size, fig_dir / "code_utilisation.png")
    figures["Code utilisation per level"] = "figures/code_utilisation.png"
    _, prefixes = _case_review(paths, fig_dir / "case_review.png", depth=min(2, cfg.code_levels))
    figures[f"Figure 4: case review, live slices and short videos sharing a code prefix {prefixes}"] = "figures/case_review.png"
    return write_report(paths.root, results, figures, _notes(cfg, paths, results))
