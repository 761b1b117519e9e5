"""Warmup hand-offs: optimizer state carried for persisting parameters; stage 0 trained to convergence."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import fluidrec.ranker.train as train_mod
from fluidrec.errors import ConfigError
from fluidrec.ranker.arms import build_arm
from fluidrec.ranker.optim_state import optimizer_state_by_name, restore_optimizer_state
from fluidrec.ranker.train import RankerModelConfig, RankerTrainConfig, train_plan
from fluidrec.ranker.warmup import WarmupStage, WarmupConfig

CFG = RankerTrainConfig(batch_size=256, progress=False, model=RankerModelConfig(dim=16, layers=1, heads=2, head_hidden=16))


def _adam_after_steps(model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.ones(2, 3)).square().sum().backward()
        opt.step()
    return [opt]


def test_state_moves_by_name_and_shape_only():
    torch.manual_seed(0)
    old = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    saved = optimizer_state_by_name(old, _adam_after_steps(old))
    new = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 5))  # layer 1 changed shape
    opt = torch.optim.Adam(new.parameters(), lr=0.1)
    assert restore_optimizer_state(new, [opt], saved) == 2  # 0.weight and 0.bias; 1.* do not fit
    torch.testing.assert_close(opt.state[new[0].weight]["exp_avg"], saved["0.weight"]["exp_avg"])
    assert int(opt.state[new[0].weight]["step"]) == 3
    assert new[1].weight not in opt.state
    saved["0.weight"]["exp_avg"].zero_()  # restored state is a copy, not shared
    assert opt.state[new[0].weight]["exp_avg"].abs().sum() > 0


@pytest.mark.parametrize("carry", [True, False])
def test_fluid_stages_resume_the_persisting_parameters(toy_features, carry):
    plan = build_arm("fluid")
    _, results, _ = train_plan(plan, toy_features, dataclasses.replace(CFG, carry_optimizer=carry, max_train_rows=6000))
    resumed = [r.optimizer_resumed for r in results]
    assert resumed[0] == 0  # stage 0 starts fresh
    assert (min(resumed[1:]) > 0) if carry else (max(resumed) == 0)


def test_stage0_converges_with_early_stopping(toy_features, monkeypatch):
    heldout = iter([1.0, 0.9, 0.95, 0.5])  # improves once, then worsens: 2 epochs kept, the third discarded
    monkeypatch.setattr(train_mod, "heldout_loss", lambda *a, **k: next(heldout))
    plan = build_arm("fluid", WarmupConfig(stage0_max_epochs=4))
    _, results, _ = train_plan(plan, toy_features, dataclasses.replace(CFG, max_train_rows=6000))
    s0 = results[0]
    assert s0.epochs == 2 and s0.heldout_losses == (1.0, 0.9, 0.95)
    start, stop = s0.rows
    cut = start + round((stop - start) * (1 - train_mod.HOLDOUT))
    assert s0.trained_rows == 3 * (cut - start) + (stop - cut)  # three passes, then the held-out tail once
    assert all(r.epochs == 1 for r in results[1:])


def test_converging_stage_is_deterministic_and_checked(toy_features):
    cfg = dataclasses.replace(CFG, max_train_rows=4000)
    plan = build_arm("fluid", WarmupConfig(stage0_max_epochs=3))
    a, ra, _ = train_plan(plan, toy_features, cfg)
    b, rb, _ = train_plan(plan, toy_features, cfg)
    assert ra[0].heldout_losses == rb[0].heldout_losses and 1 <= ra[0].epochs <= 3
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    with pytest.raises(ConfigError, match="constant ID scale"):
        WarmupStage("s", ("item_id",), max_epochs=2, id_scale_from=1.0, id_scale_to=0.0)
