"""The Global-Aware Compression Transformer (GACT): recent events + non-parametric temporal folding + global queries.

Shape letters: B batch, S history events, R recent events kept unfolded, f events per folded
token, T = ceil((S - R) / f) folded tokens, N = T + R history tokens, G global queries, D width.

1. **Recent events stay events**: the R most recent events of the history are per-event
   tokens, exactly as full attention sees them (``SequenceModelConfig.recent``). Only the older
   S - R events are folded. Why: a fold is a mean, and a mean blurs which single event
   matched the target; the latest events carry the user's current (drifting) interest,
   so they are where that loss costs most. R is fixed, so the cost stays flat in S.
2. **Temporal folding** (no parameters): the older part is cut into windows of f consecutive
   events, aligned on its most recent event (left-padded to T * f), and each window becomes
   the masked mean of its event tokens (:func:`fold_windows`); a window with no event is a
   masked token. Alternatively fixed time spans (:func:`fold_time_spans`), or the same windows
   split by code prefix (:func:`prefix_window_slots`: one token per kind of video per window). With
   ``SequenceModelConfig.tokens`` the run fixes T and lets f = ceil((S - R) / T) grow with S,
   so the attention below costs the same at every S and the whole model is linear in S (the fold).
3. **Unified global query integration**: G learned tokens are prepended to the T folded and
   R recent tokens and take part in every attention layer as queries and keys (globals read
   every token, the tokens read the globals and each other). One layer attends over
   G + T + R tokens: O((G + T + R)^2), independent of S.
4. The readout is the same target attention as the full-attention baseline, over the
   globals, folded and recent tokens.

With G = 0 and nothing folded (f = 1, or R >= S) the compression encoder is exactly the full
self-attention encoder (same layers over the same per-event tokens); a test checks that.

Example:
    >>> enc = CompressionEncoder(dim=32, layers=1, heads=2, globals_=4)
    >>> tokens, mask = embedding.events(batch, fold=16, recent=32)   # (B, T+R, D), (B, T+R)
    >>> user = enc(tokens, mask, target)                              # (B, D)
"""

from __future__ import annotations

import torch
from torch import nn

from fluidrec.sequence.layers import Block, TargetReadout


def left_pad_to(x: torch.Tensor, f: int, value) -> torch.Tensor:
    """Left-pad dim 1 of ``x`` (B, S, ...) to a multiple of ``f`` with ``value`` -> (B, T*f, ...)."""
    s = x.shape[1]
    pad = (-s) % f
    if pad == 0:
        return x
    fill = torch.full((x.shape[0], pad, *x.shape[2:]), value, dtype=x.dtype, device=x.device)
    return torch.cat([fill, x], dim=1)


