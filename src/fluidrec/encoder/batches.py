"""Encoder input batches (token ids + frames) and the model directory's config file name.

The one home of what ``model``, ``data`` and ``lsa`` all read, so none of them imports another
for it (``model.load_encoder`` dispatches to ``lsa``, which must not import ``model`` back).

Example:
    >>> batch = pack_text([np.array([5, 6]), np.array([7])], pad_id=0)
    >>> batch.ids.shape, batch.lengths.tolist()
    (torch.Size([2, 2]), [2, 1])
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class TextBatch:
    """Right-padded token ids without specials; the model appends EOS at ``lengths``."""

    ids: torch.Tensor  # (B, T) int64
    lengths: torch.Tensor  # (B,) int64

    def to(self, device) -> TextBatch:
        return TextBatch(self.ids.to(device), self.lengths.to(device))


@dataclasses.dataclass
class ItemBatch:
    """An item's text plus its frame (zeros and ``has_frame=False`` where it has none)."""

    text: TextBatch
    frames: torch.Tensor | None  # (B, S, S, 3) uint8, or None when the dataset has no frames
    has_frame: torch.Tensor  # (B,) bool

    def to(self, device) -> ItemBatch:
        frames = None if self.frames is None else self.frames.to(device)
        return ItemBatch(self.text.to(device), frames, self.has_frame.to(device))


def pack_text(seqs: list[np.ndarray], pad_id: int) -> TextBatch:
    """Right-pad a list of id arrays into a TextBatch (no padding beyond the longest)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    t = int(lengths.max()) if len(seqs) else 0
    ids = np.full((len(seqs), t), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return TextBatch(torch.from_numpy(ids), torch.from_numpy(lengths))
