"""The sequence ranker: history embedding -> history encoder -> click head, and its builder.

Shape letters: B batch, S history events, T folded tokens, R recent events kept unfolded (T + R = S for per-event arms), D width.

Every arm shares the embedding (ID or semantic, ``embed``), the target token (the target
item through the same table as its history) and the head: an MLP over
[user, target, user * target] giving one logit. Only the encoder differs (``baselines``,
``compress``), so a difference between arms is the encoder's.

Example:
    >>> model = build_model(SequenceModelConfig(history="semantic", depth=2, arm="compress"), n_items=8000, codebook_size=8)
    >>> logits = model(batch)                 # (B,)
    >>> loss, out = model.step(batch)         # BCE loss, detached logits
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.sequence.baselines import DINEncoder, FullAttentionEncoder, MeanPoolEncoder
from fluidrec.sequence.compress import CompressionEncoder
from fluidrec.sequence.config import SequenceModelConfig
from fluidrec.sequence.embed import HistoryEmbedding


class SequenceRanker(nn.Module):
    """embedding -> encoder -> head; ``cfg`` says how the history is folded for the encoder.

    Args:
        embedding: a :class:`HistoryEmbedding`.
        encoder: maps (tokens, mask, target) to a (B, D) user vector.
        cfg: the model's settings (fold, fold mode, spans).
    """

    def __init__(self, embedding: HistoryEmbedding, encoder: nn.Module, cfg: SequenceModelConfig) -> None:
        super().__init__()
        self.embedding = embedding
        self.encoder = encoder
        self.cfg = cfg
        d = cfg.dim
        self.head = nn.Sequential(nn.Linear(3 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, 1))

    def tokens(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T + R, D) history tokens (folded, then the recent events) and their (B, T + R) mask."""
        s = batch.hist_mask.shape[1]
        f, r = self.cfg.fold_for(s), self.cfg.recent_for(s)
        mode = self.cfg.resolved_fold_mode
        if self.cfg.arm == "compress" and mode == "time":
            return self.embedding.events(batch, f, mode="time", span_ms=self.cfg.span_s * 1000,
                                         tokens=-(-self.cfg.folded_len(s) // f), recent=r)
        if self.cfg.arm == "compress" and mode in ("prefix", "prefix_window"):
            return self.embedding.events(batch, f, mode=mode, recent=r, prefix_level=self.cfg.fold_level)
        return self.embedding.events(batch, f, recent=r)

    def forward(self, batch) -> torch.Tensor:
        target = self.embedding.target(batch)  # (B, D)
        tokens, mask = self.tokens(batch)
        user = self.encoder(tokens, mask, target)  # (B, D)
        return self.head(torch.cat([user, target, user * target], dim=-1)).squeeze(-1)  # (B,)

    def step(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(BCE loss, detached logits) of one batch."""
        logits = self(batch)
        return F.binary_cross_entropy_with_logits(logits, batch.label), logits.detach()


def build_encoder(cfg: SequenceModelConfig) -> nn.Module:
    """The encoder of ``cfg.arm``."""
    if cfg.arm == "mean":
        return MeanPoolEncoder(cfg.dim)
    if cfg.arm == "din":
        return DINEncoder(cfg.dim)
    if cfg.arm == "full":
        return FullAttentionEncoder(cfg.dim, cfg.layers, cfg.heads, cfg.ffn_mult)
    return CompressionEncoder(cfg.dim, cfg.layers, cfg.heads, cfg.globals_, cfg.ffn_mult)


def build_embedding(cfg: SequenceModelConfig, *, n_items: int, codebook_size: int) -> HistoryEmbedding:
    """The history table of ``cfg.history`` (IDs: n_items + 1 rows; semantic: prefix tables of depth d)."""
    if cfg.history == "id":
        return HistoryEmbedding.ids(n_items, cfg.dim)
    return HistoryEmbedding.semantic(codebook_size, cfg.depth, cfg.dim, cfg.table_cap or None)


def build_model(cfg: SequenceModelConfig, *, n_items: int, codebook_size: int) -> SequenceRanker:
    """A :class:`SequenceRanker` for ``cfg`` (call ``torch.manual_seed`` first for a seeded init)."""
    return SequenceRanker(build_embedding(cfg, n_items=n_items, codebook_size=codebook_size), build_encoder(cfg), cfg)
