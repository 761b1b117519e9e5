import math

import pytest

from fluidrec.experiments import paper
from fluidrec.experiments.config import PEER_ROWS, TABLE3_ARMS, TABLE3_ROWS, TRUTH_ROWS, ReproduceConfig, all_arms
from fluidrec.experiments.report import codes_md, discussion_md, losses_md, spread_md, table3_md, table4_md, table6_md
from fluidrec.experiments.reproduce import build_tables, table3_row
from fluidrec.errors import ConfigError
from fluidrec.simulate.ab import METRICS


def test_paper_relative_changes_match_the_paper():
    # Table 3 as printed: +0.22% and -0.47% AUC vs the baseline
    assert paper.rel(0.7801, 0.7784) == pytest.approx(0.218, abs=1e-3)
    assert paper.rel(0.7748, 0.7784) == pytest.approx(-0.462, abs=1e-3)


def test_every_arm_named_by_a_table_is_trained_once():
    arms = all_arms()
    assert len(arms) == len(set(arms))
    assert set(TABLE3_ARMS.values()) <= set(arms)
    assert "fluid_stage1" in arms and "fluid_stage2" in arms


def _t3(fluid_auc):
    row = {"logloss": 0.2, "auc_new_room": 0.6, "auc_age_lt10": 0.6, "auc_age_10_30": 0.6, "auc_age_ge30": 0.6}
    return {"baseline": {"auc": 0.70, **row}, "slice": {"auc": 0.71, **row}, "no_id": {"auc": 0.69, **row}, "fluid": {"auc": fluid_auc, **row}}


def test_table3_shows_relative_changes_and_paper_column():
    md = table3_md(_t3(0.72))
    fluid_line = [ln for ln in md.splitlines() if ln.startswith("| FLUID")][0]
    assert "+2.86%" in fluid_line  # 0.72 / 0.70 - 1
    assert "0.7802 (+0.23%)" in fluid_line


def test_table4_marks_non_significant():
    sig = {"delta": 0.02, "ci_low": 0.01, "ci_high": 0.03}
    ns = {"delta": 0.01, "ci_low": -0.01, "ci_high": 0.03}
    t4 = {arm: {m: (sig if arm == "fluid" else ns) for m in METRICS} for arm in ("slice", "no_id", "fluid")}
    md = table4_md(t4)
    line = [ln for ln in md.splitlines() if ln.startswith("| Quality Watch Duration")][0]
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[1].startswith("n.s.") and cells[3] == "+2.00% [+1.00, +3.00]"


def test_discussion_reports_results_against_the_paper():
    text = discussion_md({"table3": _t3(0.68)})
    assert "FLUID" in text and "goes against the paper" in text
    text = discussion_md({"table3": _t3(0.72)})
    fluid = [ln for ln in text.splitlines() if "FLUID" in ln][0]
    assert "agrees in direction" in fluid


def test_report_text_does_not_depend_on_key_order():
    # a fresh run renders from insertion-ordered dicts, --resume from sorted results.json
    sig = {"delta": -0.02, "ci_low": -0.03, "ci_high": -0.01}
    t4 = {arm: {m: sig for m in METRICS} for arm in ("slice", "no_id", "fluid")}
    t6 = {v: {"probe_acc_level1": 0.5} for v in ("ours", "scratch_text", "dual_tower", "single_stage", "live_only")}
    flipped4 = {arm: dict(sorted(t4[arm].items())) for arm in sorted(t4)}
    flipped6 = dict(sorted(t6.items()))
    assert table4_md(t4) == table4_md(flipped4)
    assert table6_md(t6) == table6_md(flipped6)
    assert discussion_md({"table3": _t3(0.7), "table4": t4}) == discussion_md({"table3": _t3(0.7), "table4": flipped4})
    rows = [ln.split("|")[1].strip() for ln in table6_md(flipped6).splitlines()[2:]]
    assert rows == ["ours", "scratch_text", "dual_tower", "single_stage", "live_only"]
    down = [ln for ln in discussion_md({"table3": _t3(0.7), "table4": flipped4}).splitlines() if "FLUID" in ln and "A/B" in ln][0]
    assert down.index("Quality Watch Duration") < down.index("Stay Duration")  # the paper's metric order


