"""TF-IDF + TruncatedSVD reference encoder (``--preset lsa``): the encoder peer a practitioner runs first.

Shape letters: N slices, B batch, T terms of a row, V vocabulary, D width (128).

Fit (``train_lsa``): an item's text is its fields (``LsaConfig.fields``, the neural encoder's,
the author bio included) joined by newlines, without field tags. A scikit-learn
``TfidfVectorizer`` (lowercased words of 2+ characters, ``min_df``, sublinear tf) and a
``TruncatedSVD`` to D (randomized, ``random_state=seed``) are fitted on the slices outside the
evaluation split (``data.heldout_slices`` with the config's seed and fraction, the same split
as the neural encoder), so evaluated slices are never seen; queries are not used at all.

Embedding: ``z = normalize(tfidf(x) @ W^T)`` with W (D, V) the SVD components (the TF-IDF row's
own L2 norm cancels in the final normalisation); queries take the same transform. Words outside
the vocabulary are dropped; a text with no vocabulary word embeds as the zero vector.

Plugging in: the LSA text module "tokenizes" into vocabulary term ids, so ``EncoderData``, the
token cache, ``embed.encode_items`` and ``evaluate.evaluate_model`` run unchanged, and the model
directory's ``config.json`` says ``"kind": "lsa"``, on which ``model.load_encoder`` returns an
``LsaEncoder``. ``fluidrec encoder embed/eval --model DIR`` therefore work as for a trained one.

Files (no pickle anywhere): ``config.json`` (the ``LsaConfig`` + fit summary),
``lsa_vocab.json`` (terms in column order, idf, analyzer settings) and ``lsa_components.npy``
(D, V) float32, read with ``np.load(allow_pickle=False)``; each written atomically, config last.

Example:
    >>> model_dir = train_lsa(encoder_lsa(seed=0), "data/world", "runs/lsa")
    >>> evaluate_encoder(model_dir, "data/world")["probe_acc_level1"]
    >>> model, cfg = load_lsa(model_dir)
    >>> model.encode_texts(["karaoke night", "noodle recipe"]).shape
    (2, 128)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.data.io import Dataset
from fluidrec.encoder.config import LsaConfig
from fluidrec.encoder.data import EncoderData, heldout_slices, load_encoder_data
from fluidrec.encoder.batches import CONFIG_FILE, ItemBatch, TextBatch, pack_text
from fluidrec.errors import DataError, UsageError
from fluidrec.utils.io import atomic_path, read_json, write_json

VOCAB_FILE = "lsa_vocab.json"
COMPONENTS_FILE = "lsa_components.npy"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of 2+ characters


def analyzer_settings(cfg: LsaConfig) -> dict:
    """The TfidfVectorizer settings that decide the terms of a text (stored with the vocabulary)."""
    return {"lowercase": True, "token_pattern": TOKEN_PATTERN, "ngram_range": [1, cfg.ngram_max]}


def _analyzer(settings: Mapping):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        lowercase=bool(settings["lowercase"]), token_pattern=str(settings["token_pattern"]),
        ngram_range=tuple(int(v) for v in settings["ngram_range"]),
    ).build_analyzer()


def item_documents(
    texts: Mapping[str, Sequence[str | None]], fields: Sequence[str], n: int, table: str = "slices", *, require_text: bool = True,
) -> list[str]:
    """Each item's non-empty fields (in ``fields`` order) joined by newlines.

    An item with no text in any field is a DataError when ``require_text`` (this encoder reads
    text only); otherwise its document is ``""``.
    """
    cols = [texts[f] for f in fields if texts.get(f) is not None]
    for f in fields:
        if texts.get(f) is not None and len(texts[f]) != n:
            raise DataError(f"field has {len(texts[f])} values, expected {n}", table=table, column=f)
    docs = []
    for i in range(n):
        doc = "\n".join(s for s in (str(c[i]).strip() for c in cols if c[i] is not None) if s)
        if not doc and require_text:
            raise DataError(
                f"item has no text in any of the fields {list(fields)}; the lsa encoder reads text only",
                table=table, column=fields[0], row=i,
            )
        docs.append(doc)
    return docs


def _rows(texts: Mapping[str, Sequence], has_frame: np.ndarray | None) -> int:
    return len(next(iter(texts.values()))) if texts else (0 if has_frame is None else len(has_frame))


class LsaText:
    """Text module of the LSA encoder: texts -> vocabulary term ids (same interface as ``TextModule``).

    Term ids are columns of the TF-IDF matrix, ``[0, V)``; a word outside the vocabulary is
    ``unk_id = V`` and padding is ``pad_id = V + 1`` (both weigh nothing). A text whose words
    are all unknown keeps one ``unk_id``, so no token list is ever empty.

    Args:
        terms: the vocabulary in column order.
        analyzer: ``analyzer_settings`` of the fit.
        fields: item text fields, in order.
    """

    def __init__(self, terms: Sequence[str], analyzer: Mapping, fields: Sequence[str]) -> None:
        self.terms = list(terms)
        self.analyzer = dict(analyzer)
        self.fields = tuple(fields)
        self.vocab = {t: i for i, t in enumerate(self.terms)}
        self.unk_id = len(self.terms)
        self.pad_id = self.unk_id + 1
        self.eos_id = self.pad_id  # no EOS: nothing is pooled
        self.vocab_size = self.unk_id
        self._analyze = _analyzer(self.analyzer)

    def ids(self, docs: Sequence[str]) -> list[np.ndarray]:
        """Term ids (int32, with repeats: the counts are recovered from them) of each text."""
        vocab, unk = self.vocab, self.unk_id
        out = []
        for doc in docs:
            ids = [vocab.get(t, unk) for t in self._analyze(doc)]
            out.append(np.asarray(ids or [unk], dtype=np.int32))
        return out

    def item_tokens(self, texts: Mapping[str, Sequence[str | None]], *, has_frame: np.ndarray | None = None, table: str = "slices") -> list[np.ndarray]:
        """Term ids of each item's joined fields (frames are ignored: text only)."""
        return self.ids(item_documents(texts, self.fields, _rows(texts, has_frame), table))

    def query_tokens(self, texts: Sequence[str | None], *, table: str = "queries") -> list[np.ndarray]:
        """Term ids of each query; an empty query is a DataError, as for the neural encoder."""
        for i, t in enumerate(texts):
            if t is None or not str(t).strip():
                raise DataError("empty query text", table=table, column="query_text", row=i, value=t)
        return self.ids([str(t) for t in texts])

    def fingerprint(self) -> str:
        """Identity of the ids this module produces (key of the token cache)."""
        payload = json.dumps(["lsa", self.terms, self.analyzer, list(self.fields)])
        return hashlib.sha256(payload.encode()).hexdigest()


