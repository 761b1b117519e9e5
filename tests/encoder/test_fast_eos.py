"""The EOS-only last layer (``model.bert_eos_pool``) against the Hugging Face forward."""

import pytest
import torch

from fluidrec.encoder.config import encoder_tiny
from fluidrec.encoder.batches import pack_text
from fluidrec.encoder.model import bert_eos_pool, build_encoder, supports_fast_eos

from .conftest import FRAME


def _bert(layers: int, dropout: float = 0.1):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=64, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertModel(cfg, add_pooling_layer=False)


def _inputs(b: int = 5, n: int = 9):
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(b, n, 32, generator=g)  # (B, L, H)
    eos = torch.tensor([8, 3, 5, 0, 7])[:b]  # ragged rows: padding after each EOS
    mask = torch.arange(n)[None, :] <= eos[:, None]  # (B, L)
    return emb, mask, eos


def _reference(lm, emb, mask, eos):
    hidden = lm(inputs_embeds=emb, attention_mask=mask.long()).last_hidden_state  # (B, L, H)
    return hidden[torch.arange(len(eos)), eos]


@pytest.mark.parametrize("layers", [1, 3])
def test_values_and_gradients_match_reference(layers):
    lm = _bert(layers).eval()
    emb, mask, eos = _inputs()
    e1, e2 = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    fast, ref = bert_eos_pool(lm, e1, mask, eos), _reference(lm, e2, mask, eos)
    assert fast.shape == (5, 32)
    assert torch.allclose(fast, ref, atol=1e-5), (fast - ref).abs().max()
    w = torch.randn(5, 32, generator=torch.Generator().manual_seed(2))
    (fast * w).sum().backward()
    grads_fast = {n: p.grad.clone() for n, p in lm.named_parameters() if p.grad is not None}
    lm.zero_grad()
    (ref * w).sum().backward()
    assert torch.allclose(e1.grad, e2.grad, atol=1e-5)
    for n, p in lm.named_parameters():
        if n not in grads_fast:  # unused (word embeddings) or cancelling in the softmax (last key bias)
            assert p.grad is None or p.grad.abs().max() < 1e-5, n
            continue
        assert torch.allclose(grads_fast[n], p.grad, atol=1e-4), n


def test_padding_does_not_leak():
    """Changing the embeddings after a row's EOS must not change its output."""
    lm = _bert(2).eval()
    emb, mask, eos = _inputs()
    out = bert_eos_pool(lm, emb, mask, eos)
    noisy = emb.clone()
    noisy[~mask] = 100.0
    assert torch.allclose(out, bert_eos_pool(lm, noisy, mask, eos), atol=1e-5)


def test_train_mode_without_dropout_matches_and_dropout_is_active():
    lm = _bert(2, dropout=0.0).train()
    emb, mask, eos = _inputs()
    assert torch.allclose(bert_eos_pool(lm, emb, mask, eos), _reference(lm, emb, mask, eos), atol=1e-5)
    lm_drop = _bert(2, dropout=0.5).train()
    torch.manual_seed(0)
    a = bert_eos_pool(lm_drop, emb, mask, eos)
    b = bert_eos_pool(lm_drop, emb, mask, eos)
    assert not torch.allclose(a, b)  # dropout is applied in train mode
    lm_drop.eval()
    assert torch.allclose(bert_eos_pool(lm_drop, emb, mask, eos), bert_eos_pool(lm_drop, emb, mask, eos))


@pytest.mark.parametrize("fusion", ["single", "dual"])
def test_encoder_fast_path_equals_reference_path(fusion):
    torch.manual_seed(0)
    model = build_encoder(encoder_tiny("scratch").replace(model={"fusion": fusion}).model, FRAME).eval()
    assert supports_fast_eos(model.lm)
    from fluidrec.encoder.batches import ItemBatch

    toks = model.text.query_tokens(["singing karaoke tonight", "noodles", "boss level raid again"])
    text = pack_text(toks, model.text.pad_id)
    frames = torch.randint(0, 255, (3, FRAME, FRAME, 3), dtype=torch.uint8)
    items = ItemBatch(text, frames, torch.tensor([True, False, True]))
    with torch.inference_mode():
        fast_q, fast_z = model.encode_queries(text), model.encode_items(items)
        model.fast_eos = False
        ref_q, ref_z = model.encode_queries(text), model.encode_items(items)
    assert torch.allclose(fast_q, ref_q, atol=1e-5) and torch.allclose(fast_z, ref_z, atol=1e-5)


def test_decoder_lm_takes_the_reference_path(tiny_qwen_dir):
    model = build_encoder(encoder_tiny(str(tiny_qwen_dir)).model, FRAME)
    assert not supports_fast_eos(model.lm)
