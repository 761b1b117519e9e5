import math

import pytest
import torch
import torch.nn.functional as F

from fluidrec.encoder.loss import false_negative_mask, info_nce, info_nce_reference


def _unit(b, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=-1)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_matches_reference(symmetric):
    q, z = _unit(6, 8, 0), _unit(6, 8, 1)
    got = info_nce(q, z, 0.1, symmetric=symmetric).item()
    assert got == pytest.approx(info_nce_reference(q.tolist(), z.tolist(), 0.1, symmetric=symmetric), rel=1e-5)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_with_mask_matches_reference(symmetric):
    q, z = _unit(5, 4, 2), _unit(5, 4, 3)
    keep = torch.ones(5, 5, dtype=torch.bool)
    keep[0, 3] = keep[3, 0] = keep[1, 2] = False
    got = info_nce(q, z, 0.07, keep=keep, symmetric=symmetric).item()
    ref = info_nce_reference(q.tolist(), z.tolist(), 0.07, keep=keep.tolist(), symmetric=symmetric)
    assert got == pytest.approx(ref, rel=1e-5)
    # Masking changes the value: the dropped pairs were in the denominators.
    assert got != pytest.approx(info_nce(q, z, 0.07, symmetric=symmetric).item(), rel=1e-4)


def test_false_negative_mask_on_hand_made_batch():
    # Queries 0 and 1 are near-duplicates (cos ~ 0.995); 2 is orthogonal; rows 2 and 3 hold the same item.
    q = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    items = torch.tensor([10, 11, 12, 12])
    keep = false_negative_mask(q, threshold=0.9, item_ids=items)
    expected = torch.tensor([
        [1, 0, 1, 1],
        [0, 1, 1, 1],
        [1, 1, 1, 0],
        [1, 1, 0, 1],
    ], dtype=torch.bool)
    assert torch.equal(keep, expected)
    assert keep.diagonal().all()
    # threshold >= 1 keeps every query pair (only the duplicate item goes).
    assert false_negative_mask(q, threshold=1.0, item_ids=None).all()


def test_masked_false_negative_no_longer_pushed_apart():
    # Two identical queries with two different items: without the mask, each query's loss pushes the
    # other's item away; with it the loss is the single-positive log-softmax of the rest.
    q = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    z = q.clone()
    keep = false_negative_mask(q, 0.9)
    masked = info_nce(q, z, 1.0, keep=keep).item()
    unmasked = info_nce(q, z, 1.0).item()
    assert masked < unmasked
    # Rows 0 and 1 keep {own item, item 2}: -log(e / (e + 1)); row 2 keeps all: -log(e / (e + 2)).
    row01 = -math.log(math.e / (math.e + 1.0))
    row2 = -math.log(math.e / (math.e + 2.0))
    assert masked == pytest.approx((2 * row01 + row2) / 3, rel=1e-5)
