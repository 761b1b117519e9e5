import argparse
import json

import pytest

from fluidrec.errors import FluidrecError
from fluidrec.ranker import cli as ranker_cli


def run(argv):
    """Parse with the ranker's own subparser and map user errors to exit 2, as fluidrec.cli.main does."""
    p = argparse.ArgumentParser()
    ranker_cli.register(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except FluidrecError as exc:
        print(f"fluidrec: error: {exc}")
        return 2


def test_train_eval_figures_end_to_end(toy, tmp_path, capsys):
    ds, codes = toy
    out = tmp_path / "gate"
    rc = run(["ranker", "train", "--dataset", str(ds), "--codes", str(codes), "--arm", "gate_learned", "--out", str(out),
              "--test-fraction", "0.25", "--batch-size", "512", "--quiet", "--cache", str(tmp_path / "cache")])
    assert rc == 0
    assert {"model.pt", "config.json", "train_summary.json", "diagnostics.json"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert run(["ranker", "eval", "--model", str(out), "--dataset", str(ds), "--cache", str(tmp_path / "cache"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["click"]["auc"] <= 1.0 and report["click"]["logloss"] > 0
    assert set(report["buckets"]) == {"age_lt10", "age_10_30", "age_ge30", "new_room", "seen_room"}
    assert report["buckets"]["new_room"]["n"] + report["buckets"]["seen_room"]["n"] == report["n"]
    diag = json.loads((out / "diagnostics.json").read_text())
    assert len(diag["gate_by_id_norm"]["mean_alpha"]) == 5 and sum(diag["id_norm_by_age"]["count"]) > 0
    assert run(["ranker", "figures", "--model", str(out)]) == 0
    assert (out / "fig_gate_by_id_norm.png").stat().st_size > 0 and (out / "fig_id_norm_vs_age.png").exists()


def test_bad_arm_and_mismatched_codes_exit_2(toy, tmp_path, capsys):
    ds, codes = toy
    assert run(["ranker", "train", "--dataset", str(ds), "--codes", str(codes), "--arm", "bogus", "--out", str(tmp_path / "x")]) == 2
    assert "unknown arm 'bogus'" in capsys.readouterr().out
    assert run(["ranker", "train", "--dataset", str(ds), "--codes", str(tmp_path), "--arm", "baseline", "--out", str(tmp_path / "y")]) == 2
    assert "slice_codes.parquet" in capsys.readouterr().out


def test_registered_in_main_cli():
    from fluidrec.cli import STAGE_CLIS

    assert "fluidrec.ranker.cli" in STAGE_CLIS


def test_preset_names_the_size_and_config_still_works_with_a_note(capsys):
    p = argparse.ArgumentParser()
    ranker_cli.register(p.add_subparsers(dest="command"))
    base = ["ranker", "train", "--dataset", "d", "--codes", "c", "--arm", "fluid", "--out", "o"]
    assert p.parse_args(base).preset == "demo"
    assert p.parse_args([*base, "--preset", "small"]).preset == "small"
    assert "deprecated" not in capsys.readouterr().err
    assert p.parse_args([*base, "--config", "small"]).preset == "small"  # the earlier flag name
    assert "--config is deprecated, use --preset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args([*base, "--config", "huge"])  # same choices as --preset
