import numpy as np
import pytest

from fluidrec.metrics import auc, auc_reference, bucket_masks, gauc, gauc_reference, logloss


def test_auc_hand_example_with_tie():
    # pairs (pos, neg): (0.35 > 0.1) (0.35 < 0.4) (0.8 > both) -> 3/4; a tie counts 1/2
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_gauc_skips_single_class_users_and_weights_by_impressions():
    users = np.array([1, 1, 2, 2, 2, 3, 3])
    labels = np.array([0, 1, 1, 0, 0, 1, 1])  # user 3: only positives -> skipped
    scores = np.array([0.1, 0.9, 0.2, 0.5, 0.1, 0.0, 0.0])
    # user 1: auc 1.0 (2 impressions); user 2: pos 0.2 vs negs 0.5, 0.1 -> 0.5 (3 impressions)
    assert gauc(users, labels, scores) == pytest.approx((2 * 1.0 + 3 * 0.5) / 5)


def test_fast_paths_match_references_with_ties():
    rng = np.random.default_rng(1)
    g, y, s = rng.integers(0, 30, 800), rng.integers(0, 2, 800), rng.integers(0, 6, 800) / 5
    assert auc(y, s) == pytest.approx(auc_reference(y, s))
    assert gauc(g, y, s) == pytest.approx(gauc_reference(g, y, s))


def test_logloss_and_buckets():
    assert logloss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    assert logloss(np.array([1]), np.array([1.0])) < 1e-6  # clipped, finite
    m = bucket_masks(np.array([0.0, 9.99, 10.0, 29.9, 30.0, -1.0]), np.array([1, 0, 1, 0, 1, 0], bool))
    assert m["age_lt10"].tolist() == [True, True, False, False, False, True]
    assert m["age_10_30"].tolist() == [False, False, True, True, False, False]
    assert m["age_ge30"].tolist() == [False, False, False, False, True, False]
    assert m["new_room"].tolist() == [False, True, False, True, False, True]
    assert (m["seen_room"] == ~m["new_room"]).all()
