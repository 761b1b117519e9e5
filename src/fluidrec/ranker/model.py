"""``Ranker(tokenizer, backbone, heads)``, its serialisable spec, checkpoints, and warm starts.

``init_from`` initialises a model from another model's weights while tokens are added
or removed: per-token parameters (names with ``tok_``) are remapped row by row by token
name, new tokens can copy another token's weights (stage 3: room <- slice), and a new
token's head projection starts at zero so the warm model's predictions barely move.

Shape letters: B batch, T tokens, D width.

Example:
    >>> model = build_ranker(spec)
    >>> out = model(batch)                  # out.logits: (B, n_tasks)
    >>> save_checkpoint(model, "run/model.pt")
    >>> same = load_checkpoint("run/model.pt")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fluidrec.errors import DataError, check
from fluidrec.ranker.backbone import Backbone, BackboneConfig
from fluidrec.ranker.batching import Batch
from fluidrec.ranker.heads import DEFAULT_TASKS, Heads, Task
from fluidrec.ranker.tokens import Tokenizer, TokenizerConfig
from fluidrec.utils.io import load_torch_file, save_torch_file
from fluidrec.utils.lookup import sorted_lookup

CHECKPOINT_VERSION = 3  # 2: fused code and side tables; 3: history match projection


@dataclasses.dataclass(frozen=True)
class RankerSpec:
    """Everything needed to rebuild a Ranker (stored in checkpoints).

    Args:
        tokenizer: embedder sizes.
        tokens: token names in backbone order.
        fusion: early-fusion kind when "early" is a token, else None.
        backbone: backbone sizes (its dim must equal tokenizer.dim).
        tasks: prediction tasks.
        head_hidden: hidden width of the task heads.
    """

    tokenizer: TokenizerConfig
    tokens: tuple[str, ...]
    backbone: BackboneConfig
    fusion: str | None = None
    tasks: tuple[Task, ...] = DEFAULT_TASKS
    head_hidden: int = 64

    def __post_init__(self) -> None:
        check(self.tokenizer.dim == self.backbone.dim, "tokenizer.dim must equal backbone.dim")
        check(self.head_hidden >= 1, f"head_hidden must be >= 1, got {self.head_hidden}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankerSpec:
        return cls(
            tokenizer=TokenizerConfig(**d["tokenizer"]),
            tokens=tuple(d["tokens"]),
            backbone=BackboneConfig(**d["backbone"]),
            fusion=d.get("fusion"),
            tasks=tuple(Task(**t) for t in d["tasks"]),
            head_hidden=int(d["head_hidden"]),
        )


@dataclasses.dataclass
class RankerOutput:
    """logits: (B, n_tasks); aux: tensors for auxiliary losses and diagnostics (g, s, alpha)."""

    logits: torch.Tensor
    aux: dict[str, torch.Tensor]


class Ranker(nn.Module):
    """Tokenizer -> backbone -> multi-task heads.

    Args:
        tokenizer: builds (B, T, D) tokens from a Batch.
        backbone: mixes and transforms the T tokens (a ``Backbone``, or a module computing the same,
            such as ``fluidrec.ranker.fused.FusedBackbone``).
        heads: per-task logits.
        room_vocab: sorted room ids of the item-ID table (row i + 1 is room_vocab[i]).
    """

    def __init__(self, tokenizer: Tokenizer, backbone: Backbone, heads: Heads, room_vocab: np.ndarray | None = None) -> None:
        super().__init__()
        check(tokenizer.num_tokens == backbone.num_tokens, "tokenizer and backbone disagree on the number of tokens")
        self.tokenizer = tokenizer
        self.backbone = backbone
        self.heads = heads
        vocab = np.zeros(0, np.int64) if room_vocab is None else np.asarray(room_vocab, np.int64)
        self.register_buffer("room_vocab", torch.from_numpy(vocab.copy()), persistent=True)
        self.spec: RankerSpec | None = None

    @property
    def token_names(self) -> tuple[str, ...]:
        return self.tokenizer.token_names

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self.heads.tasks

    def forward(self, batch: Batch) -> RankerOutput:
        x, aux = self.tokenizer(batch)  # (B, T, D)
        return RankerOutput(self.heads(self.backbone(x)), aux)

    def loss(self, out: RankerOutput, batch: Batch) -> torch.Tensor:
        return self.heads.loss(out.logits, batch.labels)

    def room_index(self, room_ids: np.ndarray) -> np.ndarray:
        """Room ids -> item-ID table rows; rooms outside the vocabulary get row 0 (cold)."""
        pos, found = sorted_lookup(self.room_vocab.numpy(), np.asarray(room_ids))
        return np.where(found, pos + 1, 0).astype(np.int64)

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Weights of sparse embedding tables (for SparseAdam), deduplicated."""
        seen: dict[int, nn.Parameter] = {}
        for m in self.modules():
            if isinstance(m, nn.Embedding) and m.sparse:
                seen[id(m.weight)] = m.weight
        return list(seen.values())

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse]


def build_ranker(spec: RankerSpec, room_vocab: np.ndarray | None = None) -> Ranker:
    """Build a Ranker from its spec.

    Example:
        >>> model = build_ranker(RankerSpec(TokenizerConfig(dim=32), ("user", "slice"), BackboneConfig(dim=32)))
    """
    tok = Tokenizer(spec.tokenizer, spec.tokens, spec.fusion)
    model = Ranker(
        tok,
        Backbone(spec.backbone, len(spec.tokens)),
        Heads(spec.tasks, spec.backbone.dim, len(spec.tokens), spec.head_hidden),
        room_vocab,
    )
    model.spec = spec
    return model


