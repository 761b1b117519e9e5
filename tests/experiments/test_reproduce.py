"""The whole main job at the tiny scale: every table present, every number finite."""

import json
import math

import pytest

from fluidrec.cli import main
from fluidrec.experiments.config import ReproduceConfig
from fluidrec.experiments.reproduce import RunPaths, _features, reproduce, stage_arm


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
    assert set(on_disk["table3"]) == {"baseline", "slice", "no_id", "fluid"}
    for row in on_disk["table3"].values():
        assert {"auc", "logloss", "auc_new_room"} <= set(row)
    assert set(on_disk["table4"]) == {"slice", "no_id", "fluid"}
    for metrics in on_disk["table4"].values():
        for m in metrics.values():
            assert {"delta", "ci_low", "ci_high"} <= set(m)
    for table in ("table3", "table5", "table7", "seconds"):
        values = list(_numbers(on_disk[table]))
        assert values and all(math.isfinite(v) for v in values), table
    assert json.loads((out / "config.json").read_text())["reproduce"]["seed"] == 0
    report = (out / "report.md").read_text()
    for heading in ("Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Discussion"):
        assert heading in report
    for fig in ("headline.png", "fig_id_norm_vs_age.png", "fig_gate_by_id_norm.png", "code_utilisation.png", "case_review.png"):
        assert (out / "figures" / fig).stat().st_size > 1000, fig


def test_resume_skips_finished_stages_and_keeps_results(tiny_run, capsys):
    out, results = tiny_run
    again = reproduce(ReproduceConfig.tiny(seed=0), out, resume=True)
    printed = capsys.readouterr().err
    assert "[ranker_fluid] cached" in printed and "[world] cached" in printed
    assert json.dumps(again["table3"], sort_keys=True) == json.dumps(results["table3"], sort_keys=True)


def test_same_seed_same_numbers(tiny_run, tmp_path):
    out, results = tiny_run
    cfg = ReproduceConfig.tiny(seed=0)
    paths = RunPaths(out)
    feats = _features(cfg, paths)
    # retrain one arm from scratch into another run directory: same seed, same evaluation
    again = stage_arm(cfg, RunPaths(tmp_path), "fluid", feats)
    assert again["click"] == results["arms"]["fluid"]["click"]


def test_resume_refuses_a_different_config(tiny_run, capsys):
    out, _ = tiny_run
    assert main(["reproduce", "--scale", "tiny", "--seed", "1", "--out", str(out), "--resume"]) == 2
    assert "different configuration" in capsys.readouterr().err
