"""Write ``report.md`` from the main job's ``results.json``: each table mirrors one
in the paper, with the paper's figures beside ours and relative changes computed
the same way (value / baseline - 1, in percent).

The discussion is generated from the numbers (which way each comparison went),
so a result against the paper reads as such.
"""

from __future__ import annotations

from pathlib import Path

from fluidrec.experiments import paper
from fluidrec.experiments.paper import rel
from fluidrec.simulate.ab import METRICS
from fluidrec.utils.io import atomic_path

ROW_NAMES = {
    "baseline": "baseline (item ID)",
    "slice": "baseline + slice LUCID",
    "no_id": "baseline w/o item ID",
    "fluid": "FLUID (slice + room LUCID, no ID)",
}
METRIC_NAMES = {
    "quality_watch_duration": "Quality Watch Duration",
    "quality_watch_sessions": "Quality Watch Sessions",
    "cold_start_room_views": "Cold-Start Room Views",
    "niche_room_views": "Niche Room Views",
    "unique_watched_tags": "Unique Watched Tags",
    "stay_duration": "Stay Duration",
}
TABLE7_NAMES = {
    "early_replace": "Early: replace item ID with LUCID",
    "early_concat": "Early: concat item ID + LUCID",
    "gate_learned": "Early: LARM learnable gate",
    "gate_feature": "Early: LARM feature gate",
    "late_em3": "Late: EM3 alignment loss",
    "late": "Late: independent token (= stage 1)",
    "naive_joint": "Naive: joint training from scratch",
    "stage1": "Staged: stage 1, slice add-on",
    "stage2": "Staged: stage 2, ID phase-out",
    "stage3": "Staged: stage 3, room add-on (FLUID)",
    "fluid_id_back": "After stage 3: add the item ID back",
}


def _f(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or x != x else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x:+.2f}%"


def table3_md(t3: dict) -> str:
    base = t3["baseline"]
    lines = [
        "| configuration | AUC | ΔAUC | logloss | Δlogloss | AUC new rooms | AUC age<10 min | AUC 10–30 | AUC ≥30 | paper AUC (Δ) | paper logloss (Δ) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, r in t3.items():
        p = paper.TABLE3[row]
        lines.append(
            f"| {ROW_NAMES.get(row, row)} | {_f(r['auc'])} | {_pct(rel(r['auc'], base['auc']))} | {_f(r['logloss'])} | "
            f"{_pct(rel(r['logloss'], base['logloss']))} | {_f(r.get('auc_new_room'))} | {_f(r.get('auc_age_lt10'))} | "
            f"{_f(r.get('auc_age_10_30'))} | {_f(r.get('auc_age_ge30'))} | {p['auc']:.4f} ({_pct(rel(p['auc'], paper.BASELINE_AUC))}) | "
            f"{p['logloss']:.4f} ({_pct(rel(p['logloss'], paper.BASELINE_LOGLOSS))}) |"
        )
    return "\n".join(lines)


# Row orders of the tables, so a report reads the same whether its results came from this
# process (insertion order) or from results.json (written with sorted keys, on --resume).
TABLE6_ROWS = ("ours", "scratch_text", "dual_tower", "single_stage", "live_only")


def ordered(d: dict, order) -> list:
    """Keys of d in the given order, then any others sorted."""
    return [k for k in order if k in d] + sorted(k for k in d if k not in order)


def table4_md(t4: dict) -> str:
    arms = ordered(t4, ROW_NAMES)
    head = "| metric | " + " | ".join(f"{ROW_NAMES.get(a, a)} (ours, 95% CI)" for a in arms) + " | " + " | ".join(f"paper {a}" for a in arms) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(arms))]
    for m in METRICS:
        ours = []
        for a in arms:
            r = t4[a][m]
            cell = f"{r['delta'] * 100:+.2f}% [{r['ci_low'] * 100:+.2f}, {r['ci_high'] * 100:+.2f}]"
            ours.append(cell if r["ci_low"] > 0 or r["ci_high"] < 0 else f"n.s. ({cell})")
        theirs = [("n.s." if paper.TABLE4[m].get(a) is None else _pct(paper.TABLE4[m][a])) for a in arms]
        lines.append(f"| {METRIC_NAMES[m]} | " + " | ".join(ours) + " | " + " | ".join(theirs) + " |")
    return "\n".join(lines)


def auc_table_md(rows: dict, base_auc: float, paper_auc: dict[str, float], names: dict[str, str] | None = None) -> str:
    """AUC rows with the change vs our baseline and the paper's AUC (and its change) beside them (Tables 5, 7)."""
    lines = ["| variant | AUC | ΔAUC vs baseline | paper AUC (Δ) |", "|---|---|---|---|"]
    for row, r in rows.items():
        p = paper_auc.get(row)
        paper_cell = f"{p:.4f} ({_pct(rel(p, paper.BASELINE_AUC))})" if p else "—"
        lines.append(f"| {(names or {}).get(row, row)} | {_f(r['auc'])} | {_pct(rel(r['auc'], base_auc))} | {paper_cell} |")
    return "\n".join(lines)


