import dataclasses

import numpy as np
import pytest
import torch

from fluidrec.errors import UsageError
from fluidrec.ranker.arms import ARMS, build_arm
from fluidrec.ranker.backbone import token_swiglu, token_swiglu_reference
from fluidrec.ranker.model import build_ranker, init_from, load_checkpoint, save_checkpoint
from fluidrec.codes.ngram import row_ids_reference
from fluidrec.ranker.tokens import CodeEmbedding, TokenizerConfig
from fluidrec.ranker.train import RankerTrainConfig, RankerModelConfig, make_optimizers, ranker_spec, train_plan, update_step
from fluidrec.ranker.warmup import WarmupStage, WarmupConfig, id_scale_at

CFG = RankerTrainConfig(batch_size=256, progress=False, model=RankerModelConfig(dim=16, layers=1, heads=2, head_hidden=16))


def test_code_table_ids_follow_the_one_prefix_id_rule():
    cfg = TokenizerConfig(num_codes=4, levels=3, code_rows_cap=20)
    rows = cfg.level_rows()
    assert rows == [4, 16, 19]  # 4^3 = 64 > cap -> largest prime <= 20
    codes = torch.tensor([[0, 2, 1], [3, 2, 1], [3, 3, 3], [-1, 2, 1], [1, 7, 0]])  # unknown, unseen codeword
    fast = CodeEmbedding(dataclasses.replace(cfg, dim=12)).ids(codes)
    for c, f in zip(codes.tolist(), fast.tolist()):
        assert f == row_ids_reference(c, 4, rows)
    assert fast[0, 1] == 2 and fast[1, 1] == 14  # the paper's example: same c2, different prefix
    assert fast[3].tolist() == [4, 16, 19] and fast[4].tolist() == [1, 16, 19]  # unknown rows, down the path


def test_token_swiglu_matches_reference():
    x, w13, w2 = torch.randn(5, 3, 8), torch.randn(3, 8, 12), torch.randn(3, 6, 8)
    torch.testing.assert_close(token_swiglu(x, w13, w2), token_swiglu_reference(x, w13, w2))


@pytest.mark.parametrize("arm", [a for a in ARMS if not a.startswith("fluid") and a != "naive_joint"] + ["naive_joint"])
def test_every_single_stage_arm_lowers_its_loss(arm, toy_features):
    plan = build_arm(arm)
    torch.manual_seed(0)
    model = build_ranker(ranker_spec(CFG, toy_features, plan, plan.stages[0]), toy_features.room_vocab)
    batch = toy_features.batch(slice(0, 256))
    opts = make_optimizers(model, dataclasses.replace(CFG, lr=5e-3))
    first, _ = update_step(model, batch, opts, 0.1 if arm == "late_em3" else 0.0)
    for _ in range(8):
        last, out = update_step(model, batch, opts, 0.1 if arm == "late_em3" else 0.0)
    assert float(last) < float(first)
    if arm.startswith("gate"):
        assert out["alpha"].shape == (256,) and ((out["alpha"] > 0) & (out["alpha"] < 1)).all()


def test_staged_arms_run_every_stage(toy_features):
    cfg = dataclasses.replace(CFG, max_train_rows=1200, batch_size=128)
    for arm in ("fluid", "fluid_id_back", "fluid_levelwise", "fluid_shared"):
        model, results, _ = train_plan(build_arm(arm), toy_features, cfg)
        assert [r.name for r in results][:4] == ["stage0", "stage1", "stage2", "stage3"]
        assert results[2].final_id_scale == 0.0
        assert ("item_id" in model.token_names) == (arm == "fluid_id_back")
        assert {"slice", "room"} <= set(model.token_names)
        assert all(np.isfinite(r.last_loss) for r in results)
    assert model.tokenizer.room is model.tokenizer.slice  # fluid_shared


def test_phase_out_reaches_exact_zero_then_no_id_gradient(toy_features):
    stage = WarmupStage("s2", ("item_id", "slice"), 1.0, id_scale_from=1.0, id_scale_to=0.0, phase_end=0.5)
    scales = [id_scale_at(stage, p) for p in np.linspace(0, 1, 11)]
    assert scales[0] == 1.0 and all(a >= b for a, b in zip(scales, scales[1:]))
    assert all(s == 0.0 for s in scales[5:]) and scales[4] > 0
    plan = build_arm("late")
    model = build_ranker(ranker_spec(CFG, toy_features, plan, plan.stages[0]), toy_features.room_vocab)
    opts = make_optimizers(model, CFG)
    batch = toy_features.batch(slice(0, 128))
    model.tokenizer.id_scale.fill_(0.5)
    update_step(model, batch, opts)
    assert model.tokenizer.item_id.weight.grad is not None
    model.tokenizer.id_scale.fill_(0.0)
    before = model.tokenizer.item_id.weight.detach().clone()
    _, out = update_step(model, batch, opts)
    assert model.tokenizer.item_id.weight.grad is None
    assert torch.equal(model.tokenizer.item_id.weight, before)
    assert (out["g"] == 0).all()


def test_stage3_copies_slice_tables_and_keeps_predictions_close(toy_features):
    plan = build_arm("fluid")
    s1, s3 = plan.stages[1], plan.stages[3]
    src = build_ranker(ranker_spec(CFG, toy_features, plan, s1), toy_features.room_vocab)
    dst = build_ranker(ranker_spec(CFG, toy_features, plan, s3), toy_features.room_vocab)
    fresh = init_from(dst, src.state_dict(), src.token_names, dict(s3.copy_tokens))
    assert torch.equal(dst.tokenizer.room.table.weight, src.tokenizer.slice.table.weight)
    assert not any(k.startswith("tokenizer.room") for k in fresh)
    i_dst, i_src = dst.token_names.index("room"), src.token_names.index("slice")
    assert torch.equal(dst.backbone.layers[0].tok_w13[i_dst], src.backbone.layers[0].tok_w13[i_src])
    assert torch.equal(dst.heads.tok_proj[i_dst], torch.zeros_like(dst.heads.tok_proj[i_dst]))  # copy-mapped rows
    # adding a brand-new token: its head projection starts at zero
    base = build_ranker(ranker_spec(CFG, toy_features, plan, plan.stages[0]), toy_features.room_vocab)
    late = build_ranker(ranker_spec(CFG, toy_features, plan, s1), toy_features.room_vocab)
    init_from(late, base.state_dict(), base.token_names)
    assert torch.equal(late.heads.tok_proj[late.token_names.index("slice")], torch.zeros_like(late.heads.tok_proj[0]))
    assert torch.equal(late.tokenizer.item_id.weight, base.tokenizer.item_id.weight)


def test_checkpoint_round_trip(toy_features, tmp_path):
    plan = build_arm("gate_feature")
    model = build_ranker(ranker_spec(CFG, toy_features, plan, plan.stages[0]), toy_features.room_vocab)
    save_checkpoint(model, tmp_path / "m.pt")
    again = load_checkpoint(tmp_path / "m.pt")
    batch = toy_features.batch(slice(0, 64))
    model.eval()
    torch.testing.assert_close(model(batch).logits, again(batch).logits)
    assert again.spec == model.spec and again.token_names == model.token_names


def test_bad_arm_and_bad_config():
    with pytest.raises(UsageError, match="unknown arm 'nope'.*baseline"):
        build_arm("nope")
    with pytest.raises(UsageError):
        WarmupConfig(stage0=0.5, stage1=0.3, stage2=0.2, stage3=0.1)
    with pytest.raises(UsageError):
        WarmupStage("x", ("early",), 1.0)  # early token without a fusion kind
