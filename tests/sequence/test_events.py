"""The event log and causal history batches: vectorised == plain loop, causality, padding, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fluidrec.errors import DataError
from fluidrec.sequence.data import DAY_MS, build_event_log, event_log_summary, summary_line
from fluidrec.sequence.events import EventLog, HistoryBatch, history_batch, history_batch_reference, split_indices

T0 = 1_700_006_400_000
FIELDS = [f.name for f in dataclasses.fields(HistoryBatch)]


def random_log(seed: int, n_users: int = 7, max_events: int = 40, levels: int = 3, k: int = 5, tie_share: float = 0.3) -> EventLog:
    """A random log with repeated timestamps (ties), users with 1 event, and items without codes."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_events, n_users)
    counts[0] = 1  # a user whose only event has no history
    users, ts = [], []
    for u, c in enumerate(counts):
        steps = rng.integers(1, 4 * 3_600_000, c)
        steps[rng.random(c) < tie_share] = 0  # same-millisecond events: one request's slate
        t = T0 + np.cumsum(steps) + int(rng.integers(0, DAY_MS))
        users.append(np.full(c, 1000 + 7 * u))
        ts.append(t)
    user_id, ts = np.concatenate(users), np.concatenate(ts)
    perm = rng.permutation(len(ts))  # the builder must sort
    item_id = rng.integers(0, 30, len(ts)) * 11 + 5
    code_ids = np.unique(item_id)[:-3]  # the last 3 items have no code
    codes = rng.integers(0, k, (len(code_ids), levels))
    return build_event_log(
        ts=ts[perm], user_id=user_id[perm], item_id=item_id[perm], watch_ratio=rng.random(len(ts)) * 2,
        label=rng.integers(0, 2, len(ts)), code_ids=code_ids, codes=codes, codebook_size=k, test_days=0.5,
    )  # fmt: skip


def assert_batches_equal(a, b) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), name


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("seq_len", [1, 4, 64])
def test_vectorised_equals_reference(seed: int, seq_len: int) -> None:
    log = random_log(seed)
    idx = np.random.default_rng(seed).integers(0, len(log), 50)
    assert_batches_equal(history_batch(log, idx, seq_len), history_batch_reference(log, idx, seq_len))


def test_history_is_causal_and_right_aligned() -> None:
    log = random_log(3, tie_share=0.5)
    idx = np.arange(len(log))
    b = history_batch(log, idx, 16)
    target_ts = torch.from_numpy(log.ts)[:, None]
    real = b.hist_mask
    assert (b.hist_ts[real] < target_ts.expand_as(real)[real]).all()  # strictly before the target
    # right-aligned: once a slot is real, every later slot is real
    assert (real[:, 1:].int() >= real[:, :-1].int()).all()
    # ties: an event sharing the target's ms is never in its history, the previous ms always is
    tied = np.flatnonzero((log.user[1:] == log.user[:-1]) & (log.ts[1:] == log.ts[:-1])) + 1
    assert len(tied) > 0
    for t in tied:
        assert log.ts[t] not in b.hist_ts[t][b.hist_mask[t]].tolist()
    # same user only, most recent at S-1, sorted by time
    u = torch.from_numpy(log.user)
    hist_user = u[torch.from_numpy(log.user_start)][:, None].expand_as(real)
    assert (hist_user[real] == u[:, None].expand_as(real)[real]).all()
    ts_real = torch.where(real, b.hist_ts, torch.zeros_like(b.hist_ts))
    assert (ts_real[:, 1:] >= ts_real[:, :-1]).all()


def test_padding_and_empty_histories() -> None:
    log = random_log(4)
    first = log.user_start[np.arange(len(log))] == np.arange(len(log))  # each user's first event: empty history
    b = history_batch(log, np.flatnonzero(first), 8)
    assert not b.hist_mask.any()
    assert (b.hist_item == 0).all() and (b.hist_codes == -1).all()
    assert (b.hist_watch == 0).all() and (b.hist_gap == 0).all() and (b.hist_ts == 0).all()
    # a short history: the pads are on the left and hold the pad values
    second = np.flatnonzero(np.r_[False, (log.user[1:] == log.user[:-1]) & (log.ts[1:] > log.ts[:-1])])[0]
    b = history_batch(log, np.array([second]), 8)
    n_real = int(b.hist_mask.sum())
    assert 1 <= n_real < 8 and b.hist_mask[0, 8 - n_real :].all()
    assert (b.hist_codes[0, : 8 - n_real] == -1).all() and (b.hist_gap[0, 8 - n_real :] > 0).all()


