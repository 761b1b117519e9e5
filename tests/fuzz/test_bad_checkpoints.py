"""Broken ranker checkpoints and encoder directories: a one-line DataError naming the file and
the key (missing keys, wrong shapes, a spec that cannot be built, a truncated file), never a
torch / transformers traceback. Library calls in-process, plus a few through the CLI.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fluidrec.errors import DataError
from fluidrec.ranker.backbone import BackboneConfig
from fluidrec.ranker.model import RankerSpec, build_ranker, load_checkpoint, save_checkpoint
from fluidrec.ranker.tokens import TokenizerConfig

from .harness import run_main, write


def _one_line(exc: DataError, names: tuple[str, ...], expect: tuple[str, ...]) -> None:
    msg = str(exc)
    assert "\n" not in msg.strip(), msg
    assert any(n in msg for n in names), msg
    for text in expect:
        assert text in msg, msg


# ---------------------------------------------------------------- ranker checkpoints


@pytest.fixture(scope="module")
def ranker_payload(tmp_path_factory):
    d = tmp_path_factory.mktemp("rk")
    model = build_ranker(RankerSpec(TokenizerConfig(dim=16), ("user", "slice"), BackboneConfig(dim=16)), np.arange(5))
    save_checkpoint(model, d / "model.pt")
    load_checkpoint(d / "model.pt")  # the unmodified payload loads
    return torch.load(d / "model.pt", weights_only=True)


def _first_weight(p: dict) -> str:
    return next(k for k in p["state_dict"] if k != "room_vocab")


RANKER_CASES = {  # id -> (mutate(payload) -> payload, expected substrings)
    "no-spec": (lambda p: {k: v for k, v in p.items() if k != "spec"}, ("'spec'",)),
    "no-state-dict": (lambda p: {k: v for k, v in p.items() if k != "state_dict"}, ("'state_dict'",)),
    "no-extra": (lambda p: {k: v for k, v in p.items() if k != "extra"}, ("'extra'",)),
    "spec-is-number": (lambda p: {**p, "spec": 5}, ("'spec'",)),
    "state-is-list": (lambda p: {**p, "state_dict": [1]}, ("'state_dict'",)),
    "spec-lacks-tokenizer": (lambda p: {**p, "spec": {k: v for k, v in p["spec"].items() if k != "tokenizer"}}, ("invalid spec", "tokenizer")),
    "spec-dim-string": (lambda p: {**p, "spec": {**p["spec"], "tokenizer": {**p["spec"]["tokenizer"], "dim": "x"}}}, ("invalid spec",)),
    "spec-unknown-field": (lambda p: {**p, "spec": {**p["spec"], "tokenizer": {**p["spec"]["tokenizer"], "zzz": 1}}}, ("zzz",)),
    "spec-dim-negative": (lambda p: {**p, "spec": {**p["spec"], "tokenizer": {**p["spec"]["tokenizer"], "dim": -4},
                                                     "backbone": {**p["spec"]["backbone"], "dim": -4}}}, ("invalid spec",)),  # fmt: skip
    "spec-unknown-token": (lambda p: {**p, "spec": {**p["spec"], "tokens": ["nope"]}}, ("cannot build", "nope")),
    "spec-bad-task": (lambda p: {**p, "spec": {**p["spec"], "tasks": [{"x": 1}]}}, ("invalid spec",)),
    "spec-tasks-number": (lambda p: {**p, "spec": {**p["spec"], "tasks": 3}}, ("invalid spec",)),
    "weight-missing": (lambda p: {**p, "state_dict": {k: v for k, v in p["state_dict"].items() if k != _first_weight(p)}}, ("weight missing",)),
    "weight-wrong-shape": (lambda p: {**p, "state_dict": {**p["state_dict"], _first_weight(p): torch.zeros(3, 3)}}, ("shape (3, 3)",)),
    "weight-not-tensor": (lambda p: {**p, "state_dict": {**p["state_dict"], _first_weight(p): 5}}, ("weight missing",)),
    "weight-unexpected": (lambda p: {**p, "state_dict": {**p["state_dict"], "zzz.weight": torch.zeros(1)}}, ("zzz.weight",)),
    "room-vocab-missing": (lambda p: {**p, "state_dict": {k: v for k, v in p["state_dict"].items() if k != "room_vocab"}}, ("room_vocab",)),
    "room-vocab-float": (lambda p: {**p, "state_dict": {**p["state_dict"], "room_vocab": torch.zeros(5)}}, ("room_vocab",)),
    "room-vocab-2d": (lambda p: {**p, "state_dict": {**p["state_dict"], "room_vocab": torch.zeros(2, 2, dtype=torch.int64)}}, ("room_vocab",)),
    "other-version": (lambda p: {**p, "version": 99}, ("version",)),
    "top-level-list": (lambda p: [p], ("not a dict",)),
}


@pytest.mark.parametrize("case", list(RANKER_CASES), ids=list(RANKER_CASES))
def test_bad_ranker_checkpoint(case, ranker_payload, tmp_path):
    mutate, expect = RANKER_CASES[case]
    path = tmp_path / "model.pt"
    torch.save(mutate(copy.deepcopy(ranker_payload)), path)  # no .sha256 sidecar: loaded unverified, as old files are
    with pytest.raises(DataError) as exc:
        load_checkpoint(path)
    _one_line(exc.value, ("model.pt",), expect)


@pytest.mark.parametrize("content", [b"", b"not a zip", None], ids=["empty", "garbage", "truncated"])
def test_damaged_ranker_file(content, ranker_payload, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(ranker_payload, path)
    path.write_bytes(path.read_bytes()[:400] if content is None else content)
    with pytest.raises(DataError) as exc:
        load_checkpoint(path)
    _one_line(exc.value, ("model.pt",), ("unreadable",))


def test_ranker_eval_cli_on_a_bad_checkpoint(ranker_payload, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    bad = copy.deepcopy(ranker_payload)
    bad["state_dict"][_first_weight(bad)] = torch.zeros(7)
    torch.save(bad, run / "model.pt")
    code, out, err = run_main(["ranker", "eval", "--model", str(run), "--dataset", str(tmp_path), "--json"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "model.pt" in err and "shape (7,)" in err


# ---------------------------------------------------------------- encoder directories


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A saved (untrained) tiny scratch encoder: the same files train_encoder writes."""
    from fluidrec.encoder.config import encoder_tiny
    from fluidrec.encoder.model import build_encoder, load_encoder, save_encoder

    cfg = encoder_tiny("scratch")
    d = save_encoder(build_encoder(cfg.model, 16), cfg, tmp_path_factory.mktemp("enc") / "enc")
    load_encoder(d)  # the unmodified directory loads
    return d


