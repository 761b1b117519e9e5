"""Flat codebooks for segment Sids (live_foresight_sid.txt 3.1.1: C = K-Means(E, N), N = 20,000).

A flat codebook is RQ-KMeans with one level, so it shares fit/encode/save/load/stats and
the CLI (``fluidrec codes fit --levels 1 --size 20000``). Encoding is one (B, D) x (D, N)
GEMM plus a row argmax per block; keep ``batch_size`` moderate for large N so the
(B, N) score block stays small (B * N * 4 bytes).

Example:
    >>> sid = flat_codebook(size=20000, seed=0).fit(segment_embeddings)
    >>> sids = sid.encode(segment_embeddings)[:, 0]     # (n,) Sids in [0, 20000)
"""

from __future__ import annotations

from typing import Any

from fluidrec.codes.rqkmeans import RQKMeans


def flat_codebook(size: int = 20000, *, niter: int = 20, batch_size: int = 256, **settings: Any) -> RQKMeans:
    """A one-level RQKMeans with ``size`` codewords (segment Sid codebook).

    Args:
        size: codebook size N.
        niter: k-means iterations.
        batch_size: rows per encode block (score block is batch_size x size floats).
        **settings: other RQKMeansConfig fields (seed, max_points_per_centroid, progressive_dim, ...).
    """
    settings.setdefault("progressive_dim", False)  # plain k-means, as the paper; progressive dims are optional
    return RQKMeans(levels=1, codebook_size=size, niter=niter, batch_size=batch_size, **settings)
