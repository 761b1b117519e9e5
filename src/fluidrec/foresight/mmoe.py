"""The multi-task ranker with foresight features (live_foresight_sid.txt 3.2, Eq. 7-8).

Shape letters: B batch, F input width, E experts, H expert width, D next-Sid width.

``x = Concat[uId, aId, pos, sg(I), sg(D)]``; E shared experts; per task a softmax gate
over the experts and a tower to one logit (multi-gate mixture of experts). The arms differ
only in which of I and D enter ``x``. ``sg``: when the ranker is given the next-Sid model
itself it runs it under ``torch.no_grad()``, so the ranking loss never reaches the
next-Sid weights; the run feeds precomputed features (the same outputs) for speed.
The display position enters every arm (the logged exposure has a strong position bias).

Example:
    >>> ranker = ForesightRanker(n_users, n_authors, RankerConfig(), use_i=True, use_d=True, feat_dim=64)
    >>> logits = ranker(RankBatch(user, author, position, i=feat_i, d=feat_d))    # {task: (B,)}
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.foresight.config import TASKS, RankerConfig
from fluidrec.foresight.model import NextSidModel

MAX_POSITION = 16


@dataclasses.dataclass
class RankBatch:
    """One batch of impressions: ids (B,), optional features I/D (B, D) or the raw RLE
    context (B, l) for the next-Sid model to encode, and labels {task: (B,)} when training."""

    user: torch.Tensor
    author: torch.Tensor
    position: torch.Tensor
    i: torch.Tensor | None = None
    d: torch.Tensor | None = None
    context: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    labels: dict[str, torch.Tensor] | None = None


class MMoE(nn.Module):
    """Multi-gate mixture of experts: shared experts, one gate and one tower per task."""

    def __init__(self, in_dim: int, cfg: RankerConfig, tasks: tuple[str, ...] = TASKS) -> None:
        super().__init__()
        h = cfg.expert_dim
        self.tasks = tasks
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, 2 * h), nn.ReLU(), nn.Linear(2 * h, h), nn.ReLU()) for _ in range(cfg.experts)
        )
        self.gates = nn.ModuleDict({t: nn.Linear(in_dim, cfg.experts) for t in tasks})
        self.towers = nn.ModuleDict({t: nn.Sequential(nn.Linear(h, cfg.tower_dim), nn.ReLU(), nn.Linear(cfg.tower_dim, 1)) for t in tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, H)
        out = {}
        for t in self.tasks:
            gate = torch.softmax(self.gates[t](x), dim=-1)  # (B, E)
            mixed = (gate[..., None] * experts).sum(1)  # (B, H)
            out[t] = self.towers[t](mixed)[:, 0]  # (B,)
        return out


class ForesightRanker(nn.Module):
    """User/author/position embeddings, optional stop-gradient I and D, an MMoE on top.

    Args:
        n_users, n_authors: id vocabulary sizes.
        cfg: ranker widths.
        use_i, use_d: feed the historical-content feature I / the foresight feature D.
        feat_dim: D of the next-Sid features.
        next_sid: optional next-Sid model, used (under no_grad) when a batch carries contexts.
    """

    def __init__(self, n_users: int, n_authors: int, cfg: RankerConfig, *, use_i: bool, use_d: bool, feat_dim: int,
                 next_sid: NextSidModel | None = None) -> None:
        super().__init__()
        self.use_i, self.use_d = use_i, use_d
        self.user_emb = nn.Embedding(n_users, cfg.id_dim)
        self.author_emb = nn.Embedding(n_authors, cfg.id_dim)
        self.pos_emb = nn.Embedding(MAX_POSITION, cfg.id_dim)
        in_dim = 3 * cfg.id_dim + feat_dim * (int(use_i) + int(use_d))
        self.mmoe = MMoE(in_dim, cfg)
        self.next_sid = next_sid

    def _features(self, batch: RankBatch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not (self.use_i or self.use_d):
            return None, None
        if batch.context is not None and self.next_sid is not None:
            with torch.no_grad():  # sg(I), sg(D): the ranking loss must not train the next-Sid model
                out = self.next_sid(*batch.context)
            return out.pooled, out.dec
        return batch.i, batch.d

    def forward(self, batch: RankBatch) -> dict[str, torch.Tensor]:
        i, d = self._features(batch)
        parts = [self.user_emb(batch.user), self.author_emb(batch.author), self.pos_emb(batch.position.clamp(0, MAX_POSITION - 1))]
        if self.use_i:
            parts.append(i.detach())
        if self.use_d:
            parts.append(d.detach())
        return self.mmoe(torch.cat(parts, dim=-1))  # {task: (B,)}

    def loss(self, batch: RankBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over tasks of binary cross-entropy (Eq. 8); returns (loss, detached logits)."""
        logits = self(batch)
        loss = sum(F.binary_cross_entropy_with_logits(logits[t], batch.labels[t]) for t in self.mmoe.tasks)
        return loss, {t: v.detach() for t, v in logits.items()}
