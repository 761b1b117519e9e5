"""Checkpoints carry a SHA-256 sidecar: a corrupted file fails to load instead of loading altered weights."""

import pytest
import torch

from fluidrec.errors import DataError
from fluidrec.utils.io import checksum_path, load_torch_file, save_torch_file, sha256_file


def _flip(path, offset, n=4096):
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture()
def ckpt(tmp_path):
    state = {"w": torch.arange(8192, dtype=torch.float32), "step": 3}  # 32 KB of weights
    return save_torch_file(state, tmp_path / "model.pt"), state


def test_roundtrip_and_sidecar_format(ckpt):
    path, state = ckpt
    assert checksum_path(path).read_text() == f"{sha256_file(path)}  model.pt\n"  # `sha256sum -c` reads it
    loaded = load_torch_file(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 3


def test_flipped_bytes_fail_to_load(ckpt):
    path, _ = ckpt
    _flip(path, path.stat().st_size // 2)  # inside the weights: torch alone would load them altered
    with pytest.raises(DataError, match=r"model.pt: checksum mismatch"):
        load_torch_file(path)


def test_ranker_checkpoint_loader_refuses_a_corrupted_file(ckpt):
    from fluidrec.ranker.model import load_checkpoint

    path, _ = ckpt
    _flip(path, 1000, 16)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_checkpoint(path)


def test_file_without_sidecar_loads_as_before(ckpt):
    path, state = ckpt
    checksum_path(path).unlink()  # written by an older fluidrec
    assert torch.equal(load_torch_file(path)["w"], state["w"])


def test_malformed_sidecar(ckpt):
    path, _ = ckpt
    checksum_path(path).write_text("not a checksum\n")
    with pytest.raises(DataError, match="malformed checksum file"):
        load_torch_file(path)


def test_resave_replaces_the_sidecar(ckpt, tmp_path):
    path, _ = ckpt
    save_torch_file({"w": torch.zeros(3)}, path)
    assert torch.equal(load_torch_file(path)["w"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.sha256"]


def test_encoder_files_are_verified(tmp_path):
    from fluidrec.encoder.config import encoder_tiny
    from fluidrec.encoder.model import load_encoder
    from fluidrec.encoder.train import train_encoder
    from tests.encoder.conftest import make_dataset

    ds = make_dataset(tmp_path / "ds", n_live=16, n_video=8)
    run = train_encoder(encoder_tiny("scratch").replace(train={"steps": 2}), ds, tmp_path / "enc", progress=False)
    assert checksum_path(run / "model.pt").exists() and checksum_path(run / "checkpoint.pt").exists()
    load_encoder(run)
    _flip(run / "model.pt", (run / "model.pt").stat().st_size // 2)
    with pytest.raises(DataError, match="model.pt: checksum mismatch"):
        load_encoder(run)
