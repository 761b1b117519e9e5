"""The retrieval ceiling (encoder.oracle): its word model is the generator's, and it ranks by it."""

import numpy as np

from fluidrec.data.world import content
from fluidrec.data.world.generate import world_taxonomy
from fluidrec.data.world.taxonomy import Taxonomy
from fluidrec.encoder.config import encoder_tiny
from fluidrec.encoder.evaluate import recall_from_scores
from fluidrec.encoder.oracle import leaf_word_probs, oracle_retrieval, query_log_likelihood


def _two_leaf_tree() -> Taxonomy:
    """One root, one level-2 and one level-3 node, two leaves; words 0..9."""
    vocab = [np.array([[0, 1]]), np.array([[2, 3]]), np.array([[4, 5]]), np.array([[6, 6], [7, 8]])]
    return Taxonomy(
        branching=(1, 1, 1, 2), n_nodes=(1, 1, 1, 2), parent=[np.zeros(0), np.zeros(1), np.zeros(1), np.zeros(2)],
        ancestors=np.array([[0, 0, 0, 0], [0, 0, 0, 1]]), vocab=vocab, names=[["r"], ["a"], ["b"], ["x", "y"]],
        words=np.array([f"w{i}" for i in range(10)], dtype=object), generic=np.array([9]), noise=np.array([9]),
    )


def test_leaf_word_probs_by_hand():
    tax = _two_leaf_tree()
    leaf_only = leaf_word_probs(tax, (1, 0, 0, 0, 0, 0, 0, 0))
    assert leaf_only[0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0]  # leaf 0's vocabulary is word 6 twice
    assert leaf_only[1].tolist() == [0, 0, 0, 0, 0, 0, 0, 0.5, 0.5, 0]
    assert np.array_equal(leaf_word_probs(tax, (0, 0, 0, 0, 1, 0, 0, 0)), leaf_only[::-1])  # the sibling's words
    root_half = leaf_word_probs(tax, (0, 0, 0, 1, 0, 0, 1, 0))  # half level 1, half generic
    assert root_half[0].tolist() == [0.25, 0.25, 0, 0, 0, 0, 0, 0, 0, 0.5]
    ll = query_log_likelihood(tax, ["w6 w6"])  # the query mixture: leaf words favour leaf 0
    assert ll[0, 0] > ll[0, 1]


def test_word_model_matches_the_generator(tiny_world):
    tax = world_taxonomy(tiny_world)
    mix = content.MIXES["query"]["query"]
    probs = leaf_word_probs(tax, mix)
    assert np.allclose(probs.sum(1), 1.0)
    rng = np.random.default_rng(0)
    drawn = content.sample_word_ids(tax, np.full(40_000, 3), 1, mix, rng)[:, 0]
    freq = np.bincount(drawn, minlength=len(tax.words)) / len(drawn)
    assert 0.5 * np.abs(freq - probs[3]).sum() < 0.03  # total variation: sampling noise only
    assert 0.5 * np.abs(freq - probs[4]).sum() > 0.2  # another leaf's words are not these


def test_ties_count_as_random_order():
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])  # the positive ties with two others
    assert recall_from_scores(scores, np.array([0]), ks=(1, 3))[1] == 1 / 3
    assert recall_from_scores(scores, np.array([0]), ks=(1, 3))[3] == 1.0


def test_oracle_retrieval_runs_on_the_world_split(tiny_world):
    out = oracle_retrieval(tiny_world, encoder_tiny(seed=0).eval_settings())
    for dom in ("live", "video"):
        r10, r50 = out[dom]["q2i_recall@10"], out[dom]["q2i_recall@50"]
        assert 0.0 < r10 <= r50 <= 1.0
