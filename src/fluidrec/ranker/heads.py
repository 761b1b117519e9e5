"""Multi-task heads and the weighted BCE loss; tasks are data: ``Task(name, weight, kind)``.

The head reads all T tokens through one per-token projection (a stacked (T, D, Hh)
weight, equivalent to a linear map of the flattened tokens) so that a token added later
(staged warmup) can start with a zero projection and leave the predictions unchanged.

Shape letters: B batch, T tokens, D width, Hh head hidden width.

Example:
    >>> heads = Heads(DEFAULT_TASKS, dim=32, num_tokens=7, hidden=64)
    >>> logits = heads(torch.randn(8, 7, 32))          # (B, len(tasks))
    >>> loss = heads.loss(logits, {"click": y, ...})
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.data.schema import LABELS_BINARY
from fluidrec.errors import check

TASK_KINDS = ("binary",)


@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction task: a label column name, its loss weight and kind (binary BCE)."""

    name: str
    weight: float = 1.0
    kind: str = "binary"

    def __post_init__(self) -> None:
        check(self.name in LABELS_BINARY, f"task name must be a binary label {LABELS_BINARY}, got {self.name!r}")
        check(self.weight >= 0, f"task weight must be >= 0, got {self.weight}")
        check(self.kind in TASK_KINDS, f"task kind must be one of {TASK_KINDS}, got {self.kind!r}")


DEFAULT_TASKS = (Task("click", 1.0), Task("long_view", 0.5), Task("like", 0.25), Task("follow", 0.25), Task("gift", 0.25))


class Heads(nn.Module):
    def __init__(self, tasks: tuple[Task, ...], dim: int, num_tokens: int, hidden: int = 64) -> None:
        super().__init__()
        check(len(tasks) >= 1, "need at least one task")
        check(len({t.name for t in tasks}) == len(tasks), "task names must be unique")
        self.tasks = tuple(tasks)
        self.tok_proj = nn.Parameter(torch.randn(num_tokens, dim, hidden) * (num_tokens * dim) ** -0.5)
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.out = nn.Linear(hidden, len(tasks))
        self.register_buffer("weights", torch.tensor([t.weight for t in tasks], dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = x.reshape(b, t * d) @ self.tok_proj.reshape(t * d, -1) + self.bias  # (B, Hh)
        return self.out(F.silu(h))  # (B, n_tasks)

    def loss(self, logits: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum over tasks of the mean BCE (weights normalised to sum 1)."""
        y = torch.stack([labels[t.name] for t in self.tasks], dim=1)  # (B, n_tasks)
        per_task = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(0)  # (n_tasks,)
        return (per_task * self.weights).sum() / self.weights.sum().clamp_min(1e-12)
