"""Early stopping of the foresight ranker: the best pass is chosen on held-out training rows
and its weights restored; the test day never takes part in the choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fluidrec.foresight import ranker as rk
from fluidrec.foresight.config import DAY_MS, TASKS, RankerConfig

T0 = 1_700_000_000_000
N_USERS, N_AUTHORS, N_STATES, FEAT = 20, 10, 30, 8
CFG = RankerConfig(id_dim=4, experts=2, expert_dim=8, tower_dim=4, epochs=6, batch_size=64, lr=1e-2, final_holdout_pass=False)


def _world(n: int = 800, days: int = 4, seed: int = 0):
    """Impressions over ``days`` days (the last is the test day) and random state features."""
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.integers(0, days * DAY_MS, size=n))
    labels = {t: (rng.random(n) < 0.3).astype(np.float32) for t in (*TASKS, "like")}
    imp = rk.Impressions(ts=ts, user=rng.integers(0, N_USERS, n), room=np.zeros(n, np.int64), author=rng.integers(0, N_AUTHORS, n),
                         position=rng.integers(0, 5, n), state=rng.integers(0, N_STATES, n), labels=labels)
    feats = {k: torch.randn(N_STATES, FEAT, generator=torch.Generator().manual_seed(seed)) for k in ("i", "d")}
    return imp, feats, np.arange(N_STATES), T0 + (days - 1) * DAY_MS


def _train(imp, feats, state_row, split_ts, cfg=CFG):
    train_rows = np.flatnonzero(imp.ts <= split_ts)
    return rk.train_arm(imp, train_rows, feats, state_row, arm="plus_i_d", n_users=N_USERS, n_authors=N_AUTHORS, cfg=cfg,
                        split_ts=split_ts, seed=0, progress=False)


def test_holdout_is_the_last_training_day_or_the_last_fraction():
    imp, _, _, split_ts = _world()
    train_rows = np.flatnonzero(imp.ts <= split_ts)
    fit, val = rk.holdout_split(imp.ts, train_rows, split_ts, CFG)
    np.testing.assert_array_equal(np.concatenate([fit, val]), train_rows)
    assert (imp.ts[val] > split_ts - DAY_MS).all() and (imp.ts[fit] <= split_ts - DAY_MS).all() and (imp.ts[val] <= split_ts).all()
    one_day = train_rows[imp.ts[train_rows] > split_ts - DAY_MS]  # one training day only: fall back to the last fraction
    fit, val = rk.holdout_split(imp.ts, one_day, split_ts, CFG)
    assert len(val) == round(CFG.val_fraction * len(one_day)) and np.array_equal(val, one_day[-len(val):])


def test_picks_the_best_pass_and_restores_its_weights(monkeypatch):
    imp, feats, state_row, split_ts = _world()
    sequence = [0.50, 0.40, 0.45, 0.10]  # best at pass 2; pass 3 does not improve -> stop (patience 1)
    snapshots, seen_rows = [], []

    def fake_loss(model, imp_, rows, feats_, state_row_, batch=8192):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        seen_rows.append(rows)
        return sequence[len(snapshots) - 1]

    monkeypatch.setattr(rk, "validation_loss", fake_loss)
    model, log = _train(imp, feats, state_row, split_ts)
    assert log["best_pass"] == 2 and log["passes_run"] == 3 and log["val_loss"] == sequence[:3]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k], rtol=0, atol=0)
    assert any(not torch.equal(v, snapshots[2][k]) for k, v in model.state_dict().items())  # pass 3 was undone
    assert all((imp.ts[r] <= split_ts).all() for r in seen_rows)  # validation rows are training rows

    # Keeps going while the loss falls, up to K passes; the held-out pass then runs on the validation rows.
    snapshots.clear()
    sequence[:] = [1.0 - 0.1 * k for k in range(CFG.epochs)]
    passes = []
    real_pass = rk._one_pass
    monkeypatch.setattr(rk, "_one_pass", lambda m, o, i, rows, *a: (passes.append(rows), real_pass(m, o, i, rows, *a)))
    _, log = _train(imp, feats, state_row, split_ts, dataclasses.replace(CFG, final_holdout_pass=True))
    assert log["best_pass"] == log["passes_run"] == CFG.epochs and len(passes) == CFG.epochs + 1
    np.testing.assert_array_equal(passes[-1], seen_rows[0])
    assert all((imp.ts[r] <= split_ts).all() for r in passes)


def test_test_day_takes_no_part_in_the_choice():
    imp, feats, state_row, split_ts = _world()
    scrambled = dict(imp.labels)
    test = imp.ts > split_ts
    rng = np.random.default_rng(1)
    for t in TASKS:
        scrambled[t] = np.where(test, (rng.random(len(test)) < 0.9).astype(np.float32), imp.labels[t])
    cfg = dataclasses.replace(CFG, epochs=3)
    t1_a, _ = rk.run_arms(imp, {k: v.numpy() for k, v in feats.items()}, state_row, split_ts, n_users=N_USERS, n_authors=N_AUTHORS,
                           cfg=cfg, seeds=(0,), progress=False)
    t1_b, _ = rk.run_arms(dataclasses.replace(imp, labels=scrambled), {k: v.numpy() for k, v in feats.items()}, state_row, split_ts,
                           n_users=N_USERS, n_authors=N_AUTHORS, cfg=cfg, seeds=(0,), progress=False)
    assert t1_a["fit"] == t1_b["fit"]  # same passes chosen, same validation losses, to the bit
    assert all(log["passes_run"] >= 1 for arm in t1_a["fit"].values() for log in arm.values())
    assert any((scrambled[t][test] != imp.labels[t][test]).any() for t in TASKS)  # the two runs differ only on the test day


@pytest.mark.parametrize("bad", [{"patience": -1}, {"val_fraction": 0.0}, {"val_days": 0}])
def test_ranker_config_validation(bad):
    with pytest.raises(Exception):
        RankerConfig(**bad)
