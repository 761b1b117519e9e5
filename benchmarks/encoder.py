"""Encoder speed: text-path embedding throughput vs sentence-transformers, and train step time.

Prints ``items_per_s`` (our text path: field tagging + budgeted tokenization + length-bucketed
batches + the LM + EOS pooling + projection, under inference_mode) against ``st_items_per_s``
(sentence-transformers' ``encode`` of the same MiniLM on the same tagged texts, same max
length, same batch size, same run), their ``ratio`` (target >= 1.0), and ``train_step_s``
(one optimiser step of the joint stage at the default batch size) for the default config and
for ``encoder_demo`` (what ``fluidrec reproduce`` uses), and ``encoder_demo`` item embedding with
the EOS-only last layer (``demo_embed_items_per_s``) and with the plain Hugging Face forward
(``demo_embed_reference_items_per_s``).

Usage:
    python benchmarks/encoder.py [--n 512] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import measure_matmul_flops  # noqa: E402

from fluidrec.encoder.config import encoder_default, encoder_demo  # noqa: E402
from fluidrec.encoder.data import EncoderData  # noqa: E402
from fluidrec.encoder.embed import encode_items, encode_texts  # noqa: E402
from fluidrec.encoder.model import build_encoder  # noqa: E402
from fluidrec.encoder.text import minilm_dir  # noqa: E402
from fluidrec.encoder.train import set_trainable, train_step  # noqa: E402

VOCAB = ("singing dance piano guitar karaoke cooking noodles kitchen recipe gaming boss level raid "
         "fitness workout yoga squat travel beach city flight painting canvas brush art chat fans "
         "gift thanks hello welcome tonight live stream new song cover tutorial").split()
FIELDS = ("title", "ocr", "transcript", "comments", "tags")
FIELD_WORDS = {"title": (3, 8), "ocr": (0, 6), "transcript": (10, 60), "comments": (0, 20), "tags": (1, 3)}


def make_texts(n: int, seed: int = 0) -> dict[str, list[str | None]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[str | None]] = {f: [] for f in FIELDS}
    for _ in range(n):
        for f, (lo, hi) in FIELD_WORDS.items():
            k = int(rng.integers(lo, hi + 1))
            out[f].append(" ".join(rng.choice(VOCAB, size=k)) if k else None)
    return out


def tagged_strings(texts: dict[str, list], fields) -> list[str]:
    return [" ".join(f"{f}: {texts[f][i]}" for f in fields if texts.get(f) and texts[f][i]) for i in range(len(texts["title"]))]


def bench_text_path(n: int, batch_size: int, budget: int, rounds: int = 2) -> dict:
    from sentence_transformers import SentenceTransformer

    cfg = encoder_default().model
    model = build_encoder(cfg.__class__(**{**cfg.__dict__, "text_tokens": budget, "fields": FIELDS}), frame_size=None).eval()
    texts = make_texts(n)
    strings = tagged_strings(texts, FIELDS)
    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    st.max_seq_length = budget + 2  # + [CLS] and [SEP]: the same text tokens as our budget
    warm = {f: v[:batch_size] for f, v in texts.items()}
    encode_texts(model, model.text.item_tokens(warm), batch_size=batch_size)
    st.encode(strings[:batch_size], batch_size=batch_size)

    # Alternate the two paths and keep each one's best round: the machine is shared, and a
    # neighbour's burst should not decide the ratio.
    ours, theirs = float("inf"), float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        z = encode_texts(model, model.text.item_tokens(texts), batch_size=batch_size)
        ours = min(ours, time.perf_counter() - t0)
        t0 = time.perf_counter()
        st.encode(strings, batch_size=batch_size, convert_to_numpy=True)
        theirs = min(theirs, time.perf_counter() - t0)
    assert z.shape == (n, cfg.out_dim)
    tokens = float(np.mean([len(t) for t in model.text.item_tokens(texts)]))
    return {"items_per_s": n / ours, "st_items_per_s": n / theirs, "ratio": theirs / ours, "mean_text_tokens": tokens}


def fake_data(model, n: int, frame_size: int, seed: int = 0) -> EncoderData:
    rng = np.random.default_rng(seed)
    texts = make_texts(n, seed)
    items = model.text.item_tokens(texts)
    queries = model.text.query_tokens([" ".join(rng.choice(VOCAB, size=3)) for _ in range(n)])
    frames = rng.integers(0, 255, size=(n, frame_size, frame_size, 3), dtype=np.uint8)
    return EncoderData(
        slice_ids=np.arange(n), is_video=np.arange(n) % 2 == 1, item_tokens=items, frames=frames,
        has_frame=np.ones(n, bool), topics={}, query_ids=np.arange(n), query_tokens=queries, query_item=np.arange(n),
    )


def bench_train_step(cfg, frame_size: int = 32, repeats: int = 2) -> float:
    model = build_encoder(cfg.model, frame_size).train()
    data = fake_data(model, 4 * cfg.train.batch_size, frame_size)
    params = set_trainable(model, "all")  # the joint stage: everything trains (the slower stage)
    opt = torch.optim.AdamW(params, lr=cfg.train.lr * cfg.train.joint_lr_scale)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats + 1):
        qidx = rng.choice(len(data.query_ids), size=cfg.train.batch_size, replace=False)
        t0 = time.perf_counter()
        loss, _ = train_step(model, data, qidx, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))  # first step warms up


def bench_embed_demo(n: int, frame_size: int = 32, *, fast_eos: bool = True, batch_size: int = 256) -> float:
    """Items/s of ``encoder_demo`` item embedding (text + frame); ``fast_eos=False`` = the HF forward."""
    cfg = encoder_demo()
    model = build_encoder(cfg.model, frame_size).eval()
    model.fast_eos = fast_eos
    data = fake_data(model, n, frame_size)
    encode_items(model, data, np.arange(min(n, 64)))
    t0 = time.perf_counter()
    encode_items(model, data, batch_size=batch_size)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="texts to embed per path")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--budget", type=int, default=encoder_default().model.text_tokens, help="text token budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"n": args.n, "batch_size": args.batch_size, "budget": args.budget, "threads": args.threads,
           "matmul_gflops": measure_matmul_flops() / 1e9}
    res.update(bench_text_path(args.n, args.batch_size, args.budget))
    res["demo_embed_items_per_s"] = bench_embed_demo(args.n)  # EOS-only last layer (the default)
    res["demo_embed_reference_items_per_s"] = bench_embed_demo(args.n, fast_eos=False)  # full HF forward
    if not args.skip_train:
        res["train_step_s"] = bench_train_step(encoder_default())
        res["train_step_batch_size"] = encoder_default().train.batch_size
        res["demo_train_step_s"] = bench_train_step(encoder_demo())
        res["demo_train_step_batch_size"] = encoder_demo().train.batch_size
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
    else:
        for k, v in res.items():
            print(f"{k:<28} {v:.3f}" if isinstance(v, float) else f"{k:<28} {v}")
        print(f"\ntext path vs sentence-transformers: ratio {res['ratio']:.2f} (target >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
