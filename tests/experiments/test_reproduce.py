"""The whole main job at the tiny scale: every table present, every number finite."""

import dataclasses
import json
import math

import numpy as np
import pytest

from fluidrec.cli import main
from fluidrec.experiments.config import NEURAL_ROWS, TABLE3_ROWS, TRUTH_ROWS, ReproduceConfig
from fluidrec.experiments.reproduce import RunPaths, _features, reproduce, stage_arm, stage_codes_oracle, stage_encoder, stage_truth


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "run"
    results = reproduce(ReproduceConfig.tiny(seed=0), out)
    return out, results


def test_every_table_present_and_finite(tiny_run):
    out, results = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    for key in ("table3", "table4", "table5", "table6", "table7", "seconds"):
        assert on_disk[key], key
    t3 = on_disk["table3"]
    assert list(results["table3"]) == list(TABLE3_ROWS)  # truth rows, lr, gbdt, baseline, slice, no_id, fluid, fluid_true_codes
    assert set(t3) == set(TABLE3_ROWS)
    for row in t3.values():
        assert {"auc", "auc_sd", "auc_new_room", "auc_new_room_sd", "gauc", "logloss", "headroom_share", "headroom_share_new_room", "seeds"} <= set(row)
    for row in NEURAL_ROWS:  # two ranker seeds (ReproduceConfig.tiny), each one's numbers kept
        assert [s["ranker_seed"] for s in t3[row]["seeds"]] == [0, 1], row
        assert t3[row]["auc"] == pytest.approx(sum(s["auc"] for s in t3[row]["seeds"]) / 2)
        assert t3[row]["auc_sd"] > 0, row  # init seeds differ, so do the fits
    assert t3["slice"]["seeds"][0]["auc"] == on_disk["arms"]["fluid_stage1"]["click"]["auc"]
    assert t3["fluid"]["seeds"][1]["auc"] == on_disk["arms"]["fluid@1"]["click"]["auc"]
    for row in ("lr", "gbdt", *TRUTH_ROWS):
        assert t3[row]["auc_sd"] == 0.0 and t3[row]["deterministic"], row
    assert t3["position_only"]["headroom_share"] == 0.0 and t3["ceiling_no_id"]["headroom_share"] == 1.0
    pos, ceil = t3["position_only"]["auc"], t3["ceiling_no_id"]["auc"]
    assert t3["fluid"]["headroom_share"] == pytest.approx((t3["fluid"]["auc"] - pos) / (ceil - pos))
    assert t3["oracle"]["auc"] > t3["ceiling_no_id"]["auc"] > t3["position_only"]["auc"]
    codes = on_disk["codes"]
    for k in range(1, 5):
        assert 0 < codes[f"purity_l{k}"] <= 1 and 0 <= codes[f"nmi_l{k}"] <= 1
    assert codes["encoder_preset"] == "tiny"
    assert {"ours", "lsa"} <= set(on_disk["table6"])
    assert 0 <= on_disk["table6"]["lsa"]["live"]["q2i_recall@10"] <= 1
    assert (out / "codes_oracle" / "slice_codes.parquet").exists() and (out / "rankers" / "fluid_true_codes@1" / "model.pt").exists()
    assert set(on_disk["table4"]) == {"slice", "no_id", "fluid"}
    for metrics in on_disk["table4"].values():
        for m in metrics.values():
            assert {"delta", "ci_low", "ci_high"} <= set(m)
    for table in ("table3", "table5", "table7", "seconds"):
        values = list(_numbers(on_disk[table]))
        assert values and all(math.isfinite(v) for v in values), table
    assert json.loads((out / "config.json").read_text())["reproduce"]["seed"] == 0
    report = (out / "report.md").read_text()
    for heading in ("Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Discussion", "true topic path"):
        assert heading in report
    for text in ("position only (the floor)", "FLUID on the true-topic codes", "Encoder's share", "Spread (2 ranker seed(s)", "preset `tiny`"):
        assert text in report, text
    for fig in ("headline.png", "fig_id_norm_vs_age.png", "fig_gate_by_id_norm.png", "code_utilisation.png", "case_review.png"):
        assert (out / "figures" / fig).stat().st_size > 1000, fig


def test_streaming_protocol_and_closed_loop_tables(tiny_run):
    out, _ = tiny_run
    r = json.loads((out / "results.json").read_text())
    t3s = r["table3_streaming"]
    assert set(t3s) == set(r["table3"])
    for row in NEURAL_ROWS:
        assert t3s[row]["protocol"] == "streaming" and [s["ranker_seed"] for s in t3s[row]["seeds"]] == [0, 1]
        assert t3s[row]["auc"] != r["table3"][row]["auc"]  # the arms kept learning on the test day
    assert t3s["gbdt"]["protocol"] == "frozen" and t3s["gbdt"]["auc"] == r["table3"]["gbdt"]["auc"]
    for table in ("table4_closed", "table4_mirror"):
        t4 = r[table]
        assert set(t4) == {"slice", "no_id", "fluid", "oracle", "random"}, table
        for arm in t4.values():
            assert arm["half_width_qwd"] == arm["quality_watch_duration"]["half_width"] > 0
            assert {"delta", "ci_low", "ci_high", "significant", "mde"} <= set(arm["stay_duration"])
    mirror = r["table4_mirror"]
    assert mirror["oracle"]["expected_quality_watch_duration"]["delta"] > mirror["random"]["expected_quality_watch_duration"]["delta"]
    assert r["table4_closed"]["fluid"]["quality_watch_duration"]["adjusted"]  # CUPED under the user split
    meta = r["online_ab_closed"]["user"]
    assert sum(meta["users_per_arm"].values()) == meta["n_users"] and len(meta["users_per_arm"]) == 6
    assert r["online_ab_closed"]["mirror"]["users_per_arm"]["fluid"] == r["online_ab_closed"]["mirror"]["n_users"]
    for fig in ("auc_by_age_protocols.png", "closed_loop_qwd_user.png", "closed_loop_qwd_mirror.png"):
        assert (out / "figures" / fig).stat().st_size > 1000, fig
    report = (out / "report.md").read_text()
    for text in ("streaming protocol (test-then-train)", "Table 4, closed loop (user split)", "Table 4, closed loop (mirror)", "MDE"):
        assert text in report, text


