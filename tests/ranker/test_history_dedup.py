"""Shared histories (``Batch.hist_group``): the same outputs and gradients as one history per row."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from fluidrec.errors import UsageError
from fluidrec.ranker.arms import build_arm
from fluidrec.ranker.batching import Batch
from fluidrec.ranker.features import Features
from fluidrec.ranker.inference import serving_layout
from fluidrec.ranker.model import build_ranker
from fluidrec.ranker.tokens import (
    HistoryPool, RowGrid, TokenizerConfig, prefix_match_shares, prefix_match_shares_grouped,
)  # fmt: skip
from fluidrec.ranker.train import RankerModelConfig, RankerTrainConfig, em3_loss, make_optimizers, ranker_spec, update_step

CFG = RankerTrainConfig(batch_size=256, progress=False, model=RankerModelConfig(dim=16, layers=1, heads=2, head_hidden=16))
LEVELS, N_CODES, K = 3, 5, 7


def _groups(g: torch.Generator, b: int, h: int, contiguous: bool) -> torch.Tensor:
    """(b,) history index of each row: every one of the h histories used, runs of uneven length."""
    group = torch.cat([torch.arange(h), torch.randint(0, h, (b - h,), generator=g)])
    group = group.sort().values if contiguous else group[torch.randperm(b, generator=g)]
    return group


def _histories(g: torch.Generator, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    codes = torch.randint(0, N_CODES, (h, K, LEVELS), generator=g)
    mask = torch.rand(h, K, generator=g) < 0.6
    mask[-1] = True  # a full history
    if h > 1:
        mask[0] = False  # a user with no history
    return codes, mask


def _random_batch(g: torch.Generator, b: int, h: int, contiguous: bool = True) -> Batch:
    """A batch of b rows over h shared histories, with codes that repeat (so prefixes match)."""
    codes, mask = _histories(g, h)
    highs = {"user": 1000, "hour": 24, "position": 64, "age_bucket": 8, "author": 256, "item": 50}
    ints = {name: torch.randint(0, hi, (b,), generator=g) for name, hi in highs.items()}
    return Batch(
        **ints, profile=torch.randint(0, 64, (b, 4), generator=g), age_min=torch.rand(b, generator=g) * 90,
        exposure=torch.rand(b, generator=g) * 100, slice_codes=torch.randint(0, N_CODES + 1, (b, LEVELS), generator=g),
        room_codes=torch.randint(0, N_CODES, (b, LEVELS), generator=g), hist_codes=codes, hist_mask=mask,
        labels={t.name: (torch.rand(b, generator=g) < 0.3).float() for t in CFG.tasks},
        hist_group=_groups(g, b, h, contiguous),
    )  # fmt: skip


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_row_grid_round_trip_for_any_grouping():
    g = torch.Generator().manual_seed(0)
    for b, h, contiguous in ((13, 4, True), (13, 4, False), (9, 1, True), (6, 6, True), (40, 5, False)):
        group = _groups(g, b, h, contiguous)
        grid = RowGrid.of(group, h, b)
        x = torch.randn(b, 3, generator=g)
        cells = grid.to_grid(x)  # (G, S, 3)
        assert cells.shape == (grid.grid_rows, grid.slots, 3) and grid.grid_rows * grid.slots >= b
        torch.testing.assert_close(grid.from_grid(cells), x)
        per_history = torch.randn(h, 2, generator=g)
        torch.testing.assert_close(grid.per_row(per_history), per_history[group])
        # each row's cell lies in a grid row of its own history
        hist_of_grid_row = grid.per_grid_row(torch.arange(h))  # (G,)
        flat = torch.arange(b) if grid.flat is None else grid.flat
        assert torch.equal(hist_of_grid_row[flat // grid.slots], group)
    plain = RowGrid.of(None, 5, 5)
    assert plain.slots == 1 and plain.flat is None and plain.cell_hist is None
    with pytest.raises(UsageError, match="5 rows but 2 histories"):
        RowGrid.of(None, 2, 5)
    with pytest.raises(UsageError, match="hist_group has 3 entries"):
        RowGrid.of(torch.zeros(3, dtype=torch.long), 1, 4)


def test_row_grid_width_makes_the_least_work():
    def grid_of(sizes):
        group = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        return RowGrid.of(group, len(sizes), len(group))

    slates = grid_of([6, 6, 5, 6, 12])  # slates, and two requests with the same history
    assert slates.slots == 6 and slates.grid_rows == 6  # the 12 take two grid rows, not 12 slots for all
    long_run = grid_of([6, 200, 6, 4])  # users without clicks yet, adjacent in the stream
    # S = 6: 222 cells and 37 grid rows, each a copy of its history (S = 4: 220 cells but 55 copies; S = 200: 800 cells)
    assert (long_run.slots, long_run.grid_rows) == (6, 1 + 34 + 1 + 1)
    assert grid_of([6, 5, 1, 6]).slots == 6  # no history spans two grid rows: only the cells count
    assert grid_of([6, 6, 6]).cell_hist is None  # one grid row per history: no gather of the history


def test_grouped_match_shares_equal_the_per_row_ones():
    g = torch.Generator().manual_seed(1)
    for contiguous in (True, False):
        b = _random_batch(g, 40, 9, contiguous)
        grid = RowGrid.of(b.hist_group, 9, 40)
        codes, mask = b.row_histories()
        for cand in (b.slice_codes, b.room_codes, b.slice_codes + 7, -b.room_codes):  # codes outside [0, N) compare raw
            want = prefix_match_shares(codes, mask, cand)
            got = prefix_match_shares_grouped(b.hist_codes, b.hist_mask, cand, grid)
            assert torch.equal(got, want)
        assert (want[:, 0] > 0).any()  # the data has matches to find


def test_history_pool_shared_equals_per_row_and_reference():
    """Values and gradients of every parameter, with and without a candidate query and match codes."""
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(2)
    pool = HistoryPool(TokenizerConfig(dim=12, num_codes=N_CODES, levels=LEVELS, code_rows_cap=40))
    torch.nn.init.normal_(pool.match.weight)  # trained-looking match projection (it starts at zero)
    torch.nn.init.normal_(pool.q0)
    for contiguous in (True, False):
        b = _random_batch(g, 30, 7, contiguous)
        codes, mask = b.row_histories()
        cand = torch.randn(30, 12, generator=g)
        for c in (cand, None):
            for match in ((b.slice_codes, b.room_codes), (b.slice_codes, None), (None, None)):
                if c is None and match[0] is None:
                    continue  # no row count to broadcast the shared histories to
                c1 = None if c is None else c.clone().requires_grad_(True)
                c2 = None if c is None else c.clone().requires_grad_(True)
                outs = [
                    pool(b.hist_codes, b.hist_mask, c1, *match, hist_group=b.hist_group),
                    pool(codes, mask, c2, *match),
                    pool.forward_reference(codes, mask, c, *match),
                ]
                _assert_same(outs[0], outs[1])
                _assert_same(outs[0], outs[2])
                w = torch.randn(outs[0].shape, generator=g)
                params = list(pool.parameters())
                wrt = [params + ([] if c is None else [c1]), params + ([] if c is None else [c2]), params]
                grads = [torch.autograd.grad((o * w).sum(), x, allow_unused=True) for o, x in zip(outs, wrt)]
                for ga, gb in zip(grads[0], grads[1]):  # parameters and the query input
                    assert (ga is None) == (gb is None)
                    if ga is not None:
                        _assert_same(ga, gb)
                for ga, gr in zip(grads[0], grads[2]):
                    if ga is not None and gr is not None:
                        _assert_same(ga, gr)
    # a user with no history gets exactly the match term, with shared histories too
    grid_row = int((b.hist_group == 0).nonzero()[0])
    out = pool(b.hist_codes, b.hist_mask, cand, b.slice_codes, b.room_codes, hist_group=b.hist_group)
    alone = pool.match(pool.match_features(b.hist_codes, b.hist_mask, b.slice_codes, b.room_codes, b.hist_group))
    torch.testing.assert_close(out[grid_row], alone[grid_row])


@pytest.mark.parametrize("arm", ["fluid", "baseline", "gate_feature", "late_em3"])
def test_ranker_outputs_and_update_step_are_the_same_with_shared_histories(arm, toy_features):
    plan = build_arm(arm)
    torch.manual_seed(3)
    model = build_ranker(ranker_spec(CFG, toy_features, plan, plan.stages[-1]), toy_features.room_vocab)
    with torch.no_grad():  # non-trivial weights everywhere (some start at zero)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(3)
    shared = _random_batch(g, 64, 11, contiguous=True)
    shared.slice_codes = shared.slice_codes.clamp(0, toy_features.num_codes - 1)
    plain = shared.with_row_histories()
    assert plain.hist_codes.shape[0] == 64 and shared.hist_codes.shape[0] == 11
    model.eval()
    _assert_same(model(shared).logits, model(plain).logits)
    # a training loss on each: the same loss and the same gradient of every weight (dense and sparse tables).
    # (Weights after an Adam step are no test: its first step is lr * sign(grad), which float noise flips.)
    model.train()
    twin = copy.deepcopy(model)
    grads = []
    for m, batch in ((model, shared), (twin, plain)):
        out = m(batch)
        loss = m.loss(out, batch) + (0.1 * em3_loss(out.aux["s"], out.aux["g"]) if arm == "late_em3" else 0.0)
        loss.backward()
        grads.append({n: (p.grad.to_dense() if p.grad.is_sparse else p.grad) for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "tokenizer.history.codes.table.weight" in grads[0]
    for name, ga in grads[0].items():
        torch.testing.assert_close(ga, grads[1][name], rtol=1e-5, atol=1e-7, msg=name)
    update_step(model, shared, make_optimizers(model, CFG))  # and the step itself runs on shared histories


def _slate_features(toy: Features, slate: int = 6) -> Features:
    """The toy features with every request a slate: runs of ``slate`` rows share user, ts and history."""
    n = len(toy) // slate * slate
    req = np.arange(n) // slate
    head = req * slate  # the request's first row
    per_row = ("room_id", "profile", "position", "age_bucket", "age_min", "exposure", "author", "item", "slice_codes", "room_codes", "labels", "seen")
    f = dataclasses.replace(toy, **{k: getattr(toy, k)[:n] for k in per_row})
    return dataclasses.replace(
        f, ts=toy.ts[head], user_id=toy.user_id[head], user=toy.user[head], hour=toy.hour[head], hist_rows=toy.hist_rows[head],
        n_train=min(toy.n_train, n - 1),
    )  # fmt: skip


def test_features_batch_shares_each_requests_history(toy_features):
    feats = _slate_features(toy_features)
    plan = build_arm("fluid")
    torch.manual_seed(4)
    model = build_ranker(ranker_spec(CFG, feats, plan, plan.stages[-1]), feats.room_vocab).eval()
    for rows in (slice(3000, 3600), slice(1, 8), np.arange(2000, 2100)[::-1].copy(), slice(5, 6)):
        shared = feats.batch(rows)
        plain = feats.batch(rows, share_histories=False)
        assert plain.hist_group is None
        codes, mask = shared.row_histories()
        assert torch.equal(codes, plain.hist_codes) and torch.equal(mask, plain.hist_mask)
        _assert_same(model(shared).logits, model(plain).logits)
    big = feats.batch(slice(3000, 3600))
    assert big.hist_codes.shape[0] <= 600 // 6 + 1  # one history per request (fewer where histories coincide)
    assert feats.batch(slice(5, 6)).hist_group is None  # nothing to share


def test_shared_and_row_layouts_convert_both_ways():
    g = torch.Generator().manual_seed(5)
    plain = _random_batch(g, 20, 6).with_row_histories()
    shared = plain.with_shared_histories()
    assert shared.hist_codes.shape[0] <= 6  # runs of equal rows stored once
    codes, mask = shared.row_histories()
    assert torch.equal(codes, plain.hist_codes) and torch.equal(mask, plain.hist_mask)
    assert shared.with_shared_histories() is shared and plain.with_row_histories() is plain
    assert shared.to("cpu").hist_group is not None and plain.to("cpu").hist_group is None
    distinct = _random_batch(g, 5, 5).with_row_histories()
    distinct.hist_codes = torch.arange(5 * K * LEVELS).reshape(5, K, LEVELS)
    assert distinct.with_shared_histories() is distinct  # nothing shared: unchanged


def test_serving_layout_stores_one_users_history_once():
    g = torch.Generator().manual_seed(6)
    one = _random_batch(g, 12, 1)
    assert serving_layout(one) is one  # already one history
    copies = one.with_row_histories()  # how ScoringContext.make_batch builds a request: one history copied per row
    served = serving_layout(copies)
    assert served.hist_codes.shape[0] == 1 and torch.equal(served.hist_group, torch.zeros(12, dtype=torch.long))
    many = _random_batch(g, 12, 4)
    assert serving_layout(many).hist_group is None  # several users: one history per row (static shapes when compiled)
    assert serving_layout(many.with_row_histories()).hist_group is None


