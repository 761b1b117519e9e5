"""The TF-IDF + SVD reference encoder (``--preset lsa``), and the evaluation fixes it needed:
the linear probe on small galleries and tied retrieval scores."""

import json

import numpy as np
import pytest

from fluidrec.cli import main
from fluidrec.data.embeddings import read_embeddings
from fluidrec.data.io import Dataset
from fluidrec.encoder.config import LsaConfig, encoder_lsa, encoder_tiny
from fluidrec.encoder.data import heldout_slices, load_encoder_data
from fluidrec.encoder.evaluate import evaluate_encoder, i2q_recall, linear_probe, q2i_recall, stratified_split
from fluidrec.encoder.lsa import COMPONENTS_FILE, VOCAB_FILE, LsaEncoder, _CollectText, train_lsa
from fluidrec.encoder.model import load_encoder, model_kind
from fluidrec.errors import ConfigError

from .conftest import TOPICS


@pytest.fixture(scope="module")
def lsa_dir(enc_dataset, tmp_path_factory):
    cfg = encoder_lsa(0, like=encoder_tiny(seed=0))  # the tiny split: 25% held out
    return train_lsa(cfg, enc_dataset, tmp_path_factory.mktemp("lsa"))


def test_cli_round_trip_train_embed_eval(enc_dataset, tmp_path, capsys):
    model = tmp_path / "lsa"
    assert main(["encoder", "train", "--preset", "lsa", "--dataset", str(enc_dataset), "--out", str(model), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fit_slices"] + summary["heldout_slices"] == summary["slices"] == 108
    assert summary["heldout_slices"] > 0 and summary["components"] >= 1
    saved = json.loads((model / "config.json").read_text())
    assert saved["kind"] == "lsa" and model_kind(model) == "lsa"
    assert np.load(model / COMPONENTS_FILE, allow_pickle=False).shape == (128, summary["vocabulary"])

    emb = tmp_path / "emb.parquet"
    assert main(["encoder", "embed", "--model", str(model), "--dataset", str(enc_dataset), "--out", str(emb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 108
    ids, z = read_embeddings(emb)
    assert z.shape == (108, 128) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)

    assert main(["encoder", "eval", "--model", str(model), "--dataset", str(enc_dataset), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m == evaluate_encoder(model, enc_dataset)  # deterministic, and the library call agrees
    # four words per topic, disjoint across the six topics: the text says the topic
    assert m["probe_acc_level1"] >= 0.95
    assert m["live"]["q2i_recall@50"] == 1.0 and m["video"]["q2i_recall@10"] > 0.3
    assert m["probe_acc_level3"] is None  # the hand-made dataset has no topic_l3


def test_neural_flags_are_refused_with_lsa(enc_dataset, tmp_path, capsys):
    code = main(["encoder", "train", "--preset", "lsa", "--dataset", str(enc_dataset), "--out", str(tmp_path / "m"), "--steps", "5"])
    assert code == 2 and "--steps" in capsys.readouterr().err


def test_same_as_sklearn_pipeline(enc_dataset, lsa_dir):
    """Embedding from the stored term ids equals normalize(svd.transform(tfidf.transform(text)))."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    model, cfg = load_encoder(lsa_dir)
    assert isinstance(model, LsaEncoder) and isinstance(cfg, LsaConfig)
    collect = _CollectText(cfg.fields)
    data = load_encoder_data(Dataset(enc_dataset), collect, None, cache=False)
    held = heldout_slices(data, cfg.eval_fraction, cfg.seed)
    fit_docs = [collect.docs[i] for i in np.flatnonzero(~held)]
    vec = TfidfVectorizer(min_df=cfg.min_df, sublinear_tf=True, dtype=np.float32)
    x = vec.fit_transform(fit_docs)
    k = min(128, x.shape[1] - 1)
    svd = TruncatedSVD(k, algorithm="randomized", n_iter=cfg.svd_iter, random_state=cfg.seed).fit(x)
    assert model.text.terms == vec.get_feature_names_out().tolist()  # fitted without the held-out slices

    docs = collect.docs + ["karaoke song", "unknownword"]  # all items, a query-like text, an all-unknown text
    ref = svd.transform(vec.transform(docs))
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    got = model.encode_texts(docs)
    assert got.shape == (len(docs), 128) and np.abs(got[:, k:]).max() == 0.0  # padded components
    np.testing.assert_allclose(got[:, :k], ref, atol=2e-5)
    assert np.all(got[-1] == 0.0)  # no vocabulary word: the zero vector

    # the eval path (cached term ids through encode_items) gives the same vectors
    from fluidrec.encoder.embed import encode_items

    data = load_encoder_data(Dataset(enc_dataset), model.text, None)
    np.testing.assert_allclose(encode_items(model, data), got[: len(collect.docs)], atol=1e-6)


def test_deterministic_by_seed(enc_dataset, lsa_dir, tmp_path):
    again = train_lsa(encoder_lsa(0, like=encoder_tiny(seed=0)), enc_dataset, tmp_path / "again")
    for name in (COMPONENTS_FILE, VOCAB_FILE):
        assert (again / name).read_bytes() == (lsa_dir / name).read_bytes()
    other = train_lsa(encoder_lsa(1, like=encoder_tiny(seed=1)), enc_dataset, tmp_path / "other")
    assert (other / COMPONENTS_FILE).read_bytes() != (lsa_dir / COMPONENTS_FILE).read_bytes()


def test_lsa_config_validation_and_eval_settings():
    with pytest.raises(ConfigError, match="unknown fields"):
        LsaConfig(fields=("title", "nope"))
    with pytest.raises(ConfigError, match="min_df"):
        LsaConfig(min_df=0)
    ev = encoder_lsa(3, like=encoder_tiny(seed=3)).eval_settings()
    ref = encoder_tiny(seed=3).eval_settings()
    assert (ev.seed, ev.eval_fraction, ev.eval_gallery, ev.probe_items) == (ref.seed, ref.eval_fraction, ref.eval_gallery, ref.probe_items)
    assert LsaConfig.from_dict(encoder_lsa(2).to_dict()) == encoder_lsa(2)


def test_queries_are_embedded_like_items(lsa_dir):
    model, _ = load_encoder(lsa_dir)
    z = model.encode_texts([" ".join(t) for t in TOPICS] + ["karaoke music"])
    sims = z[-1] @ z[:-1].T
    assert int(np.argmax(sims)) == 0  # a singing query is nearest the singing words


# ------------------------------------------------------------------ the probe, on known answers


def test_probe_separable_features_score_one_even_when_collapsed():
    """A barely trained encoder can put every item at cosine 0.99999 of the others; the class
    signal is then ~1e-4. The probe standardises its features, so it still sees it (before the
    fix it predicted the training majority: 0.0 on the tiny world)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 200)
    onehot = np.eye(128)[y]
    assert linear_probe(onehot.astype(np.float32), y, 0) == 1.0
    base = rng.normal(size=128)
    x = base / np.linalg.norm(base) + 1e-4 * onehot  # (200, 128) all within 1e-4 of one point
    assert linear_probe(x.astype(np.float32), y, 0) == 1.0


def test_probe_random_features_are_near_chance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2000, 64)).astype(np.float32), rng.integers(0, 8, 2000)
    assert abs(linear_probe(x, y, 0) - 1 / 8) < 0.05


def test_probe_without_signal_scores_the_majority_share_exactly():
    """Constant features: the probe predicts the training majority. With the stratified split the
    test rows keep the class shares: 6 of 12 are class 0 -> exactly 0.5, for every seed."""
    y = np.array([0] * 20 + [1] * 10 + [2] * 10)
    x = np.ones((40, 16), np.float32)
    assert {linear_probe(x, y, s) for s in range(5)} == {0.5}


def test_stratified_split_by_hand():
    y = np.array([0] * 10 + [1] * 5 + [2])
    tr, te = stratified_split(y, 0.7, np.random.default_rng(0))
    assert np.bincount(y[tr]).tolist() == [7, 4, 1] and np.bincount(y[te], minlength=3).tolist() == [3, 1, 0]
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(y)))


# ------------------------------------------------------------------ ties in retrieval


def test_tied_scores_count_in_expectation():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    zero_q = np.zeros((1, 2))  # an LSA query without a vocabulary word: ties with all 4 items
    assert q2i_recall(zero_q, gallery, np.array([0]), ks=(1, 2, 4)) == {1: 0.25, 2: 0.5, 4: 1.0}
    # no ties: the plain hit
    assert q2i_recall(np.array([[1.0, 0.0]]), gallery, np.array([0]), ks=(1,)) == {1: 1.0}
    items = np.array([[1.0, 0.0], [0.0, 1.0]])
    qs = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    # item 0: its one query ties with 2 others at the top -> 1/3; item 1: every query scores 0,
    # 2 of the 3 are its own -> 1 - C(1,1)/C(3,1) = 2/3
    assert i2q_recall(items, qs, owner=np.array([0, 1, 1]), ks=(1, 3)) == pytest.approx({1: 0.5, 3: 1.0})