class _CollectText:
    """Stands in for a text module while fitting: keeps each item's document, tokenizes nothing."""

    def __init__(self, fields: Sequence[str], require_text: bool = True) -> None:
        self.fields = tuple(fields)
        self.require_text = require_text
        self.docs: list[str] = []

    def item_tokens(self, texts, *, has_frame=None, table: str = "slices") -> list[np.ndarray]:
        self.docs = item_documents(texts, self.fields, _rows(texts, has_frame), table, require_text=self.require_text)
        return [np.zeros(1, np.int32)] * len(self.docs)

    def query_tokens(self, texts, *, table: str = "queries") -> list[np.ndarray]:
        return [np.zeros(1, np.int32)] * len(texts)


class LsaEncoder(nn.Module):
    """TF-IDF + SVD projection, L2-normalised; items and queries share the transform.

    Args:
        text: the ``LsaText`` (vocabulary, analyzer, fields).
        idf: (V,) inverse document frequencies of the fit.
        components: (D, V) SVD components (zero rows where the fit had fewer than D).
        sublinear_tf: ``1 + log(count)`` term frequencies (as fitted).

    Example:
        >>> z = model.encode_items(item_batch(data, idx, model.text.pad_id))   # (B, D)
    """

    fusion = "lsa"
    frame_size = None  # text only: the dataset's frames are never loaded

    def __init__(self, text: LsaText, idf: np.ndarray, components: np.ndarray, sublinear_tf: bool) -> None:
        super().__init__()
        v = len(text.terms)
        if idf.shape != (v,) or components.ndim != 2 or components.shape[1] != v:
            raise DataError(f"lsa model shapes disagree: {v} terms, idf {idf.shape}, components {components.shape} (expected (D, {v}))")
        self.text = text
        self.sublinear_tf = bool(sublinear_tf)
        self.register_buffer("idf", torch.as_tensor(np.asarray(idf, dtype=np.float32)))  # (V,)
        self.register_buffer("proj", torch.as_tensor(np.ascontiguousarray(np.asarray(components, dtype=np.float32).T)))  # (V, D)

    @property
    def out_dim(self) -> int:
        return int(self.proj.shape[1])

    @property
    def components(self) -> np.ndarray:
        """(D, V) float32, scikit-learn's layout."""
        return self.proj.T.contiguous().numpy()

    def _embed(self, batch: TextBatch) -> torch.Tensor:
        """Term-id rows -> L2-normalised (B, D)."""
        ids, lengths = batch.ids, batch.lengths  # (B, T), (B,)
        b, t = ids.shape
        v = self.idf.shape[0]
        keep = (torch.arange(t)[None, :] < lengths[:, None]) & (ids < v)  # (B, T): real, known terms
        rows = torch.arange(b)[:, None].expand(b, t)[keep]
        pairs, counts = torch.unique(rows * v + ids[keep], return_counts=True)  # (nnz,) distinct (row, term), its count
        r, c = pairs // v, pairs % v
        tf = counts.to(torch.float32)
        w = (1.0 + torch.log(tf) if self.sublinear_tf else tf) * self.idf[c]  # (nnz,) TF-IDF weights
        z = torch.zeros(b, self.out_dim).index_add_(0, r, self.proj[c] * w[:, None])  # (B, D) = tfidf @ W^T
        return F.normalize(z, dim=-1)  # a row without known terms stays 0

    def encode_items(self, batch: ItemBatch) -> torch.Tensor:
        return self._embed(batch.text)

    def encode_queries(self, batch: TextBatch) -> torch.Tensor:
        return self._embed(batch)

    @torch.inference_mode()
    def encode_texts(self, docs: Sequence[str]) -> np.ndarray:
        """Raw texts (items or queries) -> (n, D) float32."""
        if not len(docs):
            return np.zeros((0, self.out_dim), np.float32)
        return self._embed(pack_text(self.text.ids(docs), self.text.pad_id)).numpy()


