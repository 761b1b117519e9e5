"""Embedding slices (live and video) with a trained encoder: batched, length-bucketed, resumable.

Shape letters: N items, B batch, D embedding width.

Speed: items are sorted by token length and batched in that order, so a batch pads only to
lengths that are nearly equal (no padding waste); everything runs under
``torch.inference_mode``. Resumability: the sorted order is cut into chunks; each finished
chunk is saved under ``<out>.parts/``; a rerun skips finished chunks (when the model and
dataset are the same) and the final Parquet appears atomically, after which the parts go.

Example:
    >>> summary = embed_dataset("runs/encoder", "data/world", "runs/embeddings.parquet")
    >>> ids, z = read_embeddings(summary.path)      # z: (N, 128), unit rows
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fluidrec.data.embeddings import write_embeddings
from fluidrec.data.io import Dataset
from fluidrec.encoder.data import EncoderData, item_batch, load_encoder_data
from fluidrec.encoder.batches import pack_text
from fluidrec.encoder.model import MultimodalEncoder, load_encoder, model_fingerprint
from fluidrec.errors import UsageError
from fluidrec.utils.io import atomic_path, write_json

if TYPE_CHECKING:
    from fluidrec.encoder.lsa import LsaEncoder


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index batches of near-equal length: sort by length (stable), cut every ``batch_size``."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def encode_items(model: MultimodalEncoder | LsaEncoder, data: EncoderData, idx: np.ndarray | None = None, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Embed slices ``idx`` (default all) -> (n, D) float32 in ``idx`` order."""
    from tqdm.auto import tqdm

    model.eval()
    idx = np.arange(len(data.slice_ids)) if idx is None else np.asarray(idx)
    lengths = np.fromiter((len(data.item_tokens[i]) for i in idx), dtype=np.int64, count=len(idx))
    out = np.zeros((len(idx), model.out_dim), dtype=np.float32)
    for b in tqdm(length_batches(lengths, batch_size), desc="embed items", unit="batch", disable=not progress):
        out[b] = model.encode_items(item_batch(data, idx[b], model.text.pad_id)).numpy()
    return out


@torch.inference_mode()
def encode_texts(model: MultimodalEncoder | LsaEncoder, token_lists: list[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
    """Embed token-id lists through the query (text) path -> (n, D) float32 in input order."""
    model.eval()
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    out = np.zeros((len(token_lists), model.out_dim), dtype=np.float32)
    for b in length_batches(lengths, batch_size):
        out[b] = model.encode_queries(pack_text([token_lists[i] for i in b], model.text.pad_id)).numpy()
    return out


def encode_queries(model: MultimodalEncoder | LsaEncoder, data: EncoderData, qidx: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Embed queries ``qidx`` -> (n, D) float32."""
    return encode_texts(model, [data.query_tokens[i] for i in qidx], batch_size=batch_size)


@dataclasses.dataclass
class EmbedSummary:
    path: Path
    items: int
    dim: int
    live: int
    video: int
    resumed_chunks: int
    seconds: float
    items_per_s: float


def _meta(model_dir: Path, data: EncoderData, batch_size: int, chunk_size: int) -> dict:
    ids_digest = int(np.bitwise_xor.reduce(data.slice_ids * np.int64(2654435761))) if len(data.slice_ids) else 0
    return {"model": model_fingerprint(model_dir), "n": int(len(data.slice_ids)), "ids": ids_digest,
            "batch_size": batch_size, "chunk_size": chunk_size}


def _load_part(part: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A finished chunk, or None when it is missing, unreadable or not a finite (n, D) float array.

    Parts are a cache: a damaged one (a full disk, a hand edit) is recomputed, not a traceback.
    """
    if not part.is_file():
        return None
    try:
        z = np.load(part, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if z.shape != shape or z.dtype.kind != "f" or not np.isfinite(z).all():
        return None
    return z


def embed_dataset(
    model_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    batch_size: int = 256,
    chunk_size: int = 4096,
    num_threads: int = 2,
    progress: bool = True,
    stop_after_chunks: int | None = None,
) -> EmbedSummary:
    """Embed every slice (live and video) and write the embedding Parquet (id = slice_id).

    Args:
        model_dir: a trained encoder directory.
        dataset_dir: canonical dataset; its frames must match the encoder's frame size.
        out_file: the embedding Parquet to write (``fluidrec.data.embeddings`` format).
        batch_size: items per forward pass.
        chunk_size: items per resumable chunk.
        num_threads: torch CPU threads.
        progress: tqdm bar.
        stop_after_chunks: stop after this many *new* chunks (parts kept) - for time-boxed
            jobs and resume tests.

    Example:
        >>> embed_dataset("runs/encoder", "data/world", "runs/emb.parquet").items_per_s
    """
    from tqdm.auto import tqdm

    if batch_size < 1 or chunk_size < 1:
        raise UsageError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    torch.set_num_threads(num_threads)
    model_dir, out = Path(model_dir), Path(out_file)
    model, _ = load_encoder(model_dir)
    data = load_encoder_data(Dataset(dataset_dir), model.text, model.frame_size, with_queries=False)
    n, d = len(data.slice_ids), model.out_dim
    parts = out.with_name(out.name + ".parts")
    meta = _meta(model_dir, data, batch_size, chunk_size)
    if parts.exists():
        try:
            same = json.loads((parts / "meta.json").read_text()) == meta
        except (OSError, ValueError, RecursionError):  # ValueError: JSON or UTF-8 decoding
            same = False
        if not same:  # stale parts from another model or dataset: start over
            shutil.rmtree(parts) if parts.is_dir() else parts.unlink()
    parts.mkdir(parents=True, exist_ok=True)
    write_json(parts / "meta.json", meta)

    order = np.argsort(data.item_lengths, kind="stable")  # length-bucketed global order
    chunks = [order[i : i + chunk_size] for i in range(0, n, chunk_size)]
    vectors = np.zeros((n, d), dtype=np.float32)
    resumed, new, t0, done_items = 0, 0, time.perf_counter(), 0
    bar = tqdm(total=n, desc="embed", unit="item", disable=not progress)
    for c, idx in enumerate(chunks):
        part = parts / f"part-{c:05d}.npy"
        done = _load_part(part, (len(idx), d))
        if done is not None:
            vectors[idx] = done
            resumed += 1
            bar.update(len(idx))
            continue
        if stop_after_chunks is not None and new >= stop_after_chunks:
            bar.close()
            return EmbedSummary(out, 0, d, 0, 0, resumed, time.perf_counter() - t0, 0.0)
        z = encode_items(model, data, idx, batch_size=batch_size)  # (len(idx), D)
        with atomic_path(part) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, z)
        vectors[idx] = z
        new += 1
        done_items += len(idx)
        bar.update(len(idx))
    bar.close()
    seconds = time.perf_counter() - t0
    write_embeddings(out, data.slice_ids, vectors)
    shutil.rmtree(parts, ignore_errors=True)
    n_video = int(data.is_video.sum())
    return EmbedSummary(out, n, d, n - n_video, n_video, resumed, round(seconds, 2), round(done_items / max(seconds, 1e-9), 1))
