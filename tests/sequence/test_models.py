"""Models of fluidrec.sequence: folding, attention, fused embedding folds, masks, special cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fluidrec.sequence import build_event_log, history_batch
from fluidrec.sequence.compress import (
    fold_prefix_windows_reference,
    fold_prefixes_reference,
    fold_slots,
    fold_time_spans,
    fold_time_spans_reference,
    fold_windows,
    fold_windows_reference,
    prefix_slots,
    prefix_window_slots,
)
from fluidrec.sequence.config import ARMS, SequenceModelConfig
from fluidrec.sequence.embed import HistoryEmbedding, reference_folded_events
from fluidrec.sequence.layers import attention_reference, masked_attention
from fluidrec.sequence.models import build_model


def fake_log(n_users: int = 6, n_items: int = 40, events: int = 300, seed: int = 0):
    """A random feed through the real EventLog builder: 4-level codes with N = 3, one user with one event."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users - 1, events)
    user[0] = n_users - 1  # the last user has exactly one event: its target has an empty history
    ts = rng.integers(0, 3 * 86_400_000, events)
    ts[0] = 2 * 86_400_000 + 5
    codes = rng.integers(0, 3, (n_items, 4))
    codes[5] = -1  # an item without a code
    return build_event_log(ts=ts, user_id=user, item_id=rng.integers(0, n_items, events), watch_ratio=rng.random(events),
                           label=rng.integers(0, 2, events), code_ids=np.arange(n_items), codes=codes, codebook_size=3)


@pytest.fixture(scope="module")
def batch():
    log = fake_log()
    return log, history_batch(log, np.arange(len(log)), seq_len=10)


def _ragged(b: int = 5, s: int = 11, d: int = 3):
    torch.manual_seed(0)
    x = torch.randn(b, s, d)
    lengths = torch.tensor([0, 1, 4, 11, 7])[:b]
    mask = torch.arange(s)[None, :] >= (s - lengths)[:, None]  # right-aligned, row 0 empty
    return x, mask