def test_config_validation():
    with pytest.raises(ConfigError):
        ReproduceConfig(scale="huge")
    with pytest.raises(ConfigError):
        ReproduceConfig(ab_candidates=3)
    assert math.isfinite(ReproduceConfig.tiny().n_boot)


def test_auc_table_relative_to_our_baseline_and_names_rows():
    from fluidrec.experiments.report import TABLE7_NAMES, auc_table_md

    md = auc_table_md({"late": {"auc": 0.707}}, 0.70, paper.TABLE7, TABLE7_NAMES)
    line = md.splitlines()[-1]
    assert line.startswith("| Late: independent token") and "+1.00%" in line and "0.7801 (+0.22%)" in line


def test_table3_row_names_match_the_libraries():
    from fluidrec.ranker.names import PEER_ARMS
    from fluidrec.simulate.truth_rows import TRUTH_ROWS as SIM_TRUTH_ROWS

    assert TRUTH_ROWS == SIM_TRUTH_ROWS and PEER_ROWS == PEER_ARMS
    assert TABLE3_ROWS[-1] == "fluid_true_codes" and len(set(TABLE3_ROWS)) == len(TABLE3_ROWS)


def _report(auc, new_room_auc=0.6):
    click = {"auc": auc, "gauc": auc - 0.1, "logloss": 0.2}
    return {"click": click, "buckets": {"new_room": {"click": {**click, "auc": new_room_auc}}}}


TRUTH = {
    "position_only": {"auc": 0.60, "auc_new_room": 0.50},
    "ceiling_no_id": {"auc": 0.80, "auc_new_room": 0.70},
}


def test_table3_row_mean_sd_and_headroom_by_hand():
    row = table3_row([(0, _report(0.70, 0.60)), (1, _report(0.72, 0.64))], TRUTH, kind="neural")
    assert row["auc"] == pytest.approx(0.71) and row["auc_sd"] == pytest.approx(math.sqrt(2) * 0.01)  # sample sd of 0.70, 0.72
    assert row["auc_new_room"] == pytest.approx(0.62)
    assert row["headroom_share"] == pytest.approx(0.55)  # (0.71 - 0.60) / (0.80 - 0.60)
    assert row["headroom_share_new_room"] == pytest.approx(0.6)  # (0.62 - 0.50) / 0.20
    assert [s["headroom_share"] for s in row["seeds"]] == pytest.approx([0.5, 0.6])
    assert row["n_seeds"] == 2 and [s["ranker_seed"] for s in row["seeds"]] == [0, 1]
    one = table3_row([(0, _report(0.70))], None, kind="neural")
    assert math.isnan(one["auc_sd"]) and math.isnan(one["headroom_share"])  # one seed: spread unmeasured
    peer = table3_row([(0, _report(0.70))], TRUTH, kind="peer", deterministic=True)
    assert peer["auc_sd"] == 0.0


def test_build_tables_orders_table3_and_adds_lsa_to_table6():
    evals = {arm: _report(0.7) for arm in all_arms()} | {"lr": _report(0.65), "gbdt": _report(0.66), "fluid_true_codes": _report(0.75)}
    truth = {name: {"auc": 0.6, "auc_new_room": 0.5, "gauc": 0.6, "logloss": None, "headroom": 0.0, "headroom_new_room": 0.0} for name in TRUTH_ROWS}
    truth["ceiling_no_id"].update(auc=0.8, auc_new_room=0.7, headroom=1.0, headroom_new_room=1.0)
    seeded = {"fluid": [(0, _report(0.70)), (1, _report(0.72))]}
    t = build_tables(evals, None, {"ours": {"probe_acc_level1": 0.5}}, seeded=seeded, truth=truth, lsa={"probe_acc_level1": 0.4})
    assert list(t["table3"]) == list(TABLE3_ROWS)
    assert t["table3"]["fluid"]["auc"] == pytest.approx(0.71) and t["table3"]["baseline"]["n_seeds"] == 1
    assert t["table3"]["fluid_true_codes"]["headroom_share"] == pytest.approx(0.75)
    assert set(t["table6"]) == {"ours", "lsa"}


