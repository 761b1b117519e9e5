"""Optimised hot-path ops against their plain reference implementations (values and gradients)."""

import pytest
import torch
import torch.nn.functional as F

from fluidrec.ranker.batching import Batch
from fluidrec.ranker.ops import gather_rows
from fluidrec.ranker.tokens import (
    CodeEmbedding, HistoryPool, Tokenizer, TokenizerConfig, prefix_match_shares, prefix_match_shares_reference,
)  # fmt: skip


def test_gather_rows_matches_embedding_values_and_gradient():
    torch.manual_seed(0)
    w1 = torch.randn(50, 6, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    idx = torch.randint(0, 50, (7, 9, 3))  # repeated rows: gradients must accumulate
    g = torch.randn(7, 9, 3, 6)
    a, b = gather_rows(w1, idx), F.embedding(idx, w2)
    torch.testing.assert_close(a, b)
    (a * g).sum().backward()
    (b * g).sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad)
    with torch.inference_mode():
        torch.testing.assert_close(gather_rows(w1, idx), b.detach())


def _compare(fast, ref, params):
    torch.testing.assert_close(fast, ref)
    gf = torch.autograd.grad(fast.square().sum(), params, allow_unused=True)
    gr = torch.autograd.grad(ref.square().sum(), params, allow_unused=True)
    for a, b in zip(gf, gr):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


def test_fused_code_table_matches_per_level_tables():
    for scheme, dim in (("prefix", 12), ("level", 13)):  # 13: not divisible by L -> projection
        torch.manual_seed(1)
        emb = CodeEmbedding(TokenizerConfig(dim=dim, num_codes=8, levels=3, scheme=scheme, code_rows_cap=40))
        codes = torch.randint(0, 9, (5, 4, 3))  # includes an unseen code value (8): the unknown row
        _compare(emb(codes), emb.forward_reference(codes), list(emb.parameters()))
        assert emb.level_table(2).shape == (emb.rows[2] + 1, emb.level_dim)


def test_an_old_checkpoints_scheme_name_loads_as_the_one_spelling():
    from fluidrec.ranker.arms import build_arm

    assert TokenizerConfig(scheme="levelwise").scheme == "level"  # as saved by earlier versions
    assert TokenizerConfig(scheme="prefix_ngram") == TokenizerConfig()  # the same config, same tables
    assert build_arm("fluid_levelwise").scheme == "level" and build_arm("fluid").scheme == "prefix"


def test_history_pool_matches_textbook_attention():
    torch.manual_seed(2)
    pool = HistoryPool(TokenizerConfig(dim=8, num_codes=4, levels=2))
    codes = torch.randint(0, 4, (6, 5, 2))
    mask = torch.rand(6, 5) < 0.6
    mask[0] = False  # a user with no history: zero vector
    cand = torch.randn(6, 8)
    torch.nn.init.normal_(pool.match.weight)  # trained-looking match projection (it starts at zero)
    slice_codes, room_codes = torch.randint(0, 4, (6, 2)), torch.randint(0, 4, (6, 2))
    for c in (cand, None):
        _compare(pool(codes, mask, c), pool.forward_reference(codes, mask, c), list(pool.parameters()))
        _compare(pool(codes, mask, c, slice_codes, room_codes), pool.forward_reference(codes, mask, c, slice_codes, room_codes),
                 list(pool.parameters()))
    no_history = pool.match(pool.match_features(codes, mask, slice_codes, room_codes))[0]
    assert torch.allclose(pool(codes, mask, cand, slice_codes, room_codes)[0], no_history)  # nothing pooled


def test_prefix_match_shares_by_hand_and_against_the_loop():
    hist = torch.tensor([[[1, 2, 0], [1, 3, 0], [2, 2, 0], [1, 2, 1]]])  # (1, K=4, L=3)
    mask = torch.tensor([[True, True, True, False]])  # the last item is padding
    cand = torch.tensor([[1, 2, 0]])
    # depth 1: items 0, 1 share "1" (2 of 3); depth 2: item 0 shares "1,2"; depth 3: item 0
    assert prefix_match_shares(hist, mask, cand)[0].tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert prefix_match_shares(hist, torch.zeros_like(mask), cand)[0].tolist() == [0.0, 0.0, 0.0]
    g = torch.Generator().manual_seed(5)
    h, m, c = torch.randint(0, 3, (20, 6, 3), generator=g), torch.rand(20, 6, generator=g) < 0.7, torch.randint(0, 3, (20, 3), generator=g)
    fast = prefix_match_shares(h, m, c)
    for i in range(20):
        valid = [h[i, k].tolist() for k in range(6) if m[i, k]]
        assert fast[i].tolist() == pytest.approx(prefix_match_shares_reference(valid, c[i].tolist()))


def test_side_tokens_match_one_lookup_per_field():
    torch.manual_seed(3)
    tok = Tokenizer(TokenizerConfig(dim=8, num_codes=4, levels=2), ("user", "profile", "context", "history"))
    b = 10
    batch = Batch(
        user=torch.randint(0, 100, (b,)), profile=torch.randint(0, 64, (b, 4)), hour=torch.randint(0, 24, (b,)),
        position=torch.randint(0, 64, (b,)), age_bucket=torch.randint(0, 8, (b,)), age_min=torch.rand(b),
        exposure=torch.rand(b), author=torch.zeros(b, dtype=torch.long), item=torch.zeros(b, dtype=torch.long),
        slice_codes=torch.zeros(b, 2, dtype=torch.long), room_codes=torch.zeros(b, 2, dtype=torch.long),
        hist_codes=torch.zeros(b, 3, 2, dtype=torch.long), hist_mask=torch.zeros(b, 3, dtype=torch.bool),
    )  # fmt: skip
    fast, ref = tok.side_tokens(batch), tok.side_tokens_reference(batch)
    _compare(torch.cat(fast, 1), torch.cat(ref, 1), [tok.side.weight])
    # fields do not alias: hour 0 and profile-column-0 value 0 are different rows
    assert not torch.equal(tok.side_table(0)[0], tok.side_table(4)[0])
