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
    ref_metrics = {k: v for k, v in res["rows"]["ours"].items() if k not in ("group", "change")}
    assert ref_metrics == evaluate_encoder(reference, enc_dataset)
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
