import math

import pytest

from fluidrec.experiments import paper
from fluidrec.experiments.config import TABLE3_ARMS, ReproduceConfig, all_arms
from fluidrec.experiments.report import discussion_md, table3_md, table4_md, table6_md
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
