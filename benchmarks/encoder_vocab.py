"""What a bag of WordPiece pieces can retrieve against a bag of words, on a dataset's held-out queries.

The diagnosis behind ``ModelConfig.added_words`` (docs/encoder.md, "Diagnosis"): a one-layer
encoder read at its EOS row sees a weighted bag of its input tokens. This script fits the
``lsa`` recipe (TF-IDF, sublinear tf, min_df 2, TruncatedSVD 128, on the slices outside the
held-out split) over four tokenizations of the same text and scores live Q2I Recall@10 on the
encoder evaluation's held-out queries and gallery:

- ``words``: the tokenizer's words (what ``added_words`` makes into tokens);
- ``pieces``: MiniLM's WordPiece pieces of the whole text;
- ``pieces_first<N>``: only the first N pieces of each slice (the old demo budget was 32).

It prints each row's recall and its ``ratio`` to the ``words`` row (1.0 = nothing lost).

Usage:
    python benchmarks/encoder_vocab.py --dataset runs/world_small [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fluidrec.data.io import Dataset  # noqa: E402
from fluidrec.encoder.config import DEFAULT_FIELDS, encoder_demo  # noqa: E402
from fluidrec.encoder.data import heldout_slices  # noqa: E402
from fluidrec.encoder.evaluate import heldout_pairs, recall_from_scores  # noqa: E402
from fluidrec.encoder.lsa import untokenized_data  # noqa: E402
from fluidrec.encoder.text import load_tokenizer, minilm_dir  # noqa: E402
from fluidrec.encoder.vocab import _words  # noqa: E402


def _recall(analyzer, docs: list[str], held: np.ndarray, gallery: np.ndarray, queries: list[str], pos: np.ndarray, seed: int) -> float:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vec = TfidfVectorizer(analyzer=analyzer, min_df=2, sublinear_tf=True)
    x = vec.fit_transform([docs[i] for i in np.flatnonzero(~held)])  # (N_fit, V)
    svd = TruncatedSVD(128, random_state=seed).fit(x)
    g = normalize(svd.transform(vec.transform([docs[i] for i in gallery])))  # (G, 128)
    q = normalize(svd.transform(vec.transform(queries)))  # (Q, 128)
    return recall_from_scores(q @ g.T, pos, ks=(10,))[10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = encoder_demo(args.seed).eval_settings()
    ds = Dataset(args.dataset)
    data, docs = untokenized_data(ds, DEFAULT_FIELDS, require_text=False)
    held = heldout_slices(data, settings.eval_fraction, settings.seed)
    pairs = heldout_pairs(data, held, False, settings.eval_gallery, settings.seed)
    gallery, qidx, pos = pairs.gallery, pairs.qidx, pairs.pos
    texts = ds.table("queries", ["query_text"]).column("query_text").to_pylist()
    tok = load_tokenizer(minilm_dir())
    rows = {"words": lambda d: _words(tok, d), "pieces": tok.tokenize}
    rows.update({f"pieces_first{n}": (lambda d, n=n: tok.tokenize(d)[:n]) for n in (128, 64, 32)})
    out = {name: _recall(an, docs, held, gallery, [str(texts[j]) for j in qidx], pos, args.seed) for name, an in rows.items()}
    result = {"live_q2i_recall@10": out, "ratio_to_words": {k: v / out["words"] for k, v in out.items()}, "queries": int(len(qidx))}
    if args.json:
        print(json.dumps(result))
        return
    for k, v in out.items():
        print(f"{k:16s} live Q2I R@10 {v:.3f}  ratio to words {v / out['words']:.2f}")


if __name__ == "__main__":
    main()