def table6_md(t6: dict) -> str:
    lines = [
        "| variant | live Q2I R@10/50 | live I2Q R@10/50 | video Q2I R@10/50 | video I2Q R@10/50 | probe L1 | probe L2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ordered(t6, TABLE6_ROWS):
        r = t6[row]

        def rr(dom: str, kind: str) -> str:
            d = r.get(dom, {})
            return f"{_f(d.get(f'{kind}_recall@10', float('nan')) * 100, 1)}/{_f(d.get(f'{kind}_recall@50', float('nan')) * 100, 1)}"

        lines.append(
            f"| {row} | {rr('live', 'q2i')} | {rr('live', 'i2q')} | {rr('video', 'q2i')} | {rr('video', 'i2q')} | "
            f"{_f(r.get('probe_acc_level1'), 3)} | {_f(r.get('probe_acc_level2'), 3)} |"
        )
    return "\n".join(lines)


def _agree(ours: float, theirs: float) -> str:
    if theirs == 0 or ours != ours:
        return "cannot compare"
    return "agrees in direction" if (ours > 0) == (theirs > 0) else "goes against the paper"


def discussion_md(results: dict) -> str:
    """Sentences generated from the numbers: direction of each headline comparison vs the paper."""
    t3 = results["table3"]
    base = t3["baseline"]["auc"]
    out = []
    for row in ("slice", "no_id", "fluid"):
        if row in t3:
            ours = rel(t3[row]["auc"], base)
            theirs = rel(paper.TABLE3[row]["auc"], paper.BASELINE_AUC)
            out.append(f"- **{ROW_NAMES[row]}**: AUC {_pct(ours)} vs the baseline (paper {_pct(theirs)}): {_agree(ours, theirs)}.")
    if "new_room_gap" in results:
        out.append(f"- On rooms never seen in training, {results['new_room_gap']}")
    t4 = results.get("table4", {})
    for arm in ordered(t4, ROW_NAMES):
        metrics = {m: t4[arm][m] for m in ordered(t4[arm], METRIC_NAMES)}
        ups = [METRIC_NAMES[m] for m, r in metrics.items() if r["ci_low"] > 0]
        downs = [METRIC_NAMES[m] for m, r in metrics.items() if r["ci_high"] < 0]
        out.append(
            f"- A/B **{ROW_NAMES.get(arm, arm)}**: significantly up: {', '.join(ups) or 'none'}; "
            f"significantly down: {', '.join(downs) or 'none'}."
        )
    t7 = results.get("table7", {})
    early = [r for r in ("early_replace", "early_concat", "gate_learned", "gate_feature") if r in t7]
    if early and "late" in t7:
        best_early = max(rel(t7[r]["auc"], base) for r in early)
        late = rel(t7["late"]["auc"], base)
        verdict = "as in the paper" if late > best_early else "against the paper"
        out.append(f"- Late fusion {_pct(late)} vs the best early fusion {_pct(best_early)}: {verdict}.")
    if "early_replace" in t7 and "stage3" in t7:
        scratch, staged = rel(t7["early_replace"]["auc"], base), rel(t7["stage3"]["auc"], base)
        better = "better than" if scratch > staged else "no better than"
        out.append(
            f"- The slice code alone trained from scratch on the whole stream (early replace) {_pct(scratch)} is {better} "
            f"the staged FLUID arm {_pct(staged)}: here the warmup's hand-offs between stages cost more than they give."
            if scratch > staged
            else f"- The slice code alone trained from scratch (early replace) {_pct(scratch)} is {better} the staged FLUID arm {_pct(staged)}."
        )
    if "naive_joint" in t7 and "stage3" in t7:
        naive, staged = rel(t7["naive_joint"]["auc"], base), rel(t7["stage3"]["auc"], base)
        verdict = "as in the paper" if staged > naive else "against the paper"
        out.append(f"- Staged warmup (stage 3) {_pct(staged)} vs naive joint training {_pct(naive)}: {verdict}.")
    return "\n".join(out)


def write_report(out: Path, results: dict, figures: dict[str, str], notes: list[str]) -> Path:
    """Write ``out/report.md``; ``figures`` maps a caption to a path relative to ``out``."""
    base_auc = results["table3"]["baseline"]["auc"]
    parts = [
        "# FLUID reproduction report",
        "",
        *notes,
        "",
        "## Table 3: offline CTR, ID baseline vs LUCID arms",
        "",
        table3_md(results["table3"]),
        "",
        "## Table 4: simulated online A/B test (relative change vs the baseline arm)",
        "",
        "Held-out requests are replayed; each arm ranks the rooms live at the request and the world's "
        "ground-truth model produces clicks and watch time. 95% CIs from a paired bootstrap over users; "
        "\"n.s.\" where the interval covers zero. Definitions: Quality Watch Duration = seconds of watches "
        "lasting at least the quality threshold; Quality Watch Sessions = their count; Cold-Start Room Views = "
        "views of rooms younger than the cold threshold; Niche Room Views = views of rooms whose author is "
        "among the least-exposed half of authors in training; Unique Watched Tags = distinct level-2 topics "
        "viewed per user; Stay Duration = all seconds watched.",
        "",
        table4_md(results["table4"]) if results.get("table4") else "(not run)",
        "",
        "## Table 5: LUCID embedding design (FLUID arm)",
        "",
        auc_table_md(results["table5"], base_auc, paper.TABLE5) if results.get("table5") else "(not run)",
        "",
        "## Table 6: encoder ablation",
        "",
        table6_md(results["table6"]) if results.get("table6") else "(not run)",
        "",
        "## Table 7: candidate-side integration of LUCID",
        "",
        auc_table_md(results["table7"], base_auc, paper.TABLE7, TABLE7_NAMES) if results.get("table7") else "(not run)",
        "",
        "## Figures",
        "",
        *[f"**{caption}**\n\n![{caption}]({path})\n" for caption, path in figures.items()],
        "## Discussion (generated from the numbers above)",
        "",
        discussion_md(results),
        "",
        "## Seconds per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in results.get("seconds", {}).items()],
        "",
    ]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
    return path
