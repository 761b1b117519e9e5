"""Write ``report.md`` from the main job's ``results.json``: each table mirrors one
in the paper, with the paper's figures beside ours and relative changes computed
the same way (value / baseline - 1, in percent).

The discussion is generated from the numbers (which way each comparison went),
so a result against the paper reads as such.
"""

from __future__ import annotations

from pathlib import Path

from fluidrec.experiments import paper
from fluidrec.experiments.config import TABLE3_ROWS
from fluidrec.experiments.paper import rel
from fluidrec.simulate.ab import METRICS
from fluidrec.utils.io import atomic_path

ROW_NAMES = {
    "baseline": "baseline (item ID)",
    "slice": "baseline + slice LUCID",
    "no_id": "baseline w/o item ID",
    "fluid": "FLUID (slice + room LUCID, no ID)",
    "fluid_true_codes": "FLUID on the true-topic codes",
    "lr": "peer: logistic regression",
    "gbdt": "peer: LightGBM",
    "oracle": "bound: oracle (true click probability)",
    "random": "bound: random order",
}
TRUTH_NAMES = {
    "oracle": "oracle (the world's own click logit)",
    "ceiling_no_id": "ceiling without item ID (no room effect, no pair noise)",
    "content_only": "content affinity only",
    "position_only": "position only (the floor)",
}
NEURAL_ROWS = ("baseline", "slice", "no_id", "fluid", "fluid_true_codes")
METRIC_NAMES = {
    "quality_watch_duration": "Quality Watch Duration",
    "quality_watch_sessions": "Quality Watch Sessions",
    "cold_start_room_views": "Cold-Start Room Views",
    "niche_room_views": "Niche Room Views",
    "unique_watched_tags": "Unique Watched Tags",
    "stay_duration": "Stay Duration",
    "expected_quality_watch_duration": "Quality Watch Duration, expected (no outcome draws)",
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


def _pm(mean: float | None, sd: float | None, digits: int = 4) -> str:
    """``mean ± sd``; the mean alone when there is no spread to show (one seed, or a deterministic row)."""
    if sd is None or sd != sd or sd == 0:
        return _f(mean, digits)
    return f"{_f(mean, digits)} ± {_f(sd, digits)}"


def _share_pct(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x * 100:.0f}%"


def truth_md(t3: dict) -> str:
    """The truth block of Table 3: the world's own scores on the test impressions."""
    lines = ["| truth row | AUC | AUC new rooms | GAUC | logloss | headroom share | headroom share, new rooms |", "|---|---|---|---|---|---|---|"]
    for row in TRUTH_NAMES:
        if row in t3:
            r = t3[row]
            lines.append(
                f"| {TRUTH_NAMES[row]} | {_f(r['auc'])} | {_f(r.get('auc_new_room'))} | {_f(r.get('gauc'))} | {_f(r.get('logloss'))} | "
                f"{_share_pct(r.get('headroom_share'))} | {_share_pct(r.get('headroom_share_new_room'))} |"
            )
    return "\n".join(lines)


def table3_md(t3: dict) -> str:
    """Table 3: the truth block (when the world's truth is known), then the peers and neural arms (mean ± sd over seeds)."""
    base = t3["baseline"]
    lines = [
        "| configuration | seeds | AUC | ΔAUC | headroom share | logloss | Δlogloss | AUC new rooms | headroom share, new rooms | "
        "AUC age<10 min | AUC 10–30 | AUC ≥30 | paper AUC (Δ) | paper logloss (Δ) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ordered(t3, TABLE3_ROWS):
        if row in TRUTH_NAMES:
            continue
        r = t3[row]
        p = paper.TABLE3.get(row)
        paper_cells = (
            f"{p['auc']:.4f} ({_pct(rel(p['auc'], paper.BASELINE_AUC))}) | {p['logloss']:.4f} ({_pct(rel(p['logloss'], paper.BASELINE_LOGLOSS))})"
            if p
            else "— | —"
        )
        seeds = "1 (deterministic)" if r.get("deterministic") else str(r.get("n_seeds", 1))
        lines.append(
            f"| {ROW_NAMES.get(row, row)} | {seeds} | {_pm(r['auc'], r.get('auc_sd'))} | {_pct(rel(r['auc'], base['auc']))} | "
            f"{_share_pct(r.get('headroom_share'))} | {_f(r['logloss'])} | {_pct(rel(r['logloss'], base['logloss']))} | "
            f"{_pm(r.get('auc_new_room'), r.get('auc_new_room_sd'))} | {_share_pct(r.get('headroom_share_new_room'))} | "
            f"{_f(r.get('auc_age_lt10'))} | {_f(r.get('auc_age_10_30'))} | {_f(r.get('auc_age_ge30'))} | {paper_cells} |"
        )
    arms = "\n".join(lines)
    if not any(row in t3 for row in TRUTH_NAMES):
        return arms
    return truth_md(t3) + "\n\n" + arms


def spread_verdict(a: dict, b: dict, key: str = "auc") -> tuple[float, float | None]:
    """(difference a - b, the bar it must clear: twice the larger sd; None when a spread is unknown)."""
    sds = [r.get(f"{key}_sd", float("nan")) for r in (a, b)]
    sds = [0.0 if r.get("deterministic") else sd for r, sd in zip((a, b), sds)]
    bar = None if any(sd is None or sd != sd for sd in sds) else 2.0 * max(sds)
    return a[key] - b[key], bar


def _is_real(diff: float, bar: float | None) -> bool | None:
    return None if bar is None or diff != diff else abs(diff) > bar


def spread_md(t3: dict) -> list[str]:
    """Which differences between the neural rows clear twice the larger sd (DESIGN.md, "Spread")."""
    rows = [r for r in NEURAL_ROWS if r in t3]
    real, noise, unknown = [], [], []
    for i, b in enumerate(rows):
        for a in rows[i + 1 :]:
            diff, bar = spread_verdict(t3[a], t3[b])
            cell = f"{a} − {b} {diff:+.4f}" + ("" if bar is None else f" (bar {bar:.4f})")
            {True: real, False: noise, None: unknown}[_is_real(diff, bar)].append(cell)
    n = max((t3[r].get("n_seeds", 1) for r in rows), default=1)
    out = [f"- Spread ({n} ranker seed(s); an AUC difference is real only beyond twice the larger sd, the bar): "
           f"real: {', '.join(real) or 'none'}; within noise: {', '.join(noise) or 'none'}."]  # fmt: skip
    if unknown:
        out.append(f"- No spread measured (one seed), so no verdict: {', '.join(unknown)}.")
    return out


def losses_md(t3: dict) -> list[str]:
    """Where the headroom goes: encoder + quantiser (FLUID vs true codes) and ranker (true codes vs ceiling)."""
    if not all(r in t3 for r in ("fluid", "fluid_true_codes", "ceiling_no_id")):
        return []
    fl, tc, ceil = t3["fluid"], t3["fluid_true_codes"], t3["ceiling_no_id"]

    def verdict(a: dict, b: dict) -> str:
        real = _is_real(*spread_verdict(a, b))
        return "cannot tell (one seed)" if real is None else ("a real gap" if real else "within noise")

    enc_pts = (tc["headroom_share"] - fl["headroom_share"]) * 100
    rk_pts = (1.0 - tc["headroom_share"]) * 100
    return [
        f"- Encoder's share: FLUID on the learned codes reaches {_share_pct(fl['headroom_share'])} of the headroom "
        f"(position only → ceiling without ID), on the true-topic codes {_share_pct(tc['headroom_share'])}: the true codes "
        f"add {enc_pts:+.0f} points, what the encoder and quantiser lose (AUC {tc['auc'] - fl['auc']:+.4f}, {verdict(tc, fl)}).",
        f"- Ranker's share: on the true-topic codes the ranker still leaves {rk_pts:.0f} points of the headroom "
        f"(AUC {ceil['auc'] - tc['auc']:+.4f} to the ceiling, {verdict(ceil, tc)}).",
    ]


# Row orders of the tables, so a report reads the same whether its results came from this
# process (insertion order) or from results.json (written with sorted keys, on --resume).
TABLE6_ROWS = ("ours", "scratch_text", "dual_tower", "single_stage", "live_only", "lsa", "oracle")


def ordered(d: dict, order) -> list:
    """Keys of d in the given order, then any others sorted."""
    return [k for k in order if k in d] + sorted(k for k in d if k not in order)


def _paper_ab(metric: str, arm: str) -> str:
    row = paper.TABLE4.get(metric)
    if row is None or arm not in row:
        return "—"
    return "n.s." if row[arm] is None else _pct(row[arm])


def table4_md(t4: dict) -> str:
    """Table 4: every metric's relative change vs the baseline arm per arm (95% CI), the paper's beside it."""
    arms = ordered(t4, ROW_NAMES)
    paper_arms = [a for a in arms if a in paper.TABLE4["quality_watch_duration"]]
    head = "| metric | " + " | ".join(f"{ROW_NAMES.get(a, a)} (ours, 95% CI)" for a in arms) + " | " + " | ".join(f"paper {a}" for a in paper_arms) + " |"
    lines = [head, "|" + "---|" * (1 + len(arms) + len(paper_arms))]
    for m in [m for m in METRIC_NAMES if m in t4[arms[0]]]:
        ours = []
        for a in arms:
            r = t4[a][m]
            cell = f"{r['delta'] * 100:+.2f}% [{r['ci_low'] * 100:+.2f}, {r['ci_high'] * 100:+.2f}]"
            ours.append(cell if r["ci_low"] > 0 or r["ci_high"] < 0 else f"n.s. ({cell})")
        lines.append(f"| {METRIC_NAMES[m]} | " + " | ".join(ours) + " | " + " | ".join(_paper_ab(m, a) for a in paper_arms) + " |")
    return "\n".join(lines)


def power_md(t4: dict) -> str:
    """Per arm: the 95% CI half-width and the minimum detectable effect (5% two-sided, 80% power) of each QWD."""
    lines = ["| arm | QWD: CI half-width | QWD: MDE | expected QWD: CI half-width | expected QWD: MDE |", "|---|---|---|---|---|"]
    for a in ordered(t4, ROW_NAMES):
        q, e = t4[a].get("quality_watch_duration", {}), t4[a].get("expected_quality_watch_duration", {})

        def pts(r: dict, key: str) -> str:
            return "—" if key not in r else f"{r[key] * 100:.1f} pts"

        lines.append(f"| {ROW_NAMES.get(a, a)} | {pts(q, 'half_width')} | {pts(q, 'mde')} | {pts(e, 'half_width')} | {pts(e, 'mde')} |")
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
    """Table 6 rows (seed mean ± sd when the row has several seeds), recall in percent."""
    from fluidrec.encoder.ablation import metric_value

    lines = [
        "| variant | live Q2I R@10/50 | live I2Q R@10/50 | video Q2I R@10/50 | video I2Q R@10/50 | probe L1 | probe L2 | probe L3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ordered(t6, TABLE6_ROWS):
        r = t6[row]
        sd = r.get("sd") or {}

        def cell(key: str, scale: float, digits: int) -> str:
            v = metric_value(r, key)
            if v is None:
                return "—"
            s = sd.get(key)
            return _f(v * scale, digits) + ("" if s is None else f"±{_f(s * scale, digits)}")

        def rr(dom: str, kind: str) -> str:
            return f"{cell(f'{dom}.{kind}_recall@10', 100, 1)}/{cell(f'{dom}.{kind}_recall@50', 100, 1)}"

        probes = " | ".join(cell(f"probe_acc_level{lv}", 1, 3) for lv in (1, 2, 3))
        lines.append(f"| {row} | {rr('live', 'q2i')} | {rr('live', 'i2q')} | {rr('video', 'q2i')} | {rr('video', 'i2q')} | {probes} |")
    return "\n".join(lines)


def table6_comparisons_md(results: dict) -> list[str]:
    """Each Table 6 row against ``ours``: the difference and whether it exceeds the seed spread."""
    from fluidrec.encoder.ablation import comparisons_md

    cmp = results.get("table6_comparisons")
    if not cmp:
        return []
    return ["Differences to `ours` in points (the larger seed sd of the two rows is the spread):", "", comparisons_md(cmp), ""]


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
    out.extend(spread_md(t3))
    out.extend(losses_md(t3))
    peers = [r for r in ("lr", "gbdt") if r in t3]
    if peers and "fluid" in t3:
        best = max(peers, key=lambda r: t3[r]["auc"])
        diff, bar = spread_verdict(t3["fluid"], t3[best])
        real = _is_real(diff, bar)
        word = "cannot tell (one seed)" if real is None else ("real" if real else "within noise")
        out.append(f"- FLUID vs the better classical peer ({ROW_NAMES[best]}, {_f(t3[best]['auc'])}): AUC {diff:+.4f}, {word}.")
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


def codes_md(q: dict) -> str:
    """Per level: utilisation and perplexity of the learned codes, purity and NMI of the code prefix vs the true topic prefix."""
    levels = sorted({int(k[1:].split("_")[0]) for k in q if k.startswith("l") and k.endswith("_utilisation")} | {
        int(k.rsplit("_l", 1)[1]) for k in q if k.startswith(("purity_l", "nmi_l"))
    })  # fmt: skip
    head = f"Codes from encoder preset `{q['encoder_preset']}`. " if q.get("encoder_preset") else ""
    lines = [
        head + "Purity and NMI compare the code prefix of depth l with the world's topic prefix of depth l "
        "(a code shorter than the taxonomy is scored with its full code at the deeper levels); 1.0 = the prefix is the topic.",
        "",
        "| level | used codewords | utilisation | perplexity | purity | NMI |",
        "|---|---|---|---|---|---|",
    ]
    for lv in levels:
        lines.append(
            f"| {lv} | {q.get(f'l{lv}_used', '—')} | {_f(q.get(f'l{lv}_utilisation'), 3)} | {_f(q.get(f'l{lv}_perplexity'), 1)} | "
            f"{_f(q.get(f'purity_l{lv}'), 3)} | {_f(q.get(f'nmi_l{lv}'), 3)} |"
        )
    return "\n".join(lines)


def streaming_md(results: dict) -> list[str]:
    """Table 3 under the streaming protocol, when it ran."""
    t3s = results.get("table3_streaming")
    if not t3s:
        return []
    return [
        "### Table 3 under the streaming protocol (test-then-train)",
        "",
        "The same trained arms, evaluated as production runs them: the test day's impressions arrive in time order in "
        "batches; each batch is scored first, then trained on (same optimizers and rates as training). A test room's "
        "item-ID row therefore learns while the room is on air. Truth rows and the peers (batch fits) are the frozen ones.",
        "",
        table3_md(t3s),
        "",
    ]


def closed_loop_md(results: dict) -> list[str]:
    """Table 4 in closed loop (user split and mirror), with CI half-widths and minimum detectable effects."""
    out: list[str] = []
    if results.get("table4"):
        out += ["Replay: CI half-width and minimum detectable effect (5% two-sided, 80% power) of quality watch duration.", "", power_md(results["table4"]), ""]
    meta = results.get("online_ab_closed", {})
    for key, title, text in (
        ("table4_closed", "user split", CLOSED_USER_TEXT),
        ("table4_mirror", "mirror", CLOSED_MIRROR_TEXT),
    ):
        if not results.get(key):
            continue
        m = meta.get("user" if key == "table4_closed" else "mirror", {})
        sizes = f" {m.get('n_requests', 0):,} requests of {m.get('n_users', 0):,} users; users per arm {m.get('users_per_arm', {})}." if m else ""
        out += [f"### Table 4, closed loop ({title})", "", text + sizes, "", table4_md(results[key]), "", power_md(results[key]), ""]
    return out


CLOSED_USER_TEXT = (
    "Every request of the test day in event time. Users are split between the arms by a seeded hash of the user id "
    "(disjoint users, as in a production A/B); each arm ranks the live rooms for its users, the world answers, and the arm "
    "trains online on the impressions it served, once per window, while its users' histories grow with the clicks it "
    "caused. Oracle (true click probability) and random are bounds. Changes are of per-user means between groups, "
    "CUPED-adjusted on covariates no arm can move (test-day requests; training-period impressions, clicks, long views); "
    "95% CIs from a bootstrap within each group."
)
CLOSED_MIRROR_TEXT = (
    "The same closed loop, but every arm serves every user in its own copy of the world (a simulator can): users pair "
    "across arms and the candidates and outcome draws of a (request, room) are common random numbers, so the paired "
    "bootstrap over users is far tighter than the split's."
)


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
        "Truth rows are the world's own scores on the same test impressions; an arm's headroom share is "
        "(AUC − position only) / (ceiling without ID − position only): 0 = no better than position, 100% = as good as "
        "any model without an item ID can be (above 100% needs per-room memorisation). Neural rows: mean ± sample sd over "
        "ranker seeds.",
        "",
        table3_md(results["table3"]),
        "",
        *streaming_md(results),
        "## Codes: utilisation and agreement with the true topic path",
        "",
        codes_md(results.get("codes", {})),
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
        *closed_loop_md(results),
        "## Table 5: LUCID embedding design (FLUID arm)",
        "",
        auc_table_md(results["table5"], base_auc, paper.TABLE5) if results.get("table5") else "(not run)",
        "",
        "## Table 6: encoder ablation",
        "",
        table6_md(results["table6"]) if results.get("table6") else "(not run)",
        "",
        *table6_comparisons_md(results),
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