def init_from(
    dst: Ranker,
    src_state: dict[str, torch.Tensor],
    src_tokens: tuple[str, ...],
    copy_tokens: dict[str, str] | None = None,
) -> list[str]:
    """Initialise ``dst`` from another model's state dict while tokens are added/removed.

    Args:
        dst: freshly built model (its own init stays where nothing matches).
        src_state: state dict of the source (may hold extra keys carried from earlier stages).
        src_tokens: token order of ``tok_`` rows in ``src_state``.
        copy_tokens: new token -> existing token whose weights it starts from, e.g. {"room": "slice"}
            copies the code tables (``tokenizer.slice.*`` -> ``tokenizer.room.*``) and per-token rows.

    Returns:
        names of dst keys left at their fresh initialisation.
    """
    copy_tokens = dict(copy_tokens or {})
    src_row = {n: i for i, n in enumerate(src_tokens)}
    fresh = []
    with torch.no_grad():
        for key, value in dst.state_dict().items():
            leaf = key.rsplit(".", 1)[-1]
            if leaf.startswith("tok_") and key in src_state:
                src = src_state[key]
                for i, name in enumerate(dst.token_names):
                    origin = name if name in src_row else copy_tokens.get(name)
                    if key.startswith("heads.") and name not in src_row:
                        value[i].zero_()  # new tokens (copied or not) enter the heads with zero weight
                    elif origin in src_row:
                        value[i].copy_(src[src_row[origin]])
                    else:
                        fresh.append(f"{key}[{name}]")
                continue
            source_key = key
            if key not in src_state:
                for new, old in copy_tokens.items():
                    prefix = f"tokenizer.{new}."
                    if key.startswith(prefix):
                        source_key = f"tokenizer.{old}." + key[len(prefix) :]
            if source_key in src_state and src_state[source_key].shape == value.shape:
                value.copy_(src_state[source_key])
            else:
                fresh.append(key)
    return fresh


def save_checkpoint(model: Ranker, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write spec + weights (+ JSON-able extra) to one file atomically."""
    check(model.spec is not None, "model has no spec (build it with build_ranker)")
    payload = {
        "version": CHECKPOINT_VERSION,
        "spec": model.spec.to_dict(),
        "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    save_torch_file(payload, path)  # atomic, with a .sha256 sidecar that load_torch_file verifies
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> Ranker:
    """Rebuild a Ranker from ``save_checkpoint`` output.

    The boundary for ranker checkpoints: the payload's keys, the spec, the room vocabulary
    and every weight's name and shape are checked against what the spec builds, so a file
    from another version, a hand-edited spec or a truncated state dict gives a one-line
    error naming the file and the key instead of a torch traceback.

    Raises:
        DataError: missing, unreadable or corrupt file, another checkpoint version, a missing
            key, an invalid spec, or weights whose names or shapes do not match the spec.
    """
    from fluidrec.errors import FluidrecError, first_line

    p = Path(path)
    if not p.exists():
        raise DataError("checkpoint not found", table=str(p))
    payload = load_torch_file(p)
    if not isinstance(payload, dict):
        raise DataError("not a fluidrec ranker checkpoint (top level is not a dict)", table=str(p), value=type(payload).__name__)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise DataError("unsupported checkpoint version", table=str(p), value=payload.get("version"))
    for key in ("spec", "state_dict", "extra"):
        if not isinstance(payload.get(key), dict):
            raise DataError(f"checkpoint key {key!r} is missing or not a dict", table=str(p), column=key, value=type(payload.get(key)).__name__)
    try:
        spec = RankerSpec.from_dict(payload["spec"])
    except (KeyError, TypeError, ValueError, AttributeError, FluidrecError) as exc:
        raise DataError(f"invalid spec ({type(exc).__name__}: {first_line(exc)})", table=str(p), column="spec") from None
    state = payload["state_dict"]
    vocab = state.get("room_vocab")
    if not isinstance(vocab, torch.Tensor) or vocab.ndim != 1 or vocab.is_floating_point():
        raise DataError("state_dict has no 1-D integer room_vocab tensor", table=str(p), column="state_dict.room_vocab")
    try:
        model = build_ranker(spec, vocab.numpy())
    except (ValueError, TypeError, RuntimeError, FluidrecError) as exc:  # sizes the spec cannot build
        raise DataError(f"cannot build the model the spec describes ({first_line(exc)})", table=str(p), column="spec") from None
    # Names and shapes first: load_state_dict would raise a multi-line RuntimeError.
    expected = model.state_dict()
    for key, value in expected.items():
        got = state.get(key)
        if not isinstance(got, torch.Tensor):
            raise DataError("weight missing from the checkpoint", table=str(p), column=f"state_dict.{key}")
        if tuple(got.shape) != tuple(value.shape):
            raise DataError(f"weight has shape {tuple(got.shape)}, the spec builds {tuple(value.shape)}", table=str(p), column=f"state_dict.{key}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise DataError(f"unexpected weight (not in the model the spec builds; {len(extra)} in all)", table=str(p), column=f"state_dict.{extra[0]}")
    model.load_state_dict(state)
    model.checkpoint_extra = payload["extra"]
    return model
