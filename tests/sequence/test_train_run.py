"""Training loop, checkpoint, CLI and the long-sequence reproduction on a tiny world with its video feed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fluidrec.cli import main
from fluidrec.sequence.config import SequenceModelConfig, SequenceTrainConfig, sequence_config
from fluidrec.sequence.cost import fit_exponent, measure_step, synthetic_batch
from fluidrec.sequence.models import build_model


@pytest.fixture(scope="module")
def feed_world(tmp_path_factory):
    from fluidrec.data.world import WorldConfig, generate_world

    return generate_world(WorldConfig.for_scale("tiny", seed=0, video_feed=True), tmp_path_factory.mktemp("feed") / "world", progress=False)


TRAIN = ["--true-codes", "--seq-len", "16", "--recent", "4", "--tokens", "3", "--max-train", "600", "--max-test", "400",
         "--batch-size", "128", "--dim", "8", "--no-progress", "--json"]


def test_train_then_eval_gives_the_same_numbers(feed_world, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sequence", "train", "--dataset", str(feed_world), "--out", str(out), "--history", "semantic", "--depth", "2", *TRAIN]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert {p.name for p in out.iterdir()} >= {"model.pt", "model.pt.sha256", "config.json", "metrics.json"}
    model_cfg = json.loads((out / "config.json").read_text())["model"]
    assert (model_cfg["depth"], model_cfg["recent"], model_cfg["tokens"]) == (2, 4, 3)  # a compression model that folds 12 of 16
    assert main(["sequence", "eval", "--run", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["auc"] == trained["auc"] and evaluated["n_cold"] == trained["n_cold"] > 0
    again = tmp_path / "again"  # same seed, same numbers
    assert main(["sequence", "train", "--dataset", str(feed_world), "--out", str(again), "--history", "semantic", "--depth", "2", *TRAIN]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] == trained["auc"]


def test_bad_input_is_one_line_and_exit_2(feed_world, tmp_path, capsys):
    assert main(["sequence", "train", "--dataset", str(feed_world), "--out", str(tmp_path / "a"), "--depth", "5", *TRAIN]) == 2
    assert "depth 5 exceeds" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # nothing left behind
    assert main(["sequence", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "b"), *TRAIN]) == 2
    assert "manifest.json" in capsys.readouterr().err  # not a dataset: named, one line
    assert main(["sequence", "eval", "--run", str(tmp_path), "--json"]) == 2
    assert "not a `fluidrec sequence train` run" in capsys.readouterr().err


def test_reproduce_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "--paper", "long-sequence", "--scale", "tiny", "--seed", "0", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    results = json.loads((out / "results.json").read_text())
    cfg = sequence_config("tiny")
    assert set(results["table1"]) == {"id", *(f"sem{d}" for d in cfg.depths)}
    for row in results["table1"].values():
        assert set(row) == {"mean", "din", "full", "compress"} and all(0 < c["auc"] < 1 for c in row.values())
    assert results["sizes"]["rows"]["id"]["rows_medium"] == 30_001
    assert set(results["costs"]["table"]) == {"full", "compress"} and "peak_mem_128" in results["costs"]["ratios"]
    assert results["curve"]["arms"]["compress"]["longest_fitting"] == max(cfg.curve_lengths)  # compression fits every length
    assert summary["table1_auc"]["id"]["mean"] == round(results["table1"]["id"]["mean"]["auc"], 4)
    report = (out / "report.md").read_text()
    assert report.startswith("# Long-sequence reproduction") and "## Targets (issue 17)" in report
    assert "fixed budget: best compression AUC" in report and "keeps the R = 16 most recent events" in report
    assert (out / "figures" / "cost_vs_length.png").stat().st_size > 0 and (out / "figures" / "auc_vs_length.png").stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["train"]["seq_len"] == cfg.train.seq_len
    assert main(["reproduce", "--paper", "long-sequence", "--scale", "tiny", "--out", str(out), "--json"]) == 2  # no silent overwrite


def test_cost_measures_grow_with_length_for_full_attention_only():
    torch.manual_seed(0)
    cfg = dict(history="semantic", depth=2, dim=8, tokens=4, globals_=2)
    got = {}
    for arm in ("full", "compress"):
        model = build_model(SequenceModelConfig(arm=arm, **cfg), n_items=50, codebook_size=4)
        got[arm] = [measure_step(model, synthetic_batch(2, s, levels=4, n_items=50, codebook_size=4)) for s in (64, 256)]
    full, comp = got["full"], got["compress"]
    assert full[1]["flops_per_sample"] / full[0]["flops_per_sample"] > 8  # 4x S: attention is quadratic
    assert comp[1]["flops_per_sample"] / comp[0]["flops_per_sample"] < 2  # fixed T: only the fold grows
    assert full[1]["peak_bytes_per_sample"] > 2 * full[0]["peak_bytes_per_sample"] > 0
    assert full[1]["peak_bytes_per_sample"] > comp[1]["peak_bytes_per_sample"] > 0
    assert fit_exponent([1, 2, 4], [3.0, 12.0, 48.0]) == pytest.approx(2.0)


def test_config_validation():
    with pytest.raises(Exception, match="model.arm"):
        SequenceModelConfig(arm="rnn")
    with pytest.raises(Exception, match="divisible"):
        SequenceModelConfig(dim=10, heads=4)
    with pytest.raises(Exception, match="train.lr"):
        SequenceTrainConfig(lr=0)
    with pytest.raises(Exception, match="scale"):
        sequence_config("huge")
    with pytest.raises(Exception, match="fold_mode 'prefix' needs semantic"):
        SequenceModelConfig(history="id", fold_mode="prefix")
    with pytest.raises(Exception, match="fold_level 3, depth 2"):
        SequenceModelConfig(depth=2, fold_mode="prefix", fold_level=3)
    with pytest.raises(Exception, match="fold_level 2, depth 1"):
        SequenceModelConfig(depth=1, fold_level=2)  # the default kind-aware fold
    default = SequenceModelConfig()
    assert (default.fold_mode, default.fold_level, default.tokens, default.recent, default.globals_) == ("prefix_window", 1, 8, 64, 4)
    assert default.resolved_fold_mode == "prefix_window" and SequenceModelConfig(history="id").resolved_fold_mode == "window"
    with pytest.raises(Exception, match="model.recent"):
        SequenceModelConfig(recent=-1)
    assert SequenceModelConfig(arm="compress", tokens=8, recent=0).fold_for(100) == 13 and SequenceModelConfig(arm="full").fold_for(100) == 1
    assert np.isclose(SequenceModelConfig(arm="compress", fold=4).fold_for(100), 4)
    hybrid = SequenceModelConfig(arm="compress", tokens=8, recent=20)
    assert (hybrid.recent_for(100), hybrid.folded_len(100), hybrid.fold_for(100)) == (20, 80, 10)  # 80 older events in 8 tokens
    assert (hybrid.recent_for(12), hybrid.folded_len(12)) == (12, 0)  # a short history is kept whole
    assert SequenceModelConfig(arm="din", recent=20).recent_for(100) == 0
