"""History and target tokens: item-ID rows or semantic prefix rows, plus event features.

Shape letters: B batch, S history length, L code levels, d semantic depth, K rows per item
(1 for IDs, d for semantic), T folded tokens, f events per folded token, R recent events kept unfolded, D width.

- **ID histories**: one table of ``n_items + 1`` rows; an item is its own row. Items that
  no training event holds keep their initial (near-zero) row, as a new video ID does.
- **Semantic histories**: an item is its code prefix at depths 1..d, each level a row of its
  own prefix table, summed (fluid.txt Eq. 1 prefix n-grams, through the project's one home
  ``fluidrec.codes.ngram.NgramSpec``). Unknown codes (a pad, an item without a code) map to
  each level's unknown row. The tables depend on N and d only, not on the corpus.
- **Event features**: the token of an event is ``item * (a + watch * b) + W [watch, gap]``
  (a, b learned D-vectors, gap = ``log1p`` seconds to the target / 10). The item-watch
  product sits in the token itself because folding is a mean: the mean of such tokens keeps
  "how much of each kind of item was watched" (a watch-weighted bag of items), which a mean
  of ``item + W watch`` tokens would lose. The token is linear in (item, watch * item,
  features), so mean-pooling a window equals pooling those parts first, which is what
  :meth:`HistoryEmbedding.events` does for ``fold > 1`` (two weighted ``embedding_bag``
  calls per window: the (B, S, D) per-event tokens are never materialised).
  ``fold_windows`` over the per-event tokens is the plain reference; a test compares them.

Example:
    >>> emb = HistoryEmbedding.semantic(codebook_size=8, depth=2, dim=32)
    >>> tokens, mask = emb.events(batch, fold=16)      # (B, S/16, D), (B, S/16)
    >>> target = emb.target(batch)                      # (B, D)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.codes.ngram import NgramSpec
from fluidrec.sequence.compress import fold_slots, fold_windows, left_pad_to, prefix_slots, prefix_window_count, prefix_window_slots, time_span_slots

GAP_SCALE = 10.0  # log1p(seconds) / 10: a week is 1.3, so the feature stays O(1)
INIT_STD = 0.05


class HistoryEmbedding(nn.Module):
    """Tokens of history events and of targets from one table (IDs or semantic prefixes).

    Args:
        rows: rows of the one concatenated table.
        dim: D.
        spec: the semantic prefix spec (levels = d), or None for ID histories.

    Build with :meth:`ids` or :meth:`semantic` rather than directly.
    """

    def __init__(self, rows: int, dim: int, spec: NgramSpec | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.dim = dim
        self.table = nn.Parameter(torch.randn(rows, dim) * INIT_STD)  # (R, D)
        self.feat = nn.Linear(2, dim)  # [watch ratio, gap]
        # token = item * (scale + watch * watch_scale) + feat: the item-watch product is in the
        # token itself, so a mean over a window keeps "how long was each kind of item watched"
        self.scale = nn.Parameter(torch.ones(dim))
        self.watch_scale = nn.Parameter(torch.zeros(dim))

    @classmethod
    def ids(cls, n_items: int, dim: int) -> HistoryEmbedding:
        """ID histories: ``n_items`` rows plus one pad row."""
        return cls(n_items + 1, dim, None)

    @classmethod
    def semantic(cls, codebook_size: int, depth: int, dim: int, table_cap: int | None = None) -> HistoryEmbedding:
        """Semantic histories: prefix tables of levels 1..depth (hashed above ``table_cap`` rows)."""
        spec = NgramSpec(codebook_size=max(codebook_size, 2), levels=depth, mode="prefix", table_cap=table_cap)
        return cls(int(sum(spec.table_sizes)), dim, spec)

    @property
    def rows(self) -> int:
        return int(self.table.shape[0])

    @property
    def table_bytes(self) -> int:
        return self.rows * self.dim * self.table.element_size()

    def item_rows(self, items: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(..., K) table rows of items given their ids (...) and codes (..., L)."""
        if self.spec is None:
            return items.unsqueeze(-1)  # (..., 1)
        d = self.spec.levels
        flat = codes[..., :d].reshape(-1, d).cpu().numpy()  # (n, d)
        # int32 row ids (every table here is far below 2^31 rows): embedding_bag's backward sorts and
        # scans its indices, so their width is a large share of the compression model's peak memory
        rows = torch.from_numpy(self.spec.flat_ids(flat).astype(np.int32)).to(codes.device)  # (n, d)
        return rows.reshape(*codes.shape[:-1], d)  # (..., d)

    def target(self, batch) -> torch.Tensor:
        """(B, D) token of each target item (its table rows summed; no event features)."""
        rows = self.item_rows(batch.target_item, batch.target_codes)  # (B, K)
        return F.embedding_bag(rows, self.table, mode="sum")  # (B, D)

    def _features(self, batch) -> torch.Tensor:
        return torch.stack([batch.hist_watch, batch.hist_gap / GAP_SCALE], dim=-1)  # (B, S, 2)

    def event_tokens(self, batch) -> torch.Tensor:
        """(B, S, D) per-event tokens, zero where padded (the plain, unfolded path)."""
        rows = self.item_rows(batch.hist_item, batch.hist_codes)  # (B, S, K)
        b, s, k = rows.shape
        items = F.embedding_bag(rows.reshape(b * s, k), self.table, mode="sum").reshape(b, s, -1)  # (B, S, D)
        gain = self.scale + batch.hist_watch.unsqueeze(-1) * self.watch_scale  # (B, S, D)
        x = items * gain + self.feat(self._features(batch))  # (B, S, D)
        return x * batch.hist_mask.unsqueeze(-1)

    def events(self, batch, fold: int = 1, *, mode: str = "window", span_ms: int = 3_600_000,
               tokens: int | None = None, recent: int = 0, prefix_level: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """History tokens: the older events folded by ``fold`` per token, the ``recent`` latest kept as they are.

        Returns (B, T + R, D) tokens and their (B, T + R) mask: the T folded tokens of the older
        S - R events, then the R per-event tokens of the latest ones (R = min(recent, S)).
        ``fold == 1``: one token per event (T = S - R). ``mode == "window"``: windows of ``fold``
        consecutive events aligned on the most recent older event (S - R is left-padded to T * f),
        pooled with the mask by one ``embedding_bag`` per window. ``mode == "time"``: ``tokens``
        spans of ``span_ms`` each (see :func:`fold_time_spans`), pooled from the event tokens.
        ``mode == "prefix"`` (semantic histories; a diagnostic, not the paper's temporal fold): one
        token per code prefix of ``prefix_level`` levels (N^level + 1 with the unknown one), the
        mean of the older events under it, pooled from the (B, S, D) event tokens.
        ``mode == "prefix_window"`` (semantic histories): the windows of ``"window"`` mode, each split
        by code prefix of ``prefix_level`` levels ((N^level + 1) * T tokens, one kind of video over one
        stretch of time each), pooled like ``"prefix"``.
        """
        s = batch.hist_mask.shape[1]
        r = min(max(recent, 0), s)
        if r == 0:
            return self._folded(batch, fold, mode, span_ms, tokens, prefix_level)
        latest = batch.history_slice(s - r, s)
        kept, kept_mask = self.event_tokens(latest), latest.hist_mask  # (B, R, D), (B, R)
        if r == s:
            return kept, kept_mask
        folded, folded_mask = self._folded(batch.history_slice(0, s - r), fold, mode, span_ms, tokens, prefix_level)  # (B, T, D)
        return torch.cat([folded, kept], dim=1), torch.cat([folded_mask, kept_mask], dim=1)  # (B, T+R, D), (B, T+R)

    def _folded(self, batch, fold: int, mode: str, span_ms: int, tokens: int | None, prefix_level: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch.hist_mask
        if mode == "prefix":
            n = self.spec.codebook_size
            return self._fused_slots(batch, prefix_slots(batch.hist_codes, prefix_level, n), n ** prefix_level + 1)
        if mode == "prefix_window":
            n = self.spec.codebook_size
            slots = prefix_window_slots(batch.hist_codes, prefix_level, n, fold)  # (B, S)
            return self._fused_slots(batch, slots, prefix_window_count(mask.shape[1], prefix_level, n, fold))
        if mode == "time":
            t = tokens or -(-mask.shape[1] // fold)
            return self._fused_slots(batch, time_span_slots(mask, batch.hist_ts, span_ms, t), t)
        if fold == 1:
            return self.event_tokens(batch), mask
        return self._fused_windows(batch, fold)

    def _fused_slots(self, batch, slot: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the event tokens sharing a slot (``slot`` (B, S) in [0, T)), from the table rows directly.

        The events are sorted by (row, slot) so that each (row, slot) is one contiguous bag of
        ``embedding_bag``; padded events sort last with weight 0 (they add nothing to the last bag).
        """
        rows = self.item_rows(batch.hist_item, batch.hist_codes)  # (B, S, K)
        b, s, k = rows.shape
        mask = batch.hist_mask
        slot = slot.clamp(0, t - 1)  # (B, S); a pad's slot is arbitrary (its weight is 0)
        key = torch.where(mask, slot + t * torch.arange(b, device=slot.device).unsqueeze(1), b * t).reshape(-1)  # (B*S,)
        order = torch.argsort(key, stable=True)  # (B*S,)
        count = torch.bincount(key, minlength=b * t + 1)[: b * t]  # (B*T,) events per bag
        idx = rows.reshape(b * s, k)[order].reshape(-1)  # (B*S*K,) row ids, bag after bag
        offsets = (torch.cumsum(count, 0) - count).mul(k).to(idx.dtype)  # (B*T,) where each bag starts
        w = mask.float() / count.reshape(b, t).gather(1, slot).clamp(min=1)  # (B, S) mean weights, 0 on pads
        w_watch = w * batch.hist_watch  # (B, S)

        def bag(weights: torch.Tensor) -> torch.Tensor:  # (B, S) per-event weights -> (B, T, D) weighted row sums
            per_row = weights.reshape(-1)[order].unsqueeze(-1).expand(b * s, k).reshape(-1)  # (B*S*K,)
            return F.embedding_bag(idx, self.table, offsets, mode="sum", per_sample_weights=per_row).reshape(b, t, -1)  # (B*T, D) -> (B, T, D)

        items = bag(w) * self.scale + bag(w_watch) * self.watch_scale  # (B, T, D): the mean of item * gain
        pooled = torch.zeros(b, t, 2, device=w.device).scatter_add_(  # (B, T, 2) the two features' means
            1, slot.unsqueeze(-1).expand(b, s, 2), torch.stack([w_watch, w * batch.hist_gap / GAP_SCALE], dim=-1))
        live = count.reshape(b, t, 1) > 0  # (B, T, 1)
        return items + self.feat(pooled) * live, live.squeeze(-1)  # (B, T, D), (B, T)

    def _fused_windows(self, batch, f: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.item_rows(batch.hist_item, batch.hist_codes)  # (B, S, K)
        b, _, k = rows.shape
        rows = left_pad_to(rows, f, 0)  # (B, T*f, K)
        mask = left_pad_to(batch.hist_mask, f, False)  # (B, T*f)
        t = rows.shape[1] // f
        watch = left_pad_to(batch.hist_watch, f, 0.0).reshape(b, t, f)  # (B, T, f)
        gap = left_pad_to(batch.hist_gap, f, 0.0).reshape(b, t, f)  # (B, T, f)
        m = mask.reshape(b, t, f).float()  # (B, T, f)
        count = m.sum(-1)  # (B, T)
        w = m / count.clamp(min=1).unsqueeze(-1)  # (B, T, f) mean weights, 0 on pads
        w_watch = w * watch  # (B, T, f)
        flat_rows = rows.reshape(b * t, f * k)  # (B*T, f*K)

        def bag(weights: torch.Tensor) -> torch.Tensor:  # (B, T, f) per-event weights -> (B, T, D) weighted row sums
            per_row = weights.unsqueeze(-1).expand(b, t, f, k).reshape(b * t, f * k)  # (B*T, f*K)
            return F.embedding_bag(flat_rows, self.table, mode="sum", per_sample_weights=per_row).reshape(b, t, -1)  # (B*T, D) -> (B, T, D)

        items = bag(w) * self.scale + bag(w_watch) * self.watch_scale  # (B, T, D): the mean of item * gain
        # the window means of the two features from the same weights (no (B, S, 2) feature tensor)
        pooled_feats = torch.stack([w_watch.sum(-1), (w * gap).sum(-1) / GAP_SCALE], dim=-1)  # (B, T, 2)
        live = (count > 0).unsqueeze(-1)  # (B, T, 1): the bias only where a window holds an event
        return items + self.feat(pooled_feats) * live, count > 0  # (B, T, D)


def reference_folded_events(emb: HistoryEmbedding, batch, fold: int, recent: int = 0, *, mode: str = "window",
                            span_ms: int = 3_600_000, tokens: int | None = None, prefix_level: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain path of :meth:`HistoryEmbedding.events`: all per-event tokens, then the older ones folded by the plain op."""
    x, mask = emb.event_tokens(batch), batch.hist_mask  # (B, S, D), (B, S)
    cut = x.shape[1] - min(recent, x.shape[1])
    if cut == 0:
        return x, mask
    old_x, old_mask = x[:, :cut], mask[:, :cut]  # (B, S-R, D), (B, S-R)
    if mode == "window":
        folded, folded_mask = fold_windows(old_x, old_mask, fold)  # (B, T, D)
    elif mode == "time":
        t = tokens or -(-cut // fold)
        folded, folded_mask = fold_slots(old_x, old_mask, time_span_slots(old_mask, batch.hist_ts[:, :cut], span_ms, t), t)
    elif mode == "prefix_window":
        n = emb.spec.codebook_size
        slot = prefix_window_slots(batch.hist_codes[:, :cut], prefix_level, n, fold)  # (B, S-R)
        folded, folded_mask = fold_slots(old_x, old_mask, slot, prefix_window_count(cut, prefix_level, n, fold))
    else:
        n = emb.spec.codebook_size
        folded, folded_mask = fold_slots(old_x, old_mask, prefix_slots(batch.hist_codes[:, :cut], prefix_level, n), n ** prefix_level + 1)
    return torch.cat([folded, x[:, cut:]], dim=1), torch.cat([folded_mask, mask[:, cut:]], dim=1)  # (B, T+R, D)


def table_rows(history: str, *, n_items: int, codebook_size: int, depth: int, table_cap: int | None) -> int:
    """Rows of the history table a model would build (for the size report, without building it)."""
    if history == "id":
        return n_items + 1
    spec = NgramSpec(codebook_size=max(codebook_size, 2), levels=depth, mode="prefix", table_cap=table_cap)
    return int(sum(spec.table_sizes))


def collision_share(codes: np.ndarray, codebook_size: int, depth: int, table_cap: int | None) -> float:
    """Share of the distinct depth-d prefixes of ``codes`` (n, L) sharing a row with another (hashing)."""
    known = (codes[:, :depth] >= 0).all(axis=1)
    spec = NgramSpec(codebook_size=max(codebook_size, 2), levels=depth, mode="prefix", table_cap=table_cap)
    return float(spec.collision_rates(codes[known, :depth])[-1]) if known.any() else 0.0