def _t3_full():
    t3 = _t3(0.72)
    for row in t3.values():
        row.update(auc_sd=0.002, n_seeds=3)
    t3["slice"]["auc_sd"] = 0.008  # slice - baseline = 0.01, bar 2 * 0.008: within noise
    t3["fluid_true_codes"] = {**t3["fluid"], "auc": 0.76, "auc_sd": 0.002}
    t3["ceiling_no_id"] = {"auc": 0.80, "auc_new_room": 0.7, "auc_sd": 0.0, "deterministic": True, "headroom_share": 1.0}
    t3["position_only"] = {"auc": 0.60, "auc_new_room": 0.5, "auc_sd": 0.0, "deterministic": True, "headroom_share": 0.0}
    for row in ("fluid", "fluid_true_codes"):
        t3[row]["headroom_share"] = (t3[row]["auc"] - 0.60) / 0.20
    return t3


def test_spread_reading_uses_twice_the_larger_sd():
    line = spread_md(_t3_full())[0]
    real, noise = line.split("within noise:")
    assert "fluid − baseline +0.0200 (bar 0.0040)" in real  # 0.72 - 0.70 > 2 * 0.002
    assert "slice − baseline +0.0100 (bar 0.0160)" in noise
    assert "one seed" in "\n".join(spread_md(_t3(0.72)))  # no sd: no verdict


def test_losses_split_the_headroom_between_encoder_and_ranker():
    enc, rk = losses_md(_t3_full())
    assert "60%" in enc and "80%" in enc and "+20 points" in enc and "a real gap" in enc  # (0.72, 0.76) -> 60%, 80%
    assert "20 points" in rk and "+0.0400" in rk


def test_table3_shows_truth_block_and_mean_sd():
    md = table3_md(_t3_full())
    assert md.splitlines()[0].startswith("| truth row")
    assert "position only (the floor)" in md
    fluid_line = [ln for ln in md.splitlines() if ln.startswith("| FLUID (")][0]
    assert "0.7200 ± 0.0020" in fluid_line and "| 60% |" in fluid_line


def test_codes_md_names_the_encoder_and_levels():
    q = {"encoder_preset": "lsa", "l1_used": 8, "l1_utilisation": 1.0, "l1_perplexity": 7.9, "purity_l1": 0.5, "nmi_l1": 0.25, "purity_l2": 0.4, "nmi_l2": 0.2}
    md = codes_md(q)
    assert "preset `lsa`" in md and "| 1 | 8 | 1.000 | 7.9 | 0.500 | 0.250 |" in md and md.splitlines()[-1].startswith("| 2 |")


def test_config_seeds_and_presets():
    assert ReproduceConfig(seed=4, seeds=3).ranker_seeds == (4, 5, 6)
    assert ReproduceConfig().seeds == 3 and ReproduceConfig.tiny().seeds == 2
    assert ReproduceConfig(encoder_preset="lsa").neural_encoder_preset == "demo"
    assert ReproduceConfig(scale="tiny", encoder_preset="lsa").neural_encoder_preset == "tiny"
    for bad in ({"seeds": 0}, {"encoder_preset": "bert"}, {"encoder_preset": "lsa", "encoder_steps": 10}):
        with pytest.raises(ConfigError):
            ReproduceConfig(**bad)

