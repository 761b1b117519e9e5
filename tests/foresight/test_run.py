"""The foresight run end to end on the tiny world (CLI, results keys, report, determinism)."""

from __future__ import annotations

import json

import pytest

from fluidrec.cli import main
from fluidrec.foresight.config import ARMS, STRATEGIES, TASKS, foresight_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("foresight") / "run"
    assert main(["foresight", "reproduce", "--scale", "tiny", "--seed", "0", "--out", str(out), "--no-progress", "--json"]) == 0
    return out


def test_tiny_run_writes_every_table(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    for arm in ARMS:
        for task in TASKS:
            assert 0.0 <= results["table1"][arm][task]["auc"] <= 1.0
            assert "gauc" in results["table1"][arm][task]
    for s in STRATEGIES:
        assert 0.0 <= results["table3"][s]["acc"] <= 1.0
    assert set(results["table2"]["arms"]) == {"plus_i", "plus_i_d"}
    assert (tiny_run / "report.md").read_text().startswith("# Foresight reproduction")
    assert (tiny_run / "figures" / "figure3_sid_timeline.png").stat().st_size > 0
    assert (tiny_run / "figures" / "figure4_retrieval.png").stat().st_size > 0
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["world_resolved"]["segments"] is True and cfg["scale"] == "tiny"


def test_tiny_run_is_deterministic(tiny_run, tmp_path):
    again = tmp_path / "again"
    assert main(["foresight", "reproduce", "--scale", "tiny", "--seed", "0", "--out", str(again), "--no-progress", "--json"]) == 0
    a = json.loads((tiny_run / "results.json").read_text())
    b = json.loads((again / "results.json").read_text())
    assert a["table1"] == b["table1"] and a["table3"] == b["table3"] and a["table2"]["arms"] == b["table2"]["arms"]


def test_refuses_an_existing_run_without_resume(tiny_run, capsys):
    assert main(["foresight", "reproduce", "--scale", "tiny", "--out", str(tiny_run), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_config_validation():
    with pytest.raises(Exception, match="scale"):
        foresight_config("huge")
    with pytest.raises(Exception, match="world override"):
        foresight_config("tiny", world={"no_such_field": 1})
