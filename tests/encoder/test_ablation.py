"""Table-6 ablation: reusing an already-trained reference model, and the budget builder."""

import json

import pytest

from fluidrec.encoder.ablation import ablation_reproduce, run_ablation
from fluidrec.encoder.config import encoder_demo, encoder_tiny
from fluidrec.encoder.evaluate import evaluate_encoder
from fluidrec.encoder.train import train_encoder
from fluidrec.errors import UsageError


@pytest.fixture(scope="module")
def reference(enc_dataset, tmp_path_factory):
    return train_encoder(encoder_tiny("scratch"), enc_dataset, tmp_path_factory.mktemp("abl_ref"), progress=False)


def test_reference_dir_is_reused_not_retrained(enc_dataset, reference, tmp_path):
    res = run_ablation(enc_dataset, tmp_path / "abl", variants=("live_only",), progress=False, reference_dir=reference)
    assert set(res["rows"]) == {"ours", "live_only"}
    assert not (tmp_path / "abl" / "ours").exists()  # the reference was not trained again
    assert (tmp_path / "abl" / "live_only" / "model.pt").exists()
    ref_metrics = {k: v for k, v in res["rows"]["ours"].items() if k not in ("group", "change", "sd", "per_seed")}
    assert ref_metrics == evaluate_encoder(reference, enc_dataset)  # one seed: the means are the run's metrics
    assert res["rows"]["ours"]["per_seed"]["0"] == ref_metrics and set(res["rows"]["ours"]["sd"].values()) == {None}
    assert res["comparisons"]["live_only"]["live.q2i_recall@10"]["separated"] is None  # one seed: no spread
    # The variant inherits the reference's recipe (same steps, seed) and changes one field.
    variant_cfg = json.loads((tmp_path / "abl" / "live_only" / "run_config.json").read_text())
    assert variant_cfg["train"]["video_ratio"] == 0.0 and variant_cfg["train"]["steps"] == encoder_tiny().train.steps
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert saved["reference_dir"] == str(reference) and "live_only" in saved["seconds"]


def test_reference_dir_with_another_config_is_refused(enc_dataset, reference, tmp_path):
    other = encoder_tiny("scratch").replace(train={"steps": 3})
    with pytest.raises(UsageError, match=r"different config \(train.steps\)"):
        run_ablation(enc_dataset, tmp_path / "x", other, variants=("live_only",), progress=False, reference_dir=reference)
    # Checkpointing and threads do not change what is learned: accepted.
    same = encoder_tiny("scratch").replace(train={"checkpoint_every": 0, "num_threads": 2})
    res = run_ablation(enc_dataset, tmp_path / "y", same, variants=(), progress=False, reference_dir=reference)
    assert set(res["rows"]) == {"ours"}
    with pytest.raises(UsageError, match="not a trained encoder"):
        run_ablation(enc_dataset, tmp_path / "z", progress=False, reference_dir=tmp_path / "missing")


def test_ablation_reproduce_matches_the_main_encoder():
    """The budget config is encoder_demo itself, so the main encoder can be the reference row."""
    a, b = ablation_reproduce(seed=4), encoder_demo(seed=4)
    assert a.to_dict() == b.to_dict()


def test_seeds_peers_and_the_spread_verdict(enc_dataset, tmp_path):
    res = run_ablation(enc_dataset, tmp_path / "abl", encoder_tiny("scratch"), variants=(), seeds=(0, 1), peers=True, progress=False)
    assert set(res["rows"]) == {"ours", "lsa"} and res["seeds"] == [0, 1]  # no world/ truth here: no oracle row
    assert (tmp_path / "abl" / "ours" / "model.pt").exists() and (tmp_path / "abl" / "seed1" / "ours" / "model.pt").exists()
    ours = res["rows"]["ours"]
    per = [ours["per_seed"][s]["live"]["q2i_recall@10"] for s in ("0", "1")]
    assert ours["live"]["q2i_recall@10"] == pytest.approx(sum(per) / 2)
    assert ours["sd"]["live.q2i_recall@10"] == pytest.approx(abs(per[0] - per[1]) / 2 ** 0.5)
    assert res["rows"]["lsa"]["group"] == "peer"
    c = res["comparisons"]["lsa"]["live.q2i_recall@10"]
    assert c["delta"] == pytest.approx(res["rows"]["lsa"]["live"]["q2i_recall@10"] - ours["live"]["q2i_recall@10"])
    assert c["separated"] == (abs(c["delta"]) > c["spread"])
    assert ("beyond spread" if c["separated"] else "within spread") in (tmp_path / "abl" / "ablation.md").read_text()


def test_comparison_verdicts_by_hand():
    from fluidrec.encoder.ablation import ablation_comparisons

    def row(mean, sd):
        return {"live": {"q2i_recall@10": mean}, "sd": {"live.q2i_recall@10": sd}}

    rows = {"ours": row(0.80, 0.01), "far": row(0.90, 0.02), "near": row(0.81, 0.02), "one": row(0.5, None)}
    cmp = ablation_comparisons(rows)
    assert cmp["far"]["live.q2i_recall@10"] == {"delta": pytest.approx(0.10), "spread": 0.02, "separated": True}
    assert cmp["near"]["live.q2i_recall@10"]["separated"] is False
    assert cmp["one"]["live.q2i_recall@10"]["separated"] is None