def _json_edit(rel: str, edit):
    def mutate(d: Path) -> None:
        p = d / rel
        p.write_text(json.dumps(edit(json.loads(p.read_text()))))

    return mutate


def _weights(state_edit):
    def mutate(d: Path) -> None:
        state = torch.load(d / "model.pt", weights_only=True)
        torch.save(state_edit(state), d / "model.pt")
        (d / "model.pt.sha256").unlink()

    return mutate


ENCODER_CASES = {  # id -> (mutate(dir), names, expected substrings)
    "config-list": (lambda d: write(d / "config.json", "[1]"), ("config.json",), ("JSON object",)),
    "config-not-json": (lambda d: write(d / "config.json", "{"), ("config.json",), ("not valid JSON",)),
    "config-non-utf8": (lambda d: write(d / "config.json", b'{"a": "\xff"}'), ("config.json",), ("UTF-8",)),
    "config-unknown-key": (_json_edit("config.json", lambda c: {**c, "model": {**c["model"], "zzz": 1}}), ("config.json",), ("zzz",)),
    "config-model-number": (_json_edit("config.json", lambda c: {**c, "model": 5}), ("config.json",), ()),
    "config-bad-value": (_json_edit("config.json", lambda c: {**c, "model": {**c["model"], "text_tokens": -3}}), ("config.json",), ("text_tokens",)),
    "config-seed-text": (_json_edit("config.json", lambda c: {**c, "seed": "abc"}), ("config.json",), ("abc",)),
    "no-tokenizer": (lambda d: shutil.rmtree(d / "tokenizer"), ("tokenizer",), ("no tokenizer/",)),
    "tokenizer-garbage": (lambda d: [write(f, "garbage{") for f in (d / "tokenizer").iterdir()], ("tokenizer",), ()),
    "no-lm": (lambda d: shutil.rmtree(d / "lm"), ("lm",), ("no lm/",)),
    "lm-unknown-type": (_json_edit("lm/config.json", lambda c: {**c, "model_type": "nope"}), ("lm",), ("language-model config",)),
    "lm-other-width": (_json_edit("lm/config.json", lambda c: {**c, "hidden_size": 48, "intermediate_size": 96}), ("model.pt",), ("shape",)),
    "vision-garbage": (lambda d: [write(f, "{") for f in (d / "vision").iterdir()], ("vision",), ("vision spec",)),
    "weights-of-another-model": (_weights(lambda s: {"x": torch.zeros(1)}), ("model.pt",), ("weight missing",)),
    "weights-wrong-shape": (_weights(lambda s: {**s, next(iter(s)): torch.zeros(2)}), ("model.pt",), ("shape (2,)",)),
    "weights-extra-key": (_weights(lambda s: {**s, "zzz": torch.zeros(1)}), ("model.pt",), ("zzz",)),
    "weights-list": (_weights(lambda s: [1]), ("model.pt",), ("state dict",)),
    "weights-truncated": (lambda d: (write(d / "model.pt", (d / "model.pt").read_bytes()[:1000]), (d / "model.pt.sha256").unlink()), ("model.pt",), ()),
    "weights-flipped": (lambda d: write(d / "model.pt", (d / "model.pt").read_bytes()[:-64] + b"\0" * 64), ("model.pt",), ("checksum",)),
    "kind-lsa-without-files": (_json_edit("config.json", lambda c: {"kind": "lsa"}), ("lsa",), ()),
}


