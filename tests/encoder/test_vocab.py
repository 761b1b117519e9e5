"""Vocabulary extension (encoder.vocab) and the cosine learning-rate schedule."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fluidrec.encoder import vocab as vocab_mod
from fluidrec.encoder.config import encoder_demo, encoder_tiny
from fluidrec.encoder.data import load_encoder_data
from fluidrec.encoder.model import build_encoder, load_encoder
from fluidrec.encoder.train import Stage, stage_lr, train_encoder
from fluidrec.encoder.vocab import AddedWordEmbedding, base_word_table, extend_vocabulary, select_words
from fluidrec.utils.seed import seed_everything

from . import conftest
from .conftest import FRAME, make_dataset

# Pseudo-words the MiniLM WordPiece vocabulary cuts into pieces (like the synthetic world's).
PSEUDO = [
    ("kecoce", "zusatai", "vaizi", "pakara"),
    ("shutre", "boukibou", "tropukai", "sithoura"),
    ("gajoukra", "chaibadou", "poushoulo", "routhogou"),
]


@pytest.fixture(scope="module")
def pseudo_dataset(tmp_path_factory):
    saved = conftest.TOPICS
    conftest.TOPICS = PSEUDO
    try:
        return make_dataset(tmp_path_factory.mktemp("pseudo"), n_live=48, n_video=24)
    finally:
        conftest.TOPICS = saved


def _tokenizer():
    return build_encoder(encoder_tiny("scratch").model, None).text.tokenizer


def test_select_words_by_hand():
    tok = _tokenizer()
    docs = ["kecoce live zusatai", "kecoce zusatai", "Kecoce the vaizi", "vaizi, live"]
    # document frequency: kecoce 3 (case folded), zusatai 2, vaizi 2; live/the are already tokens
    assert select_words(docs, tok, 10) == ["kecoce", "vaizi", "zusatai"]  # ties alphabetically
    assert select_words(docs, tok, 2) == ["kecoce", "vaizi"]
    assert select_words(docs, tok, 10, min_df=3) == ["kecoce"]
    assert select_words(["kecoce kecoce"], tok, 10) == []  # once in one document: below min_df


def test_added_embedding_is_one_table_with_two_parts():
    torch.manual_seed(0)
    base, added = torch.nn.Embedding(10, 4), torch.randn(3, 4)
    emb = AddedWordEmbedding(base, added)
    ids = torch.tensor([[0, 9, 10, 12], [11, 3, 3, 10]])
    ref = F.embedding(ids, torch.cat([base.weight, added]))
    torch.testing.assert_close(emb(ids), ref)
    torch.testing.assert_close(emb(torch.tensor([[1, 2]])), base(torch.tensor([[1, 2]])))  # no added id
    emb(ids).sum().backward()
    assert emb.added.weight.grad[0].abs().sum() > 0 and emb.added.weight.grad[2].abs().sum() > 0
    assert torch.equal(base.weight.grad[4], torch.zeros(4))  # id 4 unused
    assert emb.num_embeddings == 13


def test_extend_vocabulary_tokens_and_rows():
    model = build_encoder(encoder_tiny("scratch").model, None)
    table = model.lm.get_input_embeddings().weight.detach().clone()
    pieces = model.text.query_tokens(["zusatai"])[0]
    assert len(pieces) >= 2
    n0 = model.text.vocab_size
    assert extend_vocabulary(model, ["kecoce", "zusatai"]) == 2
    assert model.text.vocab_size == n0 + 2
    assert model.text.query_tokens(["kecoce zusatai"])[0].tolist() == [n0, n0 + 1]
    assert model.text.query_tokens(["xkecoce"])[0].tolist() != [n0]  # whole words only
    emb = model.lm.get_input_embeddings()
    torch.testing.assert_close(emb.added.weight[1].detach(), table[torch.as_tensor(pieces, dtype=torch.long)].mean(0))
    assert base_word_table(model.lm) is emb.base
    with pytest.raises(ValueError, match="already extended"):
        extend_vocabulary(model, ["vaizi"])


def test_training_with_added_words_freezes_the_base_table_and_round_trips(pseudo_dataset, tmp_path):
    cfg = encoder_tiny("scratch").replace(model={"added_words": 64}, train={"freeze_word_embeddings": True})
    out = train_encoder(cfg, pseudo_dataset, tmp_path / "enc", progress=False)
    seed_everything(cfg.seed)
    fresh = build_encoder(cfg.model, FRAME)  # the same initial weights train_encoder started from
    model, _ = load_encoder(out)
    emb = model.lm.get_input_embeddings()
    assert isinstance(emb, AddedWordEmbedding) and emb.added.num_embeddings == 12  # the 12 pseudo-words
    assert torch.equal(emb.base.weight, fresh.lm.get_input_embeddings().weight)  # frozen in both stages
    pieces = [fresh.text.query_tokens([w])[0] for w in vocab_mod.select_words(["kecoce kecoce"] * 2, fresh.text.tokenizer, 1)]
    init = fresh.lm.get_input_embeddings().weight[torch.as_tensor(pieces[0], dtype=torch.long)].mean(0)
    row = model.text.query_tokens(["kecoce"])[0]
    assert len(row) == 1 and not torch.allclose(emb(torch.as_tensor(row, dtype=torch.long))[0], init)  # the new row trained
    data = load_encoder_data(pseudo_dataset, model.text, FRAME)
    assert max(map(len, data.query_tokens)) <= 2  # two pseudo-words, one token each


def test_cosine_schedule_values():
    stage = Stage("joint", 4, 2.0, "all")
    assert [stage_lr(stage, i, "cosine") for i in range(4)] == pytest.approx([2.0, 1.0 + math.sqrt(0.5), 1.0, 1.0 - math.sqrt(0.5)])
    assert stage_lr(stage, 3, "constant") == 2.0


def test_cosine_resume_gives_identical_weights(enc_dataset, tmp_path):
    cfg = encoder_tiny("scratch").replace(train={"lr_schedule": "cosine"})
    whole = train_encoder(cfg, enc_dataset, tmp_path / "whole", progress=False)
    part = tmp_path / "part"
    train_encoder(cfg, enc_dataset, part, progress=False, stop_after=4)  # mid joint stage
    train_encoder(cfg, enc_dataset, part, progress=False)
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(part / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    constant = torch.load(train_encoder(encoder_tiny("scratch"), enc_dataset, tmp_path / "const", progress=False) / "model.pt", weights_only=True)
    assert not all(torch.equal(a[k], constant[k]) for k in a)  # the schedule is applied
    assert np.isfinite(sum(float(v.float().sum()) for v in a.values()))


def test_loss_falls_below_chance_within_a_few_steps_on_the_tiny_world(tiny_world, tmp_path):
    """The demo recipe (MiniLM's first layer, added words, full text, cosine) on the tiny world:
    the loss starts at ln(B), the InfoNCE value of an encoder that ranks at random, and leaves it
    within 40 steps (the old recipe sat there through its whole alignment stage)."""
    cfg = encoder_demo(0).replace(
        model={"visual_tokens": 1, "vit_dim": 16, "vit_heads": 2, "vit_layers": 1},
        train={"batch_size": 32, "steps": 40, "eval_fraction": 0.25, "eval_gallery": 50, "probe_items": 60, "checkpoint_every": 0},
    )
    out = train_encoder(cfg, tiny_world, tmp_path / "enc", progress=False)
    log = [r["loss"] for r in json.loads((out / "train_log.json").read_text())["log"]]
    chance = math.log(32)
    assert np.mean(log[:5]) > 0.98 * chance  # starts at chance ...
    assert np.mean(log[-10:]) < 0.95 * chance  # ... and has left it