def test_gap_and_features_values() -> None:
    log = random_log(5)
    t = int(np.flatnonzero(np.r_[False, (log.user[1:] == log.user[:-1]) & (log.ts[1:] > log.ts[:-1])])[0])
    b = history_batch(log, np.array([t]), 2)
    j = t - 1  # the previous event of the same user, earlier ms
    assert int(b.hist_item[0, -1]) == log.item[j] and int(b.hist_ts[0, -1]) == log.ts[j]
    assert b.hist_gap[0, -1].item() == pytest.approx(np.log1p((log.ts[t] - log.ts[j]) / 1000.0), rel=1e-6)
    assert torch.equal(b.hist_codes[0, -1], torch.from_numpy(log.codes[j]))
    assert b.label.dtype == torch.float32 and b.target_codes.shape == (1, log.levels)


def test_split_and_cold() -> None:
    log = random_log(6)
    train, test = split_indices(log, "train"), split_indices(log, "test")
    assert len(train) + len(test) == len(log) and len(train) > 0 and len(test) > 0
    assert (log.ts[test].min() > log.ts.max() - DAY_MS // 2) and (log.ts[train].max() <= log.ts.max() - DAY_MS // 2)
    train_items = set(log.item[train].tolist())
    assert all((log.item[i] not in train_items) == bool(log.cold[i]) for i in test)
    assert not log.cold[train].any()
    with pytest.raises(DataError, match="split"):
        split_indices(log, "valid")


def test_build_sorts_reindexes_and_maps_codes() -> None:
    log = random_log(7)
    assert (np.diff(log.user) >= 0).all() and log.n_items == len(log.item_raw)
    same = log.user[1:] == log.user[:-1]
    assert (np.diff(log.ts)[same] >= 0).all()
    missing = np.isin(log.item_raw[log.item], log.item_raw[-3:])
    assert (log.codes[missing] == -1).all() and (log.codes[~missing] >= 0).all()


def test_eventlog_validation_names_the_field() -> None:
    log = random_log(8)
    good = {f.name: getattr(log, f.name) for f in dataclasses.fields(log)}
    cases = {
        "user": {"user": log.user[::-1].copy()},  # not sorted
        "ts": {"ts": np.r_[log.ts[1:2], log.ts[:1], log.ts[2:]] if log.user[0] == log.user[1] else log.ts[::-1].copy()},
        "watch_ratio": {"watch_ratio": np.where(np.arange(len(log)) == 3, np.float32(np.nan), log.watch_ratio)},
        "label": {"label": np.full(len(log), 2, np.int8)},
        "codes": {"codes": np.full_like(log.codes, log.codebook_size)},
        "item": {"item": log.item.astype(np.int32)},
        "cold": {"cold": np.ones(len(log), bool)},
        "item_raw": {"item_raw": log.item_raw[:-1]},
    }
    for field, change in cases.items():
        with pytest.raises(DataError, match=f"column {field}"):
            EventLog(**{**good, **change})
    with pytest.raises(DataError, match="seq_len"):
        history_batch(log, np.arange(3), 0)
    with pytest.raises(DataError, match="target_idx"):
        history_batch(log, np.array([len(log)]), 4)


def test_summary() -> None:
    log = random_log(9)
    s = event_log_summary(log)
    assert s["events"] == len(log) and s["users"] == log.n_users
    assert s["events_per_user_mean"] == pytest.approx(len(log) / log.n_users)
    assert 0.0 <= s["cold_share_of_test"] <= 1.0 and s["label_rate"] == pytest.approx(log.label.mean())
    assert "events/user" in summary_line(s)


def test_batch_to_device() -> None:
    b = history_batch(random_log(10), np.arange(5), 3).to("cpu")
    assert b.hist_codes.shape == (5, 3, 3) and len(b) == 5
