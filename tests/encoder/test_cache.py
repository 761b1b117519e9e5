"""Token-id cache: same ids as uncached, hits skip tokenization, keys follow what changes the ids."""

import numpy as np
import pytest

from fluidrec.data.io import Dataset
from fluidrec.encoder.cache import TokenCache, pack_ragged, unpack_ragged
from fluidrec.encoder.config import encoder_tiny
from fluidrec.encoder.data import load_encoder_data
from fluidrec.encoder.model import build_encoder
from fluidrec.encoder.text import TextModule
from fluidrec.errors import DataError

from .conftest import FRAME, make_dataset


def _text(item_budget: int = 24, query_budget: int = 8) -> TextModule:
    return build_encoder(encoder_tiny().replace(model={"text_tokens": item_budget, "query_tokens": query_budget}).model, FRAME).text


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


def test_backend_tokenizer_gives_the_same_ids_as_the_hf_call():
    text = _text()
    samples = ["singing karaoke tonight", "Ünïcödé café naïve", "一起唱歌吧 live", "a " * 80, "x", "boss-level raid!!"]
    for max_len in (4, 24):
        ref = text.tokenizer(samples, add_special_tokens=False, truncation=True, max_length=max_len)["input_ids"]
        assert text._ids(samples, max_len) == ref


def test_pack_roundtrip():
    seqs = [np.array([3, 4], np.int32), np.zeros(0, np.int32), np.array([7], np.int32)]
    flat, off = pack_ragged(seqs)
    assert off.tolist() == [0, 2, 2, 3] and _same(unpack_ragged(flat, off), seqs)


def test_cached_ids_equal_uncached_and_hits_skip_tokenization(enc_dataset, tmp_path, monkeypatch):
    text = _text()
    plain = load_encoder_data(enc_dataset, text, FRAME, cache=False)
    first = load_encoder_data(enc_dataset, text, FRAME, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("items-*.npz"))) == 1 and len(list(tmp_path.glob("queries-*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("tokenized although the cache holds the ids")

    monkeypatch.setattr(text, "item_tokens", boom)
    monkeypatch.setattr(text, "query_tokens", boom)
    hit = load_encoder_data(enc_dataset, text, FRAME, cache_dir=tmp_path)
    for d in (first, hit):
        assert _same(d.item_tokens, plain.item_tokens) and _same(d.query_tokens, plain.query_tokens)
        assert np.array_equal(d.query_item, plain.query_item) and np.array_equal(d.frames, plain.frames)
    items_only = load_encoder_data(enc_dataset, text, FRAME, cache_dir=tmp_path, with_queries=False)
    assert _same(items_only.item_tokens, plain.item_tokens)


def test_key_changes_with_budget_and_dataset_files(tmp_path):
    ds_dir = make_dataset(tmp_path / "ds", n_live=8, n_video=4)
    ds = Dataset(ds_dir)
    a, b = TokenCache.for_dataset(ds, _text(24)), TokenCache.for_dataset(ds, _text(16))
    assert a.key != b.key and a.path("items").parent == ds_dir / ".cache"
    load_encoder_data(ds_dir, _text(24), FRAME)  # default cache dir beside the tables
    assert a.path("items").exists()
    make_dataset(ds_dir, n_live=8, n_video=4, seed=1)  # rewritten tables: a new key, never stale ids
    assert TokenCache.for_dataset(Dataset(ds_dir), _text(24)).key != a.key
    fresh = load_encoder_data(ds_dir, _text(24), FRAME)
    assert _same(fresh.item_tokens, load_encoder_data(ds_dir, _text(24), FRAME, cache=False).item_tokens)


def test_corrupt_or_mismatched_cache_file_is_recomputed(tmp_path):
    ds_dir = make_dataset(tmp_path / "ds", n_live=8, n_video=4)
    text = _text()
    ref = load_encoder_data(ds_dir, text, FRAME, cache=False)
    cache = TokenCache.for_dataset(Dataset(ds_dir), text, tmp_path / "c")
    cache.path("items").parent.mkdir(parents=True)
    cache.path("items").write_bytes(b"not an npz")
    got = load_encoder_data(ds_dir, text, FRAME, cache_dir=tmp_path / "c")
    assert _same(got.item_tokens, ref.item_tokens)
    assert cache.load("items", ref.slice_ids) is not None  # rewritten
    assert cache.load("items", ref.slice_ids[::-1]) is None  # other rows: a miss, not wrong ids


def test_cache_hit_still_rejects_items_without_text_or_frame(tmp_path):
    ds_dir = make_dataset(tmp_path / "ds", n_live=8, n_video=4)
    import pyarrow.parquet as pq

    from fluidrec.data.io import write_table

    t = pq.read_table(ds_dir / "slices.parquet").to_pydict()
    for f in ("title", "transcript", "comments", "ocr", "tags"):
        t[f][3] = None  # row 3: frame only
    write_table(ds_dir, "slices", t)
    text = _text()
    load_encoder_data(ds_dir, text, FRAME)  # fine with its frame; ids cached
    with pytest.raises(DataError, match="row 3: item has no text"):
        load_encoder_data(ds_dir, text, None)  # text only: nothing to embed for row 3
