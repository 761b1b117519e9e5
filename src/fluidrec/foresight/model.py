"""The next-Sid encoder-decoder (live_foresight_sid.txt 3.1.2, Eq. 2-6).

Shape letters: B batch, S sequence (1 history token + l context entries), D width,
N codebook size.

Input: the last l RLE entries of an author's Sid sequence, right-aligned (padding left),
as Sid ids and run lengths. ``I0 = Emb(Sid) + Emb(run) + Emb(recency)``; L_e pre-norm
self-attention encoder layers give I (B, S, D); L_d cross-attention decoder layers with a
learned [BOS] query over I give D (B, D); ``p = softmax(D @ E^T)`` over the Sid embedding
table E (N, D), the "codebook lookup table" of Eq. 6, shared with the input embedding.

Two additions the paper does not list, both needed for the model to be well defined here:
a learned *recency* embedding (Eq. 2 has no positions, and without one attention cannot
tell the latest entry from the oldest) and a [HIST] token at position 0 that is always
present, so an author with no segment yet still has a key to attend to.

Example:
    >>> model = NextSidModel(n_codes=512, cfg=NextSidConfig())
    >>> out = model(values, runs, mask)        # NextSidOutput
    >>> out.logits.shape                        # (B, 512)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.foresight.config import NextSidConfig


@dataclasses.dataclass
class NextSidOutput:
    """I: (B, S, D) encoder output; pooled: (B, D) mean of I over valid positions (the
    ranker's historical-content feature); dec: (B, D) decoder output (the foresight feature);
    logits: (B, N) scores over the codebook."""

    enc: torch.Tensor
    pooled: torch.Tensor
    dec: torch.Tensor
    logits: torch.Tensor


class _DecoderLayer(nn.Module):
    """D <- D + CrossAttention(D, I, I); D <- D + FFN(D) (Eq. 4-5, pre-norm)."""

    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_f = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))

    def forward(self, q: torch.Tensor, mem: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.norm_q(q)
        q = q + self.attn(h, mem, mem, key_padding_mask=pad, need_weights=False)[0]  # (B, 1, D)
        return q + self.ffn(self.norm_f(q))


class NextSidModel(nn.Module):
    """Encoder-decoder over RLE Sid contexts that scores the next Sid.

    Args:
        n_codes: N, the codebook size.
        cfg: widths, layers, context length, run-length cap.
    """

    def __init__(self, n_codes: int, cfg: NextSidConfig) -> None:
        super().__init__()
        self.n_codes = n_codes
        self.cfg = cfg
        d = cfg.d_model
        self.sid_emb = nn.Embedding(n_codes + 1, d)  # row N is the [HIST] token
        self.run_emb = nn.Embedding(cfg.max_run + 1, d)  # 0 = [HIST], 1..max_run
        self.pos_emb = nn.Embedding(cfg.context + 1, d)  # recency: 0 = [HIST], 1 = oldest slot ... l = latest
        layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.ffn, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.enc_layers, enable_nested_tensor=False)
        self.enc_norm = nn.LayerNorm(d)
        self.bos = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.decoder = nn.ModuleList(_DecoderLayer(d, cfg.heads, cfg.ffn) for _ in range(cfg.dec_layers))
        self.dec_norm = nn.LayerNorm(d)
        # One scale for the three summed embeddings. With nn.Embedding's N(0, 1) for run and
        # recency beside 0.02 for the (tied) Sid table, the Sid was ~1/70 of the input and the
        # model could not even learn to copy the last Sid (3 % vs the Last rule's 42 % on small).
        for emb in (self.sid_emb, self.run_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)

    @property
    def codebook(self) -> torch.Tensor:
        """(N, D) the Sid embedding table the decoder output is scored against."""
        return self.sid_emb.weight[: self.n_codes]

    def _inputs(self, values: torch.Tensor, runs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, l = values.shape
        hist = torch.full((b, 1), self.n_codes, dtype=torch.long)
        sids = torch.cat([hist, torch.where(mask, values, 0)], dim=1)  # (B, S)
        run = torch.cat([torch.zeros(b, 1, dtype=torch.long), runs.clamp(1, self.cfg.max_run)], dim=1)  # (B, S)
        pos = torch.arange(l + 1)[None, :].expand(b, l + 1)  # (B, S)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool), mask], dim=1)  # (B, S)
        x = self.sid_emb(sids) + self.run_emb(run) + self.pos_emb(pos)  # (B, S, D)
        return x, valid

    def forward(self, values: torch.Tensor, runs: torch.Tensor, mask: torch.Tensor) -> NextSidOutput:
        """values, runs: (B, l) long; mask: (B, l) bool, True on real entries (right-aligned)."""
        x, valid = self._inputs(values, runs, mask)
        pad = ~valid  # (B, S)
        enc = self.enc_norm(self.encoder(x, src_key_padding_mask=pad))  # (B, S, D)
        enc = enc * valid[..., None]
        pooled = enc.sum(1) / valid.sum(1, keepdim=True)  # (B, D)
        q = self.bos.expand(len(x), 1, -1)  # (B, 1, D)
        for layer in self.decoder:
            q = layer(q, enc, pad)
        dec = self.dec_norm(q[:, 0])  # (B, D)
        logits = dec @ self.codebook.T  # (B, N)
        return NextSidOutput(enc, pooled, dec, logits)

    def loss(self, values: torch.Tensor, runs: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, NextSidOutput]:
        """Cross-entropy on the next Sid (Eq. 6); returns (loss, outputs)."""
        out = self(values, runs, mask)
        return F.cross_entropy(out.logits, target), out


def codebook_softmax_reference(dec: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Plain reference of p = softmax(D @ E^T): one dot product per (row, code), then a stable softmax."""
    b, n = dec.shape[0], codebook.shape[0]
    p = np.zeros((b, n))
    for i in range(b):
        scores = [float(sum(float(x) * float(y) for x, y in zip(dec[i], codebook[k]))) for k in range(n)]
        m = max(scores)
        ex = [np.exp(s - m) for s in scores]
        z = sum(ex)
        p[i] = [e / z for e in ex]
    return p


def to_tensors(values: np.ndarray, runs: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.as_tensor(values, dtype=torch.long), torch.as_tensor(runs, dtype=torch.long), torch.as_tensor(mask, dtype=torch.bool)