@pytest.mark.parametrize("case", list(ENCODER_CASES), ids=list(ENCODER_CASES))
def test_broken_encoder_directory(case, encoder_dir, tmp_path):
    from fluidrec.encoder.model import load_encoder
    from fluidrec.errors import FluidrecError

    mutate, names, expect = ENCODER_CASES[case]
    d = tmp_path / "enc"
    shutil.copytree(encoder_dir, d)
    mutate(d)
    with pytest.raises(FluidrecError) as exc:
        load_encoder(d)
    _one_line(exc.value, names, expect)


@pytest.mark.parametrize("command", ["eval", "embed"])
def test_encoder_cli_on_a_broken_directory(command, encoder_dir, tmp_path, capsys):
    d = tmp_path / "enc"
    shutil.copytree(encoder_dir, d)
    write(d / "lm" / "config.json", '{"model_type": "nope"}')
    argv = ["encoder", command, "--model", str(d), "--dataset", str(tmp_path)]
    argv += ["--out", str(tmp_path / "e.parquet")] if command == "embed" else ["--json"]
    code, out, err = run_main(argv, capsys)
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "enc/lm" in err and not (tmp_path / "e.parquet").exists()


def test_embed_resume_recomputes_a_damaged_part(encoder_dir, tmp_path):
    """A resumable embedding part that no longer loads (full disk, hand edit) is recomputed, not a traceback."""
    from fluidrec.data.embeddings import read_embeddings
    from fluidrec.encoder.embed import embed_dataset
    from tests.encoder.conftest import make_dataset

    ds = make_dataset(tmp_path / "ds", n_live=8, n_video=4)
    clean = embed_dataset(encoder_dir, ds, tmp_path / "clean.parquet", chunk_size=4, progress=False)
    out = tmp_path / "emb.parquet"
    embed_dataset(encoder_dir, ds, out, chunk_size=4, progress=False, stop_after_chunks=2)
    parts = sorted((tmp_path / "emb.parquet.parts").glob("part-*.npy"))
    assert len(parts) == 2
    parts[0].write_bytes(parts[0].read_bytes()[:50])  # truncated
    np.save(parts[1], np.full((3, 7), np.nan, np.float32))  # wrong shape and not finite
    s = embed_dataset(encoder_dir, ds, out, chunk_size=4, progress=False)
    assert s.resumed_chunks == 0 and s.items == clean.items
    np.testing.assert_allclose(read_embeddings(out)[1], read_embeddings(clean.path)[1], atol=1e-6)