@pytest.mark.parametrize("f", [1, 2, 3, 4, 11, 16])
def test_fold_windows_matches_the_loop(f):
    x, mask = _ragged()
    got, got_mask = fold_windows(x, mask, f)
    want, want_mask = fold_windows_reference(x, mask, f)
    assert got.shape == (5, -(-11 // f), 3)
    assert torch.equal(got_mask, want_mask)
    torch.testing.assert_close(got, want)
    assert not got_mask[0].any() and (got[0] == 0).all()  # the empty history folds to masked zeros


def test_fold_windows_aligns_on_the_latest_event():
    x = torch.arange(5.0).reshape(1, 5, 1)  # positions 0..4, all real
    got, m = fold_windows(x, torch.ones(1, 5, dtype=torch.bool), 2)
    assert got.flatten().tolist() == [0.0, 1.5, 3.5] and m.all()  # the oldest window holds one event


@pytest.mark.parametrize("span,tokens", [(1, 4), (3, 3), (100, 2)])
def test_fold_time_spans_matches_the_loop(span, tokens):
    x, mask = _ragged()
    ts = torch.cumsum(torch.randint(0, 3, (5, 11)), dim=1)
    got, got_mask = fold_time_spans(x, mask, ts, span, tokens)
    want, want_mask = fold_time_spans_reference(x, mask, ts, span, tokens)
    assert torch.equal(got_mask, want_mask)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("level", [1, 2])
def test_fold_by_code_prefix_matches_the_loop(batch, level):
    _, b = batch
    x = torch.randn(*b.hist_mask.shape, 4)
    got, got_mask = fold_slots(x, b.hist_mask, prefix_slots(b.hist_codes, level, 3), 3 ** level + 1)
    want, want_mask = fold_prefixes_reference(x, b.hist_mask, b.hist_codes, level, 3)
    assert torch.equal(got_mask, want_mask) and want_mask[:, -1].any()  # item 5 has no code: the unknown slot is used
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("level,f", [(1, 1), (1, 3), (2, 4), (1, 10), (2, 16)])
def test_fold_by_prefix_windows_matches_the_loop(batch, level, f):
    """The kind-aware temporal fold: fold_windows' windows, each split by code prefix (one kind per token)."""
    _, b = batch
    x = torch.randn(*b.hist_mask.shape, 4)
    t = -(-10 // f)
    got, got_mask = fold_slots(x, b.hist_mask, prefix_window_slots(b.hist_codes, level, 3, f), (3 ** level + 1) * t)
    want, want_mask = fold_prefix_windows_reference(x, b.hist_mask, b.hist_codes, level, 3, f)
    assert torch.equal(got_mask, want_mask) and want_mask[:, -t:].any()  # item 5 has no code: an unknown-kind token is used
    torch.testing.assert_close(got, want)
    # summed over kinds, a window's tokens weighted by their event counts are the temporal window's sum
    counts = torch.zeros(b.hist_mask.shape[0], (3 ** level + 1) * t).scatter_add(1, prefix_window_slots(b.hist_codes, level, 3, f),
                                                                                   b.hist_mask.float())  # (B, K*T)
    per_window = (want * counts.unsqueeze(-1)).reshape(-1, 3 ** level + 1, t, 4).sum(1)  # (B, T, 4)
    temporal, temporal_mask = fold_windows(x, b.hist_mask, f)  # (B, T, 4)
    window_count = counts.reshape(-1, 3 ** level + 1, t).sum(1)  # (B, T) events per temporal window
    torch.testing.assert_close(per_window, temporal * window_count.unsqueeze(-1))
    assert torch.equal(temporal_mask, window_count > 0)


TIME = ("time", dict(span_ms=5 * 3_600_000, tokens=4))


@pytest.mark.parametrize("history,mode,kw", [("id", *TIME), ("semantic", *TIME), ("semantic", "prefix", dict(prefix_level=1)),
                                             ("semantic", "prefix", dict(prefix_level=2)), ("semantic", "prefix_window", dict(prefix_level=1)),
                                             ("semantic", "prefix_window", dict(prefix_level=2))])
@pytest.mark.parametrize("recent", [0, 3])
def test_fused_slot_fold_equals_folding_the_event_tokens(batch, history, mode, kw, recent):
    """Time spans, code prefixes, windows by prefix: the sorted embedding_bag path equals fold_slots over the per-event tokens."""
    _, b = batch
    torch.manual_seed(0)
    emb = HistoryEmbedding.ids(40, 8) if history == "id" else HistoryEmbedding.semantic(3, 3, 8)
    with torch.no_grad():
        emb.scale.normal_()
        emb.watch_scale.normal_()
    got, got_mask = emb.events(b, 2, mode=mode, recent=recent, **kw)
    want, want_mask = reference_folded_events(emb, b, 2, recent, mode=mode, **kw)
    assert torch.equal(got_mask, want_mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_kind_aware_fold_on_id_histories_is_the_window_fold(batch):
    """The default fold on ID histories: plain windows (an ID model never reads the codes)."""
    log, b = batch
    torch.manual_seed(0)
    cfg = SequenceModelConfig(history="id", arm="compress", dim=8, tokens=3, globals_=2, recent=3)
    model = build_model(cfg, n_items=log.n_items, codebook_size=3)
    plain = build_model(dataclasses.replace(cfg, fold_mode="window"), n_items=log.n_items, codebook_size=3)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(b), plain(b))
    assert model.tokens(b)[0].shape[1] == 3 + 3  # T windows + R events, no per-kind split


def test_masked_attention_matches_the_loop():
    torch.manual_seed(1)
    q, k, v = (torch.randn(5, 2, 11, 4) for _ in range(3))
    _, mask = _ragged()
    got = masked_attention(q, k, v, mask)
    torch.testing.assert_close(got, attention_reference(q, k, v, mask), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(got).all()  # row 0 has no key at all


@pytest.mark.parametrize("history", ["id", "semantic"])
@pytest.mark.parametrize("f,recent", [(2, 0), (3, 0), (10, 0), (2, 3), (4, 7), (3, 10)])
def test_fused_window_fold_equals_folding_the_event_tokens(batch, history, f, recent):
    _, b = batch
    torch.manual_seed(0)
    emb = HistoryEmbedding.ids(40, 8) if history == "id" else HistoryEmbedding.semantic(3, 3, 8)
    with torch.no_grad():  # a trained-looking item-watch gain (it starts at zero)
        emb.scale.normal_()
        emb.watch_scale.normal_()
    got, got_mask = emb.events(b, f, recent=recent)
    want, want_mask = reference_folded_events(emb, b, f, recent)
    assert got.shape[1] == -(-(10 - recent) // f) + recent  # T folded tokens of the older events, then R events
    assert torch.equal(got_mask, want_mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    if recent:  # the kept events are the per-event tokens themselves
        torch.testing.assert_close(got[:, -recent:], emb.event_tokens(b)[:, -recent:])


def _full_and_compression(**compress):
    torch.manual_seed(0)
    full = build_model(SequenceModelConfig(history="semantic", depth=2, arm="full", dim=8, layers=2), n_items=40, codebook_size=3)
    comp = build_model(SequenceModelConfig(history="semantic", depth=2, arm="compress", dim=8, layers=2, **compress), n_items=40, codebook_size=3)
    return full, comp


@pytest.mark.parametrize("compress", [dict(fold=1, globals_=0, recent=0), dict(tokens=2, globals_=0, recent=10), dict(fold=3, globals_=0, recent=64)])
def test_compression_without_globals_and_nothing_folded_is_full_attention(batch, compress):
    """f = 1 or R >= S (every event kept), G = 0: the compression encoder is full self-attention, weight for weight."""
    _, b = batch
    full, comp = _full_and_compression(**compress)
    missing, unexpected = comp.load_state_dict(full.state_dict(), strict=False)
    assert missing == ["encoder.queries"] and unexpected == []  # the (1, 0, D) empty set of global queries
    torch.testing.assert_close(comp(b), full(b))


@pytest.mark.parametrize("compress", [dict(fold=4, globals_=2, recent=0), dict(fold=4, globals_=0, recent=3), dict(fold=1, globals_=2, recent=10)])
def test_a_fold_or_globals_make_compression_another_function(batch, compress):
    _, b = batch
    full, comp = _full_and_compression(**compress)
    comp.load_state_dict({**full.state_dict(), "encoder.queries": torch.randn(1, compress["globals_"], 8)})
    assert not torch.allclose(comp(b), full(b))


@pytest.mark.parametrize("arm,recent", [(a, 4) for a in ARMS] + [("compress", 0), ("compress", 10)])
@pytest.mark.parametrize("history", ["id", "semantic"])
def test_short_and_empty_histories_stay_finite(batch, arm, recent, history):
    log, b = batch
    lengths = b.hist_mask.sum(1)
    assert lengths.min() == 0 and (lengths < 10).any()  # the fixture holds empty and short histories
    torch.manual_seed(0)
    model = build_model(SequenceModelConfig(history=history, depth=3, arm=arm, dim=8, tokens=3, globals_=2, recent=recent),
                        n_items=log.n_items, codebook_size=3)
    loss, logits = model.step(b)
    loss.backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode", ["time", "prefix", "prefix_window"])
def test_slot_folds_handle_empty_histories_and_ignore_padding(batch, mode):
    log, b = batch
    torch.manual_seed(0)
    model = build_model(SequenceModelConfig(history="semantic", depth=2, arm="compress", dim=8, tokens=3, globals_=2, recent=3,
                                            fold_mode=mode, span_s=7200), n_items=log.n_items, codebook_size=3)
    loss, logits = model.step(b)
    loss.backward()
    assert torch.isfinite(logits).all() and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    noisy = b.to("cpu")
    pad = ~b.hist_mask
    noisy.hist_codes = torch.where(pad.unsqueeze(-1), torch.randint(0, 3, b.hist_codes.shape), b.hist_codes)
    noisy.hist_watch = torch.where(pad, torch.rand(b.hist_watch.shape), b.hist_watch)
    with torch.no_grad():
        torch.testing.assert_close(model(noisy), model(b))


def test_padding_does_not_change_a_prediction(batch):
    """A history's padded slots (whatever they hold) never reach the output."""
    _, b = batch
    torch.manual_seed(0)
    for arm, recent in [(a, 4) for a in ARMS] + [("compress", 0)]:
        model = build_model(SequenceModelConfig(history="id", arm=arm, dim=8, tokens=3, globals_=2, recent=recent), n_items=40, codebook_size=3)
        noisy = b.to("cpu")
        pad = ~b.hist_mask
        noisy.hist_item = torch.where(pad, torch.randint(0, 40, b.hist_item.shape), b.hist_item)
        noisy.hist_watch = torch.where(pad, torch.rand(b.hist_watch.shape), b.hist_watch)
        torch.testing.assert_close(model(noisy), model(b), msg=f"{arm} R={recent}")


def test_semantic_tokens_share_prefixes_and_unknowns_share_a_row():
    emb = HistoryEmbedding.semantic(3, 2, 4)
    codes = torch.tensor([[0, 1, 2, 2], [0, 1, 0, 0], [0, 2, 2, 2], [-1, -1, -1, -1]])
    rows = emb.item_rows(torch.zeros(4, dtype=torch.long), codes)  # (4, 2)
    assert rows[0].tolist() == rows[1].tolist()  # same depth-2 prefix: the same rows, deeper levels ignored
    assert rows[0, 0] == rows[2, 0] and rows[0, 1] != rows[2, 1]
    spec = emb.spec
    assert rows[3].tolist() == [spec.unknown_id(0), spec.offsets[1] + spec.unknown_id(1)]
    assert emb.rows == sum(spec.table_sizes) == (3 + 1) + (9 + 1)


def test_a_prediction_never_sees_events_at_or_after_its_target():
    """Causality end to end: rewriting every event of the user from the target's ts on leaves its score unchanged."""
    import dataclasses

    log = fake_log()
    torch.manual_seed(0)
    model = build_model(SequenceModelConfig(history="semantic", depth=4, arm="full", dim=8), n_items=log.n_items, codebook_size=3)
    users = np.bincount(log.user)
    u = int(users.argmax())
    rows = np.flatnonzero(log.user == u)
    target = int(rows[len(rows) // 2])
    later = (log.user == u) & (log.ts >= log.ts[target])
    later[target] = False  # the target itself keeps its item
    rng = np.random.default_rng(1)
    changed = dataclasses.replace(log, item=np.where(later, rng.integers(0, log.n_items, len(log)), log.item),
                                  watch_ratio=np.where(later, rng.random(len(log)).astype(np.float32) * 5, log.watch_ratio),
                                  codes=np.where(later[:, None], rng.integers(0, 3, log.codes.shape), log.codes))
    with torch.no_grad():
        a = model(history_batch(log, np.array([target]), 32))
        b = model(history_batch(changed, np.array([target]), 32))
    assert later.sum() > 0 and torch.equal(a, b)
