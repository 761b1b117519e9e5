"""Tokenizer: features -> prime tokens, one (B, D) vector per token.

Fixed tokens (identical in every arm): ``user`` (hashed user ID), ``profile`` (users
table columns), ``context`` (hour, position, room-age bucket), ``history`` (the user's
last K clicked slices' codes, pooled by attention against the candidate) and ``author``
(switch). Candidate tokens depend on the arm:

- ``item_id``  g, the room-ID embedding (scaled by ``id_scale`` for the staged phase-out)
- ``slice``    s, the slice LUCID embedding
- ``room``     r, the room LUCID embedding
- ``early``    h, one token fusing g and s (fluid.txt Eqs. 3-5: replace, concat, gate)

Code embeddings (fluid.txt Eqs. 1-2): prefix n-gram (level l indexed by the whole
prefix path) or level-wise; each level its own table, concatenated.

Shape letters: B batch, T tokens, H distinct histories, G x S grid of rows by history
(``RowGrid``), K history length, L code levels, D width.

Example:
    >>> tok = Tokenizer(TokenizerConfig(dim=32, num_codes=64, levels=4, item_rows=1000),
    ...                 tokens=("user", "profile", "context", "history", "item_id", "slice"))
    >>> x, aux = tok(batch)            # x: (B, T, D)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.codes.ngram import level_rows, ngram_mode, row_ids_torch
from fluidrec.data.schema import USER_PROFILE_COLUMNS
from fluidrec.errors import UsageError, check
from fluidrec.ranker.batching import AGE_EDGES_MIN, MAX_POSITION, PROFILE_VOCAB, Batch
from fluidrec.ranker.names import CANDIDATE_TOKENS, FUSIONS  # noqa: F401 (re-exported)
from fluidrec.ranker.ops import gather_rows

FIXED_TOKENS = ("user", "profile", "context", "history", "author")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """Sizes of the token embedders.

    Args:
        dim: D, width of every token.
        num_codes: N, codebook size per level.
        levels: L, code levels.
        scheme: a ``fluidrec.codes.ngram.MODES`` name: "prefix" (prefix n-gram ids, the default)
            or "level" (level-wise ids); the earlier "prefix_ngram"/"levelwise" are read as these.
        shared_code_tables: slice and room codes share one set of tables (Table 5 ablation).
        code_rows_cap: a level's table has min(N^l, cap) rows; longer prefixes hash (mod a prime).
        user_buckets, author_buckets: hashed ID table rows (must match FeatureConfig).
        item_rows: rows of the item-ID table (rooms + 1; row 0 = unknown room).
        history_len: K.
        id_init_std: init std of the item-ID table (small, so an ID's norm shows how much it trained).
    """

    dim: int = 32
    num_codes: int = 64
    levels: int = 4
    scheme: str = "prefix"
    shared_code_tables: bool = False
    code_rows_cap: int = 1 << 15
    user_buckets: int = 1 << 16
    author_buckets: int = 1 << 14
    item_rows: int = 1
    history_len: int = 64
    id_init_std: float = 0.01

    def __post_init__(self) -> None:
        check(self.dim >= 4, f"dim must be >= 4, got {self.dim}")
        check(self.num_codes >= 1, f"num_codes must be >= 1, got {self.num_codes}")
        check(1 <= self.levels <= 16, f"levels must be in [1, 16], got {self.levels}")
        object.__setattr__(self, "scheme", ngram_mode(self.scheme))  # frozen; old checkpoints spell it the earlier way
        check(self.code_rows_cap >= 2, f"code_rows_cap must be >= 2, got {self.code_rows_cap}")
        check(
            self.levels * math.log2(max(self.num_codes, 2)) <= 62,
            f"num_codes^levels must fit in int64 (num_codes={self.num_codes}, levels={self.levels})",
        )
        check(self.item_rows >= 1, f"item_rows must be >= 1, got {self.item_rows}")
        check(self.user_buckets >= 1 and self.author_buckets >= 1, "hash buckets must be >= 1")
        check(self.id_init_std > 0, f"id_init_std must be > 0, got {self.id_init_std}")

    def level_rows(self) -> list[int]:
        """Rows of each level's id range, the unknown row excluded (``fluidrec.codes.ngram.level_rows``)."""
        return list(level_rows(self.num_codes, self.levels, self.scheme, self.code_rows_cap))


class CodeEmbedding(nn.Module):
    """LUCID code -> embedding: one table per level, concatenated (Eq. 2), projected to D.

    Row ids come from ``fluidrec.codes.ngram.row_ids_torch`` (the one prefix-id rule); each
    level's table has one extra last row for unknown codes. The L level tables live as consecutive row ranges of one table (level l starts at
    ``offsets[l]``), so a lookup is one gather; ``level_table(l)`` is level l's
    (rows_l, D/L) view and ``forward_reference`` the plain per-level computation it must
    equal. Code tables are small (sum_l min(N^l, cap) rows) and every batch touches many
    of their rows (candidates and K history items), so they take dense gradients and the
    fused dense Adam, which costs less per step here than SparseAdam's coalesce + scatter.
    """

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rows = cfg.level_rows()
        self.sizes = [r + 1 for r in self.rows]  # + the unknown row
        self.level_dim = max(cfg.dim // cfg.levels, 1)
        self.table = nn.Embedding(sum(self.sizes), self.level_dim)
        nn.init.normal_(self.table.weight, std=0.05)
        starts = [sum(self.sizes[:lv]) for lv in range(cfg.levels)]
        self.register_buffer("offsets", torch.tensor(starts, dtype=torch.int64), persistent=False)
        # row_ids_torch's row counts, built once (this runs three times per forward)
        self.register_buffer("ngram_rows", torch.tensor(self.rows, dtype=torch.int64), persistent=False)
        # Eq. 2 is a plain concatenation; project only when L * level_dim != D.
        self.proj = nn.Identity() if self.level_dim * cfg.levels == cfg.dim else nn.Linear(self.level_dim * cfg.levels, cfg.dim)

    def ids(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., L) codes -> (..., L) row index within each level's table (unknown: the last row)."""
        if codes.shape[-1] != self.cfg.levels:
            raise UsageError(f"codes have {codes.shape[-1]} levels, the model expects {self.cfg.levels}")
        return row_ids_torch(codes, self.cfg.num_codes, self.ngram_rows, self.cfg.scheme)

    def level_table(self, lv: int) -> torch.Tensor:
        """Level ``lv``'s table, (rows[lv], level_dim), a view of the fused weight."""
        start = sum(self.sizes[:lv])
        return self.table.weight[start : start + self.sizes[lv]]

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., L) codes -> (..., D)."""
        rows = self.ids(codes) + self.offsets  # (..., L) rows of the fused table
        parts = gather_rows(self.table.weight, rows)  # (..., L, D/L)
        return self.proj(parts.flatten(-2))  # concatenation over levels, (..., D)

    def forward_reference(self, codes: torch.Tensor) -> torch.Tensor:
        """Plain Eq. 2: look each level up in its own table, concatenate (reference for tests)."""
        ids = self.ids(codes)
        parts = [F.embedding(ids[..., lv], self.level_table(lv)) for lv in range(self.cfg.levels)]
        return self.proj(torch.cat(parts, dim=-1))


def prefix_match_shares(hist_codes: torch.Tensor, hist_mask: torch.Tensor, cand_codes: torch.Tensor) -> torch.Tensor:
    """Share of the user's history items whose code prefix of depth d equals the candidate's.

    The plain per-row form; the model runs ``prefix_match_shares_grouped`` (same numbers).

    Args:
        hist_codes: (B, K, L) codes of the user's last K clicks; hist_mask: (B, K) valid entries.
        cand_codes: (B, L) the candidate's codes.

    Returns:
        (B, L) float: column d-1 is the share of valid history items that share the
        candidate's first d code levels (0 for a user with no history).
    """
    same = (hist_codes == cand_codes.unsqueeze(1)).to(torch.int32).cumprod(-1)  # (B, K, L) prefix equal up to d
    same = same * hist_mask.unsqueeze(-1)
    return same.sum(1).to(torch.float32) / hist_mask.sum(1, keepdim=True).clamp_min(1).to(torch.float32)  # (B, L)


def prefix_match_shares_reference(hist: list[list[int]], cand: list[int]) -> list[float]:
    """Plain loop form of ``prefix_match_shares`` for one user (valid history items only)."""
    out = []
    for d in range(1, len(cand) + 1):
        hits = sum(1 for h in hist if list(h[:d]) == list(cand[:d]))
        out.append(hits / len(hist) if hist else 0.0)
    return out


@dataclasses.dataclass(frozen=True)
class RowGrid:
    """Rows of a batch laid out by the history they share: a (G, S) grid of cells.

    Each grid row holds up to S rows of one history side by side, so attention against
    that history is one (S, D) x (D, K) product, and the history's K items are embedded
    once, not once per row. A history with more than S rows takes several grid rows (G > H
    then, and each grid row reads a copy of its history). S is chosen for the least work
    (``_grid_width``): most histories have one slate of ~6 rows, but runs of identical
    histories (users with no clicks yet, adjacent in the stream) can be much longer, and
    padding every history to the longest run would multiply the cells.
    Empty cells are padding that nothing reads back. Build with ``RowGrid.of``.

    Attributes:
        rows: B. histories: H. grid_rows: G. slots: S.
        group: (B,) row -> history, or None when H = B (row b reads history b).
        flat: (B,) row -> cell ``g * S + slot`` of the flattened grid, or None when the cells
            are the rows in order (H = B and S = 1, or H = 1 and S = B), so no index is needed.
        cell_hist: (G,) grid row -> history, or None when grid row h is history h.
    """

    rows: int
    histories: int
    grid_rows: int
    slots: int
    group: torch.Tensor | None
    flat: torch.Tensor | None
    cell_hist: torch.Tensor | None

    @classmethod
    def of(cls, hist_group: torch.Tensor | None, histories: int, rows: int | None = None) -> RowGrid:
        """The grid of ``rows`` rows over ``histories`` histories (``hist_group`` as in ``Batch``)."""
        if hist_group is None:
            if rows is not None and rows != histories:
                raise UsageError(f"the batch has {rows} rows but {histories} histories; set hist_group to share them")
            return cls(histories, histories, histories, 1, None, None, None)
        b = int(hist_group.shape[0])
        if rows is not None and rows != b:
            raise UsageError(f"hist_group has {b} entries but the batch has {rows} rows")
        if histories == 1:  # one user's request: every row reads history 0, no index needed (and no sync)
            return cls(b, 1, 1, b, hist_group, None, None)
        counts = torch.bincount(hist_group, minlength=histories)  # (H,)
        slots = _grid_width(counts)
        chunks = (counts + slots - 1) // slots  # (H,) grid rows of each history
        order = torch.argsort(hist_group, stable=True)  # rows grouped by history, in row order within one
        first = counts.cumsum(0) - counts  # (H,) sorted position of each history's first row
        rank = torch.empty_like(hist_group)
        rank[order] = torch.arange(b, device=hist_group.device) - first[hist_group[order]]  # (B,) rank within history
        grid_row = (chunks.cumsum(0) - chunks)[hist_group] + rank // slots  # (B,)
        one_each = bool((chunks == 1).all())
        cell_hist = None if one_each else torch.repeat_interleave(torch.arange(histories, device=counts.device), chunks)  # (G,)
        grid_rows = histories if one_each else int(cell_hist.shape[0])
        return cls(b, histories, grid_rows, slots, hist_group, grid_row * slots + rank % slots, cell_hist)

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) per-row values -> (G, S, ...), padding cells zero."""
        if self.flat is None:
            return x.reshape(self.grid_rows, self.slots, *x.shape[1:])  # (G, S, ...)
        cells = x.new_zeros(self.grid_rows * self.slots, *x.shape[1:])  # (G*S, ...)
        return cells.index_copy(0, self.flat, x).reshape(self.grid_rows, self.slots, *x.shape[1:])  # (G, S, ...)

    def from_grid(self, y: torch.Tensor) -> torch.Tensor:
        """(G, S, ...) -> (B, ...) the rows' cells."""
        cells = y.reshape(self.grid_rows * self.slots, *y.shape[2:])  # (G*S, ...)
        return cells if self.flat is None else cells.index_select(0, self.flat)  # (B, ...)

    def per_row(self, v: torch.Tensor) -> torch.Tensor:
        """(H, ...) per-history values -> (B, ...) each row's history's value."""
        if self.group is None:
            return v
        if self.histories == 1:
            return v.expand(self.rows, *v.shape[1:])  # (B, ...)
        return v.index_select(0, self.group)  # (B, ...)

    def per_grid_row(self, v: torch.Tensor) -> torch.Tensor:
        """(H, ...) per-history values -> (G, ...) the history of each grid row."""
        return v if self.cell_hist is None else v.index_select(0, self.cell_hist)  # (G, ...)


def _grid_width(counts: torch.Tensor) -> int:
    """The grid width S (among the histories' row counts n_h) of least work.

    Work: the cells, sum_h ceil(n_h / S) * S (attention and match run per cell), plus, when
    some history spans several grid rows, a copy of each grid row's history (G rows), about
    two cells' work each; so S = 1 (no padding, but a copy of the history per row, the old
    cost) loses to S = 6 with a few long runs split.
    """
    n = counts[counts > 0].cpu().numpy()  # (H,) rows of each used history
    if len(n) == 0:
        return 1
    widths = np.unique(n)[::-1]  # candidates, widest first (a tie goes to fewer, larger products)
    grid_rows = -(-n[None, :] // widths[:, None])  # (candidates, H) grid rows of each history
    cells = (grid_rows * widths[:, None]).sum(1)  # (candidates,)
    spans = grid_rows.sum(1)  # (candidates,) G
    work = cells + np.where(spans > len(n), 2 * spans, 0)
    return int(widths[int(np.argmin(work))])


def prefix_match_shares_grouped(hist_codes: torch.Tensor, hist_mask: torch.Tensor, cand_codes: torch.Tensor, grid: RowGrid) -> torch.Tensor:
    """``prefix_match_shares`` with histories shared by rows: the same (B, L) numbers.

    Compares each candidate with its history in the (G, S) grid (no per-row copy of the
    history) one level at a time: a running "equal so far" mask replaces the (B, K, L)
    int cumprod and the mask multiply. Codes are compared as they are (no clamping), as in
    ``prefix_match_shares``, and several times faster than it on per-row histories.

    Args:
        hist_codes: (H, K, L); hist_mask: (H, K); cand_codes: (B, L); grid: ``RowGrid`` of the rows.
    """
    cand = grid.to_grid(cand_codes)  # (G, S, L)
    hist_codes, hist_mask = grid.per_grid_row(hist_codes), grid.per_grid_row(hist_mask)  # (G, K, L), (G, K)
    same = hist_mask.unsqueeze(1)  # (G, 1, K): valid history items
    counts = []
    for lv in range(hist_codes.shape[-1]):
        same = same & (hist_codes[:, :, lv].unsqueeze(1) == cand[:, :, lv].unsqueeze(-1))  # (G, S, K) prefix equal to depth lv+1
        counts.append(same.sum(-1))  # (G, S)
    n = hist_mask.sum(1).clamp_min(1).to(torch.float32)  # (G,)
    shares = torch.stack(counts, dim=-1).to(torch.float32) / n[:, None, None]  # (G, S, L)
    return grid.from_grid(shares)  # (B, L)


class HistoryPool(nn.Module):
    """The history token: the user's last K clicked slices pooled against the candidate,
    plus what those clicks share with the candidate's content.

    Pooling: attention whose query is a learned vector plus a projection of the mean
    candidate token, so the module is the same in every arm. Match: the shares of
    history items that share the candidate's slice (and room) code prefix at each depth
    (``prefix_match_shares``) and log(1 + history length), projected to D. Learning that
    comparison from the pooled vector alone is what the ranker failed to do
    (docs/ranker.md, "Why the ranker did not learn"); arms without candidate codes feed
    zeros there. The match projection starts at zero so a token added by a warmup stage
    leaves the warm model's predictions unchanged.

    Rows that share a history (``hist_group``, see ``fluidrec.ranker.batching``) share its
    item embedding: at K = 64 embedding the history once per row was most of a training
    step. The attention and the match still run per row (they depend on the candidate),
    on the (G, S) grid of ``RowGrid``. ``forward_reference`` is the plain per-row form.
    """

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.codes = CodeEmbedding(cfg)  # own tables: history never shares the candidate tables
        self.q0 = nn.Parameter(torch.zeros(cfg.dim))
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.scale = cfg.dim**-0.5
        self.levels = cfg.levels
        self.match = nn.Linear(2 * cfg.levels + 1, cfg.dim)
        nn.init.zeros_(self.match.weight)
        nn.init.zeros_(self.match.bias)

    def match_features(
        self, hist_codes: torch.Tensor, hist_mask: torch.Tensor, slice_codes: torch.Tensor | None, room_codes: torch.Tensor | None,
        hist_group: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """(B, 2L + 1): slice-prefix shares, room-prefix shares (zeros when absent), log1p(history length).

        ``hist_codes`` (H, K, L) and ``hist_mask`` (H, K) with ``hist_group`` as in ``Batch``.
        """
        rows = next((t.shape[0] for t in (slice_codes, room_codes) if t is not None), None)
        grid = RowGrid.of(hist_group, hist_mask.shape[0], rows)
        return self._match_features(hist_codes, hist_mask, slice_codes, room_codes, grid)

    def _match_features(
        self, hist_codes: torch.Tensor, hist_mask: torch.Tensor, slice_codes: torch.Tensor | None, room_codes: torch.Tensor | None,
        grid: RowGrid,
    ) -> torch.Tensor:  # fmt: skip
        zeros = torch.zeros(grid.rows, self.levels, dtype=torch.float32, device=hist_mask.device)
        s = zeros if slice_codes is None else prefix_match_shares_grouped(hist_codes, hist_mask, slice_codes, grid)
        r = zeros if room_codes is None else prefix_match_shares_grouped(hist_codes, hist_mask, room_codes, grid)
        n = torch.log1p(hist_mask.sum(1, keepdim=True).to(torch.float32))  # (H, 1)
        return torch.cat([s, r, grid.per_row(n)], dim=1)  # (B, 2L + 1)

    def forward(
        self, hist_codes: torch.Tensor, hist_mask: torch.Tensor, cand: torch.Tensor | None,
        slice_codes: torch.Tensor | None = None, room_codes: torch.Tensor | None = None,
        hist_group: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """(B, D) history tokens; ``hist_codes`` (H, K, L), ``hist_mask`` (H, K), ``hist_group`` as in ``Batch``."""
        rows = next((t.shape[0] for t in (cand, slice_codes, room_codes) if t is not None), None)
        grid = RowGrid.of(hist_group, hist_codes.shape[0], rows)
        items = self.codes(hist_codes)  # (H, K, D), once per distinct history
        has = hist_mask.any(1, keepdim=True)  # (H, 1) the user has clicked before
        # -inf on the empty slots of a non-empty history. An empty history keeps its (finite)
        # scores and its pooled vector is zeroed at the end, so no NaN enters the softmax
        # (the textbook form masks all slots and turns the NaN weights into zeros).
        bias = torch.zeros(hist_mask.shape, dtype=items.dtype, device=items.device)
        bias = bias.masked_fill_(~hist_mask & has, float("-inf"))  # (H, K)
        if cand is None:
            # one query for every row: pool each history once
            qk = self.q0 @ self.wk.weight  # (D,)
            w = torch.softmax((items @ qk) * self.scale + bias, dim=-1)  # (H, K)
            pooled = grid.per_row((w.unsqueeze(1) @ items).squeeze(1) * has)  # (H, D) -> (B, D)
        else:
            q = self.q0 + self.wq(cand)  # (B, D)
            # wk(items) . q == items . (Wk^T q): project the one query, not the K keys.
            qk = grid.to_grid(q @ self.wk.weight)  # (G, S, D)
            keys = grid.per_grid_row(items)  # (G, K, D), a view of items unless a history spans grid rows
            att = torch.baddbmm(grid.per_grid_row(bias).unsqueeze(1), qk, keys.transpose(1, 2), alpha=self.scale)  # (G, S, K)
            w = torch.softmax(att, dim=-1)
            pooled = grid.from_grid(w @ keys) * grid.per_row(has)  # (G, S, D) -> (B, D); no history: zero
        return pooled + self.match(self._match_features(hist_codes, hist_mask, slice_codes, room_codes, grid))

    def forward_reference(
        self, hist_codes: torch.Tensor, hist_mask: torch.Tensor, cand: torch.Tensor | None,
        slice_codes: torch.Tensor | None = None, room_codes: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """The textbook form (one history per row: (B, K, L), (B, K); keys projected, weighted sum),
        reference for ``forward``. A batch with shared histories: ``Batch.row_histories()``."""
        items = self.codes.forward_reference(hist_codes)  # (B, K, D)
        q = self.q0 if cand is None else self.q0 + self.wq(cand)
        att = (self.wk(items) * q.unsqueeze(-2)).sum(-1) * self.scale  # (B, K)
        w = torch.softmax(att.masked_fill(~hist_mask, float("-inf")), dim=-1).nan_to_num(0.0)
        pooled = (w.unsqueeze(-1) * items).sum(1)  # (B, D)
        return pooled + self.match(self.match_features_reference(hist_codes, hist_mask, slice_codes, room_codes))

    def match_features_reference(
        self, hist_codes: torch.Tensor, hist_mask: torch.Tensor, slice_codes: torch.Tensor | None, room_codes: torch.Tensor | None
    ) -> torch.Tensor:
        """``match_features`` from the plain per-row ``prefix_match_shares`` (one history per row)."""
        zeros = torch.zeros(hist_mask.shape[0], self.levels, dtype=torch.float32, device=hist_mask.device)
        s = zeros if slice_codes is None else prefix_match_shares(hist_codes, hist_mask, slice_codes)
        r = zeros if room_codes is None else prefix_match_shares(hist_codes, hist_mask, room_codes)
        n = torch.log1p(hist_mask.sum(1, keepdim=True).to(torch.float32))  # (B, 1)
        return torch.cat([s, r, n], dim=1)


class EarlyFusion(nn.Module):
    """One candidate token h from g and s (fluid.txt Eqs. 3-5)."""

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        check(kind in FUSIONS, f"fusion must be one of {FUSIONS}, got {kind!r}")
        self.kind = kind
        if kind == "concat":
            self.w = nn.Linear(2 * dim, dim)
        elif kind == "gate_learned":
            self.f = nn.Linear(dim, 1)  # alpha = sigmoid(f(g))
        elif kind == "gate_feature":
            # alpha = sigmoid(f(u)), u = [log1p(exposure so far), ||g||]
            self.f = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1))

    def forward(self, g: torch.Tensor | None, s: torch.Tensor, exposure: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.kind == "replace":
            return s, None
        assert g is not None
        if self.kind == "concat":
            return self.w(torch.cat([g, s], dim=-1)), None
        if self.kind == "gate_learned":
            alpha = torch.sigmoid(self.f(g))  # (B, 1)
        else:
            # The norm is side information, not a path for gradients into the ID table.
            u = torch.stack([torch.log1p(exposure), g.detach().norm(dim=-1)], dim=-1)  # (B, 2)
            alpha = torch.sigmoid(self.f(u))
        return alpha * g + (1 - alpha) * s, alpha.squeeze(-1)


class Tokenizer(nn.Module):
    """Builds the prime tokens of one arm.

    Args:
        cfg: embedder sizes.
        tokens: token names in backbone order (subset of FIXED_TOKENS + CANDIDATE_TOKENS).
        fusion: the early-fusion kind when "early" is a token.

    ``forward(batch)`` returns ``(x (B, T, D), aux)``; aux holds ``g``, ``s`` (for EM3) and
    ``alpha`` (gate weights) when present.
    """

    def __init__(self, cfg: TokenizerConfig, tokens: tuple[str, ...], fusion: str | None = None) -> None:
        super().__init__()
        known = FIXED_TOKENS + CANDIDATE_TOKENS
        for t in tokens:
            check(t in known, f"unknown token {t!r}; known: {known}")
        check(len(set(tokens)) == len(tokens), f"duplicate tokens in {tokens}")
        check(("early" in tokens) == (fusion is not None), "fusion is set exactly when 'early' is a token")
        self.cfg = cfg
        self.token_names = tuple(tokens)
        self.fusion = fusion
        d = cfg.dim
        self.register_buffer("id_scale", torch.ones(()), persistent=True)
        self.user = nn.Embedding(cfg.user_buckets, d, sparse=True)
        # Profile columns (P tables) and context fields (hour, position, age bucket) are small
        # dense tables kept as row ranges of one table: one gather for all P + 3 lookups.
        side_rows = [PROFILE_VOCAB] * len(USER_PROFILE_COLUMNS) + [24, MAX_POSITION + 1, len(AGE_EDGES_MIN) + 1]
        self.side = nn.Embedding(sum(side_rows), d)
        starts = [sum(side_rows[:i]) for i in range(len(side_rows))]
        self.register_buffer("side_offsets", torch.tensor(starts, dtype=torch.int64), persistent=False)
        self.history = HistoryPool(cfg)
        self.author = nn.Embedding(cfg.author_buckets, d, sparse=True) if "author" in tokens else None
        needs_g = "item_id" in tokens or (fusion is not None and fusion != "replace")
        needs_s = "slice" in tokens or fusion is not None
        self.item_id = nn.Embedding(cfg.item_rows, d, sparse=True) if needs_g else None
        self.slice = CodeEmbedding(cfg) if needs_s or ("room" in tokens and cfg.shared_code_tables) else None
        if "room" in tokens:
            self.room = self.slice if cfg.shared_code_tables else CodeEmbedding(cfg)
        else:
            self.room = None
        self.early = EarlyFusion(fusion, d) if fusion is not None else None
        for emb in (self.user, self.author, self.side):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.05)
        if self.item_id is not None:
            nn.init.normal_(self.item_id.weight, std=cfg.id_init_std)

    @property
    def num_tokens(self) -> int:
        return len(self.token_names)

    def side_table(self, field: int) -> torch.Tensor:
        """Rows of side field ``field`` (0..P-1 profile columns, then hour, position, age bucket)."""
        stop = self.side_offsets[field + 1] if field + 1 < len(self.side_offsets) else self.side.num_embeddings
        return self.side.weight[int(self.side_offsets[field]) : int(stop)]

    def side_tokens(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(profile, context) tokens, each (B, D): sums of per-field embeddings, from one gather."""
        p = batch.profile.shape[1]
        idx = torch.cat([batch.profile, batch.hour[:, None], batch.position[:, None], batch.age_bucket[:, None]], dim=1)  # (B, P+3)
        e = gather_rows(self.side.weight, idx + self.side_offsets)  # (B, P+3, D)
        return e[:, :p].sum(1), e[:, p:].sum(1)

    def side_tokens_reference(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One lookup per field, summed (reference for ``side_tokens``)."""
        p = batch.profile.shape[1]
        profile = sum(F.embedding(batch.profile[:, j], self.side_table(j)) for j in range(p))
        ctx_fields = (batch.hour, batch.position, batch.age_bucket)
        context = sum(F.embedding(v, self.side_table(p + j)) for j, v in enumerate(ctx_fields))
        return profile, context

    def item_embedding(self, batch: Batch) -> torch.Tensor | None:
        """g (B, D), scaled by id_scale; exactly zero with no table lookup once id_scale is 0."""
        if self.item_id is None:
            return None
        scale = float(self.id_scale)
        if scale == 0.0:
            # No lookup, so the ID table receives no gradient at all (not even zeros).
            return torch.zeros(len(batch), self.cfg.dim, device=self.id_scale.device)
        g = self.item_id(batch.item)
        return g if scale == 1.0 else g * self.id_scale

    def _match_codes(self, batch: Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The candidate codes this arm sees (slice and room), for the history match."""
        has_slice = "slice" in self.token_names or self.early is not None
        return (batch.slice_codes if has_slice else None, batch.room_codes if "room" in self.token_names else None)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        aux: dict[str, torch.Tensor] = {}
        g = self.item_embedding(batch)
        s = self.slice(batch.slice_codes) if self.slice is not None else None
        cand: dict[str, torch.Tensor] = {}
        if "item_id" in self.token_names:
            cand["item_id"] = g
        if "slice" in self.token_names:
            cand["slice"] = s
        if "room" in self.token_names:
            cand["room"] = self.room(batch.room_codes)
        if self.early is not None:
            h, alpha = self.early(g, s, batch.exposure)
            cand["early"] = h
            if alpha is not None:
                aux["alpha"] = alpha
        if g is not None:
            aux["g"] = g
        if s is not None:
            aux["s"] = s
        cand_mean = torch.stack(list(cand.values()), 0).mean(0) if cand else None  # (B, D)
        profile, context = self.side_tokens(batch) if ("profile" in self.token_names or "context" in self.token_names) else (None, None)
        out = []
        for name in self.token_names:
            if name in cand:
                out.append(cand[name])
            elif name == "user":
                out.append(self.user(batch.user))
            elif name == "profile":
                out.append(profile)
            elif name == "context":
                out.append(context)
            elif name == "history":
                hist = (batch.hist_codes, batch.hist_mask, cand_mean, *self._match_codes(batch))
                out.append(self.history(*hist, hist_group=batch.hist_group))
            elif name == "author":
                out.append(self.author(batch.author))
        return torch.stack(out, dim=1), aux  # (B, T, D)


__all__ = [
    "CANDIDATE_TOKENS",
    "FIXED_TOKENS",
    "FUSIONS",
    "CodeEmbedding",
    "EarlyFusion",
    "HistoryPool",
    "RowGrid",
    "Tokenizer",
    "TokenizerConfig",
    "prefix_match_shares",
    "prefix_match_shares_grouped",
    "prefix_match_shares_reference",
]
