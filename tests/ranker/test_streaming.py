"""Streaming evaluation: every batch is scored before the model trains on it."""

import dataclasses

import numpy as np
import torch

from fluidrec.ranker.arms import build_arm
from fluidrec.ranker.evaluate import predict
from fluidrec.ranker.features import _ROW_ARRAYS
from fluidrec.ranker.model import build_ranker
from fluidrec.ranker.streaming import stream_predict
from fluidrec.ranker.train import RankerTrainConfig, RankerModelConfig, ranker_spec
from fluidrec.metrics import logloss


def _model(feats, cfg):
    plan = build_arm("baseline", cfg.warmup)  # has the item ID: it can memorise a room's labels
    torch.manual_seed(0)
    return build_ranker(ranker_spec(cfg, feats, plan, plan.stages[-1]), feats.room_vocab)


def _test_part_twice(feats):
    """The same features with the test rows appended a second time (history rows still point back)."""
    idx = np.r_[np.arange(len(feats)), np.arange(feats.n_train, len(feats))]
    return dataclasses.replace(feats, **{k: getattr(feats, k)[idx] for k in _ROW_ARRAYS})


def test_first_sight_is_scored_before_training(toy_features):
    cfg = RankerTrainConfig(batch_size=len(toy_features) - toy_features.n_train, sparse_lr=0.5, lr=0.05, model=RankerModelConfig(dim=8, layers=1, heads=1, head_hidden=8), progress=False)
    feats = _test_part_twice(toy_features)
    n_test = len(toy_features) - toy_features.n_train
    model = _model(feats, cfg)
    frozen = predict(model, feats, slice(feats.n_train, feats.n_train + n_test))
    probs = stream_predict(model, feats, slice(feats.n_train, len(feats)), cfg)
    first, second = probs[:n_test], probs[n_test:]
    # one batch per copy: the first copy is scored by the untouched model, exactly
    np.testing.assert_allclose(first, frozen, rtol=1e-6, atol=1e-7)
    y = toy_features.labels[toy_features.n_train :, 0]
    # after one step on those very labels (item-ID rows at a high rate), the second sight fits them better
    assert logloss(y, second[:, 0]) < logloss(y, first[:, 0]) - 0.01


def test_streaming_trains_in_place_and_is_deterministic(toy_features):
    cfg = RankerTrainConfig(batch_size=256, model=RankerModelConfig(dim=8, layers=1, heads=1, head_hidden=8), progress=False)
    rows = slice(toy_features.n_train, len(toy_features))
    runs = []
    for _ in range(2):
        model = _model(toy_features, cfg)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        runs.append(stream_predict(model, toy_features, rows, cfg))
        assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it learned
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (rows.stop - rows.start, len(cfg.tasks))