def save_lsa(model: LsaEncoder, cfg: LsaConfig, out_dir: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write an LSA model directory (vocabulary JSON, components .npy, then config.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / VOCAB_FILE, {"terms": model.text.terms, "idf": model.idf.numpy().astype(np.float64).tolist(), "analyzer": model.text.analyzer})
    with atomic_path(out / COMPONENTS_FILE) as tmp:
        with open(tmp, "wb") as fh:  # a handle: np.save would append ".npy" to a path
            np.save(fh, model.components, allow_pickle=False)
    write_json(out / CONFIG_FILE, {**cfg.to_dict(), **(extra or {})})
    return out


def load_lsa(model_dir: str | os.PathLike) -> tuple[LsaEncoder, LsaConfig]:
    """Load a directory written by ``train_lsa`` (``model.load_encoder`` dispatches here)."""
    d = Path(model_dir)
    missing = [f for f in (CONFIG_FILE, VOCAB_FILE, COMPONENTS_FILE) if not (d / f).exists()]
    if missing:
        raise UsageError(f"{d} is not a fitted lsa encoder (missing {', '.join(missing)}); run `fluidrec encoder train --preset lsa`")
    cfg = LsaConfig.from_dict(read_json(d / CONFIG_FILE))
    vocab = read_json(d / VOCAB_FILE)
    if not isinstance(vocab, dict) or not {"terms", "idf", "analyzer"} <= set(vocab):
        raise DataError("not an lsa vocabulary (expects terms, idf, analyzer)", table=str(d / VOCAB_FILE))
    try:
        components = np.load(d / COMPONENTS_FILE, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"unreadable components ({exc})", table=str(d / COMPONENTS_FILE)) from None
    if components.dtype.kind != "f" or not np.isfinite(components).all():
        raise DataError(f"components must be finite floats, got {components.dtype}", table=str(d / COMPONENTS_FILE))
    text = LsaText(vocab["terms"], vocab["analyzer"], cfg.fields)
    model = LsaEncoder(text, np.asarray(vocab["idf"], dtype=np.float32), components, cfg.sublinear_tf)
    return model.eval(), cfg


def untokenized_data(ds: Dataset, fields: Sequence[str], *, require_text: bool = True) -> tuple[EncoderData, list[str]]:
    """The dataset's slices and queries without tokenizing (placeholder ids) and every slice's document."""
    collect = _CollectText(fields, require_text)
    data = load_encoder_data(ds, collect, None, with_queries=ds.has("queries"), cache=False)
    return data, collect.docs


def training_documents(
    ds: Dataset, fields: Sequence[str], eval_fraction: float, seed: int, *, require_text: bool = True,
) -> tuple[list[str], np.ndarray]:
    """Every slice's document (``item_documents``) and the (N,) bool held-out split, tokenizing nothing.

    The split is ``data.heldout_slices`` with this seed and fraction (none without queries), so
    what is fitted on ``~held`` never saw an evaluated slice: the lsa fit and the neural
    encoder's added vocabulary (``encoder.vocab``) both read their text from here.
    """
    data, docs = untokenized_data(ds, fields, require_text=require_text)
    held = heldout_slices(data, eval_fraction, seed) if ds.has("queries") else np.zeros(len(data.slice_ids), bool)
    return docs, held


def train_lsa(cfg: LsaConfig, dataset_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Fit TF-IDF + TruncatedSVD on a dataset's slices outside the held-out split; returns the model dir.

    Args:
        cfg: the LSA settings (``encoder_lsa()``).
        dataset_dir: canonical dataset (``slices``; ``queries`` decide the held-out split).
        out_dir: model directory (created; a previous fit there is replaced).

    Example:
        >>> model_dir = train_lsa(encoder_lsa(seed=0), "data/world", "runs/lsa")
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    t0 = time.perf_counter()
    ds = Dataset(dataset_dir)
    docs, held = training_documents(ds, cfg.fields, cfg.eval_fraction, cfg.seed)
    fit_rows = np.flatnonzero(~held)
    t_load = time.perf_counter() - t0

    settings = analyzer_settings(cfg)
    vec = TfidfVectorizer(
        lowercase=settings["lowercase"], token_pattern=settings["token_pattern"], ngram_range=tuple(settings["ngram_range"]),
        min_df=cfg.min_df, max_df=cfg.max_df, max_features=cfg.max_features or None, sublinear_tf=cfg.sublinear_tf,
        dtype=np.float32,
    )
    try:
        x = vec.fit_transform([docs[i] for i in fit_rows])  # (N_fit, V) sparse
    except ValueError as exc:  # "empty vocabulary" / "no terms remain" on a tiny or odd corpus
        raise DataError(f"cannot build a TF-IDF vocabulary: {exc}", table=str(ds.path("slices"))) from None
    v = x.shape[1]
    k = min(cfg.out_dim, v - 1, x.shape[0] - 1)
    if k < 1:
        raise DataError(f"TF-IDF vocabulary of {v} terms over {x.shape[0]} slices is too small for an SVD", table=str(ds.path("slices")))
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=cfg.svd_iter, random_state=cfg.seed).fit(x)
    components = np.zeros((cfg.out_dim, v), dtype=np.float32)  # (D, V); rows past k stay 0
    components[:k] = svd.components_
    text = LsaText(vec.get_feature_names_out().tolist(), settings, cfg.fields)
    model = LsaEncoder(text, vec.idf_.astype(np.float32), components, cfg.sublinear_tf)
    summary = {
        "slices": int(len(docs)), "fit_slices": int(len(fit_rows)), "heldout_slices": int(held.sum()),
        "vocabulary": int(v), "components": int(k), "explained_variance": round(float(svd.explained_variance_ratio_.sum()), 4),
        "load_s": round(t_load, 2), "train_s": round(time.perf_counter() - t0 - t_load, 2),
    }
    save_lsa(model, cfg, out_dir, extra={"training": summary})
    return Path(out_dir)