def test_room_code_lookup_per_slice_matches_the_causal_vote(tiny_run):
    from fluidrec.codes import room_codes
    from fluidrec.experiments.online import SliceCodeIndex

    out, _ = tiny_run
    paths = RunPaths(out)
    idx = SliceCodeIndex(paths.slice_codes, paths.world)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(idx.live_ids), 500)
    ts = idx.live_start[pick] + rng.integers(0, 120_000, 500)  # any time while the slice is on air
    expect = room_codes(idx.live_room[pick], ts, idx.live_room, idx.live_start, idx.live_codes)
    np.testing.assert_array_equal(idx.room_code(idx.live_ids[pick]), expect)


def test_simulate_ab_and_streaming_eval_from_the_cli(tiny_run, capsys):
    out, _ = tiny_run
    assert main(["simulate", "ab", "--run", str(out), "--mode", "closed", "--assignment", "user", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert json.loads((out / "ab_closed_user.json").read_text())["arms"] == res["arms"]
    # the whole loop again (online training included): the main job's numbers, exactly
    main_job = json.loads((out / "results.json").read_text())["table4_closed"]
    assert {arm: {m: d for m, d in v.items() if m != "half_width_qwd"} for arm, v in main_job.items()} == res["arms"]
    assert main(["simulate", "ab", "--run", str(out / "world")]) == 2
    assert "not a finished main-job run" in capsys.readouterr().err
    assert main(["ranker", "eval", "--model", str(out / "rankers" / "fluid"), "--dataset", str(out / "world"), "--protocol", "streaming", "--json"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert streamed["protocol"] == "streaming"
    assert streamed["click"]["auc"] == pytest.approx(json.loads((out / "rankers" / "fluid" / "eval_streaming.json").read_text())["click"]["auc"])


def test_resume_skips_finished_stages_and_keeps_results(tiny_run, capsys):
    out, results = tiny_run
    again = reproduce(ReproduceConfig.tiny(seed=0), out, resume=True)
    printed = capsys.readouterr().err
    assert "[ranker_fluid] cached" in printed and "[world] cached" in printed and "[ranker_fluid_true_codes@1] cached" in printed
    assert "running ..." not in printed  # a finished run recomputes no stage
    assert json.dumps(again["table3"], sort_keys=True) == json.dumps(results["table3"], sort_keys=True)


def test_same_seed_same_numbers(tiny_run, tmp_path):
    out, results = tiny_run
    cfg = ReproduceConfig.tiny(seed=0)
    paths = RunPaths(out)
    feats = _features(cfg, paths)
    # retrain one arm from scratch into another run directory: same seed, same evaluation
    again = stage_arm(cfg, RunPaths(tmp_path), "fluid", feats)
    assert again["click"] == results["arms"]["fluid"]["click"]


def test_finished_run_needs_resume_or_force(tiny_run, capsys):
    out, _ = tiny_run  # (a changed config on --resume recomputes what it affects: tests/experiments/test_stages.py)
    before = (out / "config.json").read_text()
    assert main(["reproduce", "--scale", "tiny", "--seed", "1", "--out", str(out)]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert (out / "config.json").read_text() == before
    records = [json.loads(p.read_text()) for p in (out / "stages").glob("*.json")]
    assert records and all(len(r["key"]) == 16 for r in records)  # every stage record is keyed


def test_no_world_truth_skips_truth_rows_and_true_codes(tmp_path):
    paths = RunPaths(tmp_path)  # no world/ truth: an imported real dataset would look like this
    cfg = ReproduceConfig.tiny()
    assert "no world truth" in stage_truth(cfg, paths, features=None)["skipped"]
    assert "no world truth" in stage_codes_oracle(cfg, paths)["skipped"]


def test_lsa_preset_trains_the_main_encoder(tiny_run, tmp_path):
    out, _ = tiny_run
    paths = RunPaths(tmp_path)
    paths.world.symlink_to(out / "world")
    cfg = dataclasses.replace(ReproduceConfig.tiny(), encoder_preset="lsa")
    assert cfg.neural_encoder_preset == "tiny"
    ev = stage_encoder(cfg, paths)
    assert json.loads((paths.encoder / "config.json").read_text())["kind"] == "lsa"
    assert 0 <= ev["live"]["q2i_recall@10"] <= 1


def test_cli_rejects_encoder_steps_for_lsa(tmp_path, capsys):
    args = ["reproduce", "--scale", "tiny", "--encoder-preset", "lsa", "--encoder-steps", "3", "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert "lsa" in capsys.readouterr().err
