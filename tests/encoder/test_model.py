import numpy as np
import pytest
import torch

from fluidrec.encoder.config import ModelConfig
from fluidrec.encoder.batches import ItemBatch, pack_text
from fluidrec.encoder.model import DualTowerEncoder, SingleTowerEncoder, build_encoder, load_encoder, save_encoder
from fluidrec.encoder.config import EncoderConfig
from fluidrec.errors import DataError, UsageError

from .conftest import FRAME


def _items(model, n=3, frame=FRAME, has_frame=None):
    toks = model.text.item_tokens({"title": ["singing live", "cooking noodles", "boss level"][:n]})
    frames = torch.randint(0, 255, (n, frame, frame, 3), dtype=torch.uint8)
    hf = torch.ones(n, dtype=torch.bool) if has_frame is None else has_frame
    return ItemBatch(pack_text(toks, model.text.pad_id), frames, hf)


def _tiny(backbone, **kw):
    return ModelConfig(backbone=backbone, text_tokens=16, query_tokens=6, visual_tokens=2, vit_dim=16, vit_heads=2, vit_layers=1, **kw)


@pytest.mark.parametrize("fusion", ["single", "dual"])
@pytest.mark.parametrize("lm", ["bert", "qwen"])
def test_shapes_and_normalisation(fusion, lm, tiny_bert_dir, tiny_qwen_dir):
    path = tiny_bert_dir if lm == "bert" else tiny_qwen_dir
    model = build_encoder(_tiny(str(path), fusion=fusion, out_dim=24), frame_size=FRAME).eval()
    assert isinstance(model, SingleTowerEncoder if fusion == "single" else DualTowerEncoder)
    with torch.no_grad():
        z = model.encode_items(_items(model))
        q = model.encode_queries(pack_text(model.text.query_tokens(["karaoke", "gym squat workout"]), model.text.pad_id))
    assert z.shape == (3, 24) and q.shape == (2, 24)
    assert torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(q.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_single_tower_sees_the_frame(tiny_bert_dir):
    # The visual tokens enter the LM: a different frame changes z; a masked frame (has_frame=False) does not.
    model = build_encoder(_tiny(str(tiny_bert_dir)), frame_size=FRAME).eval()
    b = _items(model, n=1)
    b2 = ItemBatch(b.text, torch.zeros_like(b.frames), b.has_frame)
    with torch.no_grad():
        assert not torch.allclose(model.encode_items(b), model.encode_items(b2))
        off = torch.zeros(1, dtype=torch.bool)
        za = model.encode_items(ItemBatch(b.text, b.frames, off))
        zb = model.encode_items(ItemBatch(b.text, b2.frames, off))
    assert torch.allclose(za, zb, atol=1e-6)


def test_padding_does_not_change_embeddings(tiny_bert_dir):
    model = build_encoder(_tiny(str(tiny_bert_dir)), frame_size=FRAME).eval()
    b = _items(model, n=3)
    with torch.no_grad():
        together = model.encode_items(b)
        alone = model.encode_items(ItemBatch(pack_text([b.text.ids[0, : b.text.lengths[0]].numpy()], model.text.pad_id), b.frames[:1], b.has_frame[:1]))
    assert torch.allclose(together[:1], alone, atol=1e-5)


def test_wrong_image_size_is_a_clear_error(tiny_bert_dir):
    model = build_encoder(_tiny(str(tiny_bert_dir)), frame_size=FRAME)
    with pytest.raises(DataError, match=r"frames have shape \(8, 8, 3\).*expects \(16, 16, 3\)"):
        model.encode_items(_items(model, frame=8))


def test_local_vision_model_and_resize(tiny_bert_dir, tiny_vit_dir):
    # A HF vision model from a local dir with image_size 32 takes the 16x16 frames (resized).
    model = build_encoder(_tiny(str(tiny_bert_dir), vision=str(tiny_vit_dir)), frame_size=FRAME).eval()
    assert model.vision.image_size == 32 and model.vision.frame_size == FRAME
    with torch.no_grad():
        assert model.encode_items(_items(model)).shape == (3, 128)


def test_missing_model_dirs(tmp_path, tiny_bert_dir):
    with pytest.raises(UsageError, match="backbone model directory .* not found"):
        build_encoder(_tiny(str(tmp_path / "missing")), frame_size=FRAME)
    with pytest.raises(UsageError, match="vision model directory .* not found"):
        build_encoder(_tiny(str(tiny_bert_dir), vision=str(tmp_path / "nope")), frame_size=FRAME)
    with pytest.raises(UsageError, match="not found"):
        load_encoder(tmp_path / "no_model")


def test_save_load_roundtrip_with_truncated_layers(tmp_path, tiny_qwen_dir):
    import transformers

    # Build a 2-layer Qwen dir, keep only 1 layer; reload must rebuild the same 1-layer model.
    src = tmp_path / "qwen2"
    cfg = transformers.AutoConfig.from_pretrained(str(tiny_qwen_dir))
    cfg.num_hidden_layers = 2
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[:1] * 2
    torch.manual_seed(1)
    transformers.AutoModel.from_config(cfg).save_pretrained(str(src))
    transformers.AutoTokenizer.from_pretrained(str(tiny_qwen_dir)).save_pretrained(str(src))
    mcfg = _tiny(str(src), lm_layers=1)
    model = build_encoder(mcfg, frame_size=FRAME).eval()
    assert model.lm.config.num_hidden_layers == 1 and len(model.lm.layers) == 1
    save_encoder(model, EncoderConfig(model=mcfg), tmp_path / "m")
    loaded, loaded_cfg = load_encoder(tmp_path / "m")
    assert loaded_cfg.model == mcfg
    b = _items(model)
    with torch.no_grad():
        assert torch.allclose(model.encode_items(b), loaded.encode_items(b), atol=1e-6)