def fold_windows(x: torch.Tensor, mask: torch.Tensor, f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean of windows of ``f`` consecutive events, aligned on the most recent one.

    Args:
        x: (B, S, D) event tokens.
        mask: (B, S) True = a real event.
        f: events per window (>= 1).

    Returns:
        (B, T, D) folded tokens (0 where a window holds no event) and their (B, T) mask.
    """
    if f < 1:
        raise ValueError(f"fold must be >= 1, got {f}")
    xp = left_pad_to(x * mask.unsqueeze(-1), f, 0.0)  # (B, T*f, D)
    mp = left_pad_to(mask, f, False)  # (B, T*f)
    b, n, d = xp.shape
    t = n // f
    count = mp.reshape(b, t, f).sum(-1)  # (B, T)
    folded = xp.reshape(b, t, f, d).sum(2) / count.clamp(min=1).unsqueeze(-1)  # (B, T, D)
    return folded, count > 0


def fold_windows_reference(x: torch.Tensor, mask: torch.Tensor, f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain loop of :func:`fold_windows`: walk each history backwards, f positions per token."""
    b, s, d = x.shape
    t = -(-s // f)
    out = torch.zeros(b, t, d, dtype=x.dtype)
    out_mask = torch.zeros(b, t, dtype=torch.bool)
    for r in range(b):
        for j in range(t):  # token j covers positions [S - (T - j) f, S - (T - j - 1) f)
            lo, hi = s - (t - j) * f, s - (t - j - 1) * f
            rows = [p for p in range(max(lo, 0), hi) if mask[r, p]]
            if rows:
                out[r, j] = torch.stack([x[r, p] for p in rows]).mean(0)
                out_mask[r, j] = True
    return out, out_mask


def time_span_slots(mask: torch.Tensor, ts: torch.Tensor, span_ms: int, tokens: int) -> torch.Tensor:
    """(B, S) token slot of each event: spans of ``span_ms`` back from the row's latest event.

    Slot T-1 holds the latest span; events older than T-1 spans all fall in slot 0.
    """
    latest = torch.where(mask, ts, torch.zeros_like(ts)).max(dim=1, keepdim=True).values  # (B, 1)
    back = torch.div(latest - ts, span_ms, rounding_mode="floor").clamp(min=0, max=tokens - 1)  # (B, S)
    return tokens - 1 - back


def fold_slots(x: torch.Tensor, mask: torch.Tensor, slot: torch.Tensor, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean of the events sharing a slot: x (B, S, D), mask (B, S), slot (B, S) in [0, tokens).

    Returns (B, T, D) folded tokens (0 where a slot holds no event) and their (B, T) mask.
    """
    b, s, d = x.shape
    w = mask.to(x.dtype)  # (B, S)
    sums = torch.zeros(b, tokens, d, dtype=x.dtype, device=x.device).scatter_add(1, slot.unsqueeze(-1).expand(b, s, d), x * w.unsqueeze(-1))
    count = torch.zeros(b, tokens, dtype=x.dtype, device=x.device).scatter_add(1, slot, w)  # (B, T)
    return sums / count.clamp(min=1).unsqueeze(-1), count > 0


def fold_time_spans(x: torch.Tensor, mask: torch.Tensor, ts: torch.Tensor, span_ms: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean of the events falling in each of ``tokens`` fixed time spans.

    Args:
        x: (B, S, D) event tokens; mask: (B, S); ts: (B, S) unix ms (any value where padded).
        span_ms: length of one span; tokens: T.

    Returns:
        (B, T, D) folded tokens and their (B, T) mask.
    """
    return fold_slots(x, mask, time_span_slots(mask, ts, span_ms, tokens), tokens)


def prefix_slots(codes: torch.Tensor, level: int, codebook_size: int) -> torch.Tensor:
    """(B, S) slot of each event: its code prefix c1..c_level as one int in [0, N^level); N^level if unknown.

    Args:
        codes: (B, S, L) code paths, -1 where unknown or padded.
    """
    pre = codes[..., :level]  # (B, S, level)
    place = codebook_size ** torch.arange(level - 1, -1, -1, device=codes.device)  # (level,) most significant first
    known = (pre >= 0).all(-1)  # (B, S)
    return torch.where(known, (pre.clamp(min=0) * place).sum(-1), torch.full_like(known, codebook_size ** level, dtype=torch.long))


def window_slots(length: int, f: int, device=None) -> torch.Tensor:
    """(S,) window of each position of a length-S history: windows of ``f`` aligned on the latest position (as :func:`fold_windows`)."""
    pad = (-length) % f  # the oldest window is the short one
    return torch.div(torch.arange(length, device=device) + pad, f, rounding_mode="floor")


def prefix_window_count(length: int, level: int, codebook_size: int, f: int) -> int:
    """Slots of :func:`prefix_window_slots` for a length-``length`` history: (N^level + 1) kinds x T windows."""
    return (codebook_size ** level + 1) * -(-length // f)


def prefix_window_slots(codes: torch.Tensor, level: int, codebook_size: int, f: int) -> torch.Tensor:
    """(B, S) slot of each event for the kind-aware temporal fold: prefix slot * T + time window.

    The time windows are :func:`fold_windows`' (f consecutive events aligned on the latest one,
    T = ceil(S / f)); the prefix slot is :func:`prefix_slots`' (N^level + 1 with the unknown one).
    So each of the (N^level + 1) * T slots is one kind of video over one stretch of time.
    """
    t = -(-codes.shape[1] // f)
    return prefix_slots(codes, level, codebook_size) * t + window_slots(codes.shape[1], f, codes.device).unsqueeze(0)  # (B, S)


def fold_prefix_windows_reference(x: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor, level: int,
                                  codebook_size: int, f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain loop of ``fold_slots(x, mask, prefix_window_slots(...))``: windows walked back from the latest event, split by prefix."""
    b, s, d = x.shape
    t = -(-s // f)
    kinds = codebook_size ** level + 1
    out = torch.zeros(b, prefix_window_count(s, level, codebook_size, f), d, dtype=x.dtype)
    out_mask = torch.zeros(b, out.shape[1], dtype=torch.bool)
    for r in range(b):
        for j in range(t):  # window j covers positions [S - (T - j) f, S - (T - j - 1) f)
            groups: dict[int, list[int]] = {}
            for p in range(max(s - (t - j) * f, 0), s - (t - j - 1) * f):
                if mask[r, p]:
                    path = [int(c) for c in codes[r, p, :level]]
                    kind = kinds - 1 if min(path) < 0 else sum(c * codebook_size ** (level - 1 - i) for i, c in enumerate(path))
                    groups.setdefault(kind, []).append(p)
            for kind, rows in groups.items():
                out[r, kind * t + j] = torch.stack([x[r, p] for p in rows]).mean(0)
                out_mask[r, kind * t + j] = True
    return out, out_mask


def fold_prefixes_reference(x: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor, level: int,
                            codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain loop of ``fold_slots(x, mask, prefix_slots(...))``: group each history's events by their code prefix."""
    b, s, d = x.shape
    tokens = codebook_size ** level + 1
    out = torch.zeros(b, tokens, d, dtype=x.dtype)
    out_mask = torch.zeros(b, tokens, dtype=torch.bool)
    for r in range(b):
        groups: dict[int, list[int]] = {}
        for p in range(s):
            if mask[r, p]:
                path = [int(c) for c in codes[r, p, :level]]
                key = tokens - 1 if min(path) < 0 else sum(c * codebook_size ** (level - 1 - i) for i, c in enumerate(path))
                groups.setdefault(key, []).append(p)
        for slot, rows in groups.items():
            out[r, slot] = torch.stack([x[r, p] for p in rows]).mean(0)
            out_mask[r, slot] = True
    return out, out_mask


def fold_time_spans_reference(x: torch.Tensor, mask: torch.Tensor, ts: torch.Tensor, span_ms: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain loop of :func:`fold_time_spans` with Python ints."""
    b, s, d = x.shape
    out = torch.zeros(b, tokens, d, dtype=x.dtype)
    out_mask = torch.zeros(b, tokens, dtype=torch.bool)
    for r in range(b):
        real = [p for p in range(s) if mask[r, p]]
        if not real:
            continue
        latest = max(int(ts[r, p]) for p in real)
        groups: dict[int, list[int]] = {}
        for p in real:
            back = min((latest - int(ts[r, p])) // span_ms, tokens - 1)
            groups.setdefault(tokens - 1 - back, []).append(p)
        for slot, rows in groups.items():
            out[r, slot] = torch.stack([x[r, p] for p in rows]).mean(0)
            out_mask[r, slot] = True
    return out, out_mask


class CompressionEncoder(nn.Module):
    """G global queries + L attention layers over the folded and recent tokens, then the target readout.

    Args:
        dim: D.
        layers: attention layers.
        heads: attention heads.
        globals_: G (0 = none: then the encoder is plain self-attention over its input tokens).
        ffn_mult: feed-forward hidden width / D.
    """

    def __init__(self, dim: int, layers: int, heads: int, globals_: int, ffn_mult: int = 2) -> None:
        super().__init__()
        self.globals_ = globals_
        self.queries = nn.Parameter(torch.randn(1, globals_, dim) * 0.05)  # (1, G, D)
        self.blocks = nn.ModuleList(Block(dim, heads, ffn_mult) for _ in range(layers))
        self.readout = TargetReadout(dim)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, G+N, D) encoded globals and history tokens (N = T + R), and their (B, G+N) mask."""
        b = tokens.shape[0]
        z = torch.cat([self.queries.expand(b, -1, -1), tokens], dim=1)  # (B, G+N, D)
        m = torch.cat([torch.ones(b, self.globals_, dtype=torch.bool, device=mask.device), mask], dim=1)  # (B, G+N)
        for block in self.blocks:
            z = block(z, m)
        return z, m

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z, m = self.encode(tokens, mask)
        return self.readout(z, m, target)  # (B, D)
