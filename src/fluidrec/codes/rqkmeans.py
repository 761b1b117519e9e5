"""RQ-KMeans: residual k-means that turns (n, D) embeddings into (n, L) codes (LUCID).

Level l clusters the residuals left by levels 1..l-1 into K codewords (fluid.txt 3.2).
Training uses faiss: by default its progressive-dimension clustering (PCA, then k-means
on a growing number of leading dimensions, each step initialised from the last), which
is what ``faiss.ResidualQuantizer`` trains each level with; it lands at a clearly lower
error than plain random-init k-means at the same cost. Each level trains on its own
sample of at most ``K * max_points_per_centroid`` vectors (faiss's cap), pushed through
the levels already fitted, so the fit never has to encode the whole data set.

Encoding is one GEMM per block of rows against all levels' codewords, then a per-level
argmax with the earlier levels' choices subtracted through precomputed cross-level
tables (``_encode_block_table``), done block by block so peak extra memory is a few
blocks, not a copy of x. A small C kernel (``_rqkernel.c``, built by setup.py) runs the
GEMM and the argmax together where it was built and its SIMD loops run, else torch runs the GEMM and NumPy the
argmax; both are tested against the plain NumPy ``encode_reference``.

Shapes: n vectors, D width, L levels, K codebook size, B rows per encode block.

Example:
    >>> model = RQKMeans(levels=4, codebook_size=64, seed=0).fit(x)   # x (n, D) float32
    >>> codes = model.encode(x)                                        # (n, 4) int32
    >>> x_hat = model.decode(codes)                                    # (n, D) float32
    >>> model.save("model_dir"); same = RQKMeans.load("model_dir")
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluidrec.data.embeddings import first_non_finite_row, non_finite_error
from fluidrec.errors import ConfigError, DataError, UsageError, check
from fluidrec.utils.ckernel import pack_panels
from fluidrec.utils.io import atomic_path, read_json, write_json

FORMAT_VERSION = 1
CODEBOOKS_FILE = "codebooks.safetensors"
CONFIG_FILE = "rqkmeans.json"


@dataclasses.dataclass(frozen=True)
class RQKMeansConfig:
    """Settings of an RQ-KMeans model.

    Args:
        levels: L, number of residual levels (FLUID: 4).
        codebook_size: K (= N in the paper), codewords per level (FLUID: 64).
        niter: k-means iterations (per progressive step when ``progressive_dim``).
        max_points_per_centroid: training sample cap per level is K times this (faiss's rule).
        progressive_dim: train each level with faiss.ProgressiveDimClustering (True) or plain faiss k-means.
        progressive_dim_steps: number of growing-dimension steps of the progressive clustering.
        normalize_residuals: L2-normalise each level's input residual (cosine-style codes;
            the codes then no longer decode to a reconstruction of x).
        seed: seed of the training samples and of faiss's k-means.
        batch_size: rows per encode block (B).
    """

    levels: int = 4
    codebook_size: int = 64
    niter: int = 10
    max_points_per_centroid: int = 256
    progressive_dim: bool = True
    progressive_dim_steps: int = 10
    normalize_residuals: bool = False
    seed: int = 0
    batch_size: int = 2048  # rows per encode block; the torch path's score block is 2 MB at L*K = 256

    def __post_init__(self) -> None:
        check(self.levels >= 1, f"levels must be >= 1, got {self.levels}")
        check(self.codebook_size >= 2, f"codebook_size must be >= 2, got {self.codebook_size}")
        check(self.codebook_size <= 2**31 - 1, f"codebook_size must fit int32, got {self.codebook_size}")
        check(self.niter >= 1, f"niter must be >= 1, got {self.niter}")
        check(self.max_points_per_centroid >= 1, f"max_points_per_centroid must be >= 1, got {self.max_points_per_centroid}")
        check(self.progressive_dim_steps >= 1, f"progressive_dim_steps must be >= 1, got {self.progressive_dim_steps}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(0 <= self.seed < 2**31, f"seed must be in [0, 2^31), got {self.seed}")


def validate_vectors(x: Any, *, source: str = "input", dim: int | None = None, check_finite: bool = True) -> np.ndarray:
    """Check an (n, D) embedding array: 2-D, non-empty, finite, optional expected D.

    Returns it as C-contiguous float32. Raises DataError naming ``source``.
    ``check_finite=False`` leaves the NaN/inf scan to the caller (encode does it per block,
    in its workers, with ``first_non_finite_row``).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"expected a 2-D (n, D) array of vectors, got shape {x.shape}", table=source, column="embedding")
    if x.shape[0] == 0:
        raise DataError("no vectors (empty input)", table=source, column="embedding")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"expected numeric vectors, got dtype {x.dtype}", table=source, column="embedding")
    if dim is not None and x.shape[1] != dim:
        raise DataError(
            f"embedding dimension {x.shape[1]} does not match the model's dimension {dim}",
            table=source, column="embedding", value=x.shape[1],
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if check_finite:
        bad = first_non_finite_row(x)
        if bad is not None:
            raise non_finite_error(source, bad)
    return x


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        raise UsageError("fluidrec.codes needs faiss: pip install faiss-cpu") from exc
    return faiss


def _kmeans(x: np.ndarray, k: int, cfg: RQKMeansConfig, seed: int) -> np.ndarray:
    """faiss k-means of x (m, D) into k centroids (k, D); progressive-dim when configured."""
    faiss = _faiss()
    m, d = x.shape
    threads = faiss.omp_get_max_threads()
    # Small problems run thousands of tiny OpenMP regions (10 progressive steps x niter);
    # on a busy machine their barriers cost far more than the work, so use one thread.
    if m * k * d < 2**24:
        faiss.omp_set_num_threads(1)
    try:
        return _kmeans_faiss(faiss, x, k, cfg, seed)
    finally:
        faiss.omp_set_num_threads(threads)


def _kmeans_faiss(faiss: Any, x: np.ndarray, k: int, cfg: RQKMeansConfig, seed: int) -> np.ndarray:
    m, d = x.shape
    # Progressive-dim clustering starts from a PCA of the sample, which needs more points
    # than dimensions; with fewer (small catalogues) plain k-means is the right tool.
    if cfg.progressive_dim and 1 < d < m:
        params = faiss.ProgressiveDimClusteringParameters()
        params.niter = cfg.niter
        params.seed = seed
        params.progressive_dim_steps = cfg.progressive_dim_steps
        params.max_points_per_centroid = cfg.max_points_per_centroid
        params.verbose = False
        clus = faiss.ProgressiveDimClustering(d, k, params)
        factory = faiss.ProgressiveDimIndexFactory()
        clus.train(m, faiss.swig_ptr(x), factory)
    else:
        params = faiss.ClusteringParameters()
        params.niter = cfg.niter
        params.seed = seed
        params.max_points_per_centroid = cfg.max_points_per_centroid
        params.verbose = False
        clus = faiss.Clustering(d, k, params)
        clus.train(x, faiss.IndexFlatL2(d))
    return faiss.vector_to_array(clus.centroids).reshape(k, d).astype(np.float32)  # (K, D)


_KERNEL: Any = None


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """The C encode kernel's entry points (ctypes functions; see _rqkernel.c)."""

    levels_argmax: Any  # (scores, n, levels, k, cross, codes) -> first bad row or -1 (tests use it)
    encode: Any  # (x, n, d, ldx, packed, bias, levels, k, cross, codes, allow_simd) -> first bad row, -1 or -2
    simd: bool  # the SIMD loops were compiled in and this CPU runs them (fluidrec_rq_simd)


def _kernel() -> _Kernel | None:
    """The C encode kernel, or None where the extension was not built."""
    global _KERNEL
    if _KERNEL is None:
        from fluidrec.utils.ckernel import load_kernel

        fns = load_kernel(
            "fluidrec.codes._rqkernel",
            {
                "fluidrec_rq_levels_argmax": (["p", "i", "i", "i", "p", "p"], "i"),
                "fluidrec_rq_encode": (["p", "i", "i", "i", "p", "p", "i", "i", "p", "p", "i"], "i"),
                "fluidrec_rq_simd": ([], "i"),
            },
        )
        _KERNEL = _Kernel(fns["fluidrec_rq_levels_argmax"], fns["fluidrec_rq_encode"], bool(fns["fluidrec_rq_simd"]())) if fns else False
    return _KERNEL or None


def kernel_built() -> bool:
    """Whether the C kernel was built (its plain-C loops run on any CPU; tests use them)."""
    return _kernel() is not None


def simd_available() -> bool:
    """Whether the kernel's SIMD loops were compiled in and this CPU runs them (the C side says)."""
    kernel = _kernel()
    return kernel is not None and kernel.simd


def kernel_available() -> bool:
    """Whether ``encode`` may choose the C kernel: built, with its SIMD loops running (its
    plain-C loops are slower than the torch/NumPy path, which gives the same codes)."""
    return simd_available()


def _normalize_rows(r: torch.Tensor) -> torch.Tensor:
    # a zero residual stays zero (nothing left to encode) instead of becoming NaN
    return r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)


class RQKMeans:
    """Residual k-means quantiser (LUCID codes).

    Args:
        levels: L residual levels.
        codebook_size: K codewords per level.
        **settings: any other field of ``RQKMeansConfig`` (niter, seed, progressive_dim, ...).

    Example:
        >>> rq = RQKMeans(levels=4, codebook_size=64, seed=1).fit(x)
        >>> rq.encode(x[:2])
        array([[33, 42, 63,  3], [ 5, 17,  0, 41]], dtype=int32)
    """

    def __init__(self, levels: int = 4, codebook_size: int = 64, **settings: Any) -> None:
        unknown = set(settings) - {f.name for f in dataclasses.fields(RQKMeansConfig)}
        if unknown:
            raise ConfigError(f"unknown RQKMeans setting(s): {', '.join(sorted(unknown))}")
        self.config = RQKMeansConfig(levels=levels, codebook_size=codebook_size, **settings)
        self.codebooks: np.ndarray | None = None  # (L, K, D) float32
        self.fit_stats: dict[str, Any] = {}
        self.use_kernel = True  # use the C encode kernel when built (False: the torch/NumPy path)

    @classmethod
    def from_config(cls, config: RQKMeansConfig) -> RQKMeans:
        return cls(**dataclasses.asdict(config))

    # ------------------------------------------------------------------ properties
    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def dim(self) -> int:
        return int(self._require_fitted().shape[2])

    def _require_fitted(self) -> np.ndarray:
        if self.codebooks is None:
            raise UsageError("RQKMeans model is not fitted yet (call fit or load)")
        return self.codebooks

    # ------------------------------------------------------------------ fit
    def fit(self, x: Any, *, progress: bool = False, source: str = "input") -> RQKMeans:
        """Fit the L codebooks on x (n, D) float32; returns self.

        Args:
            x: training vectors (n, D); must have n >= K, be finite and non-empty.
            progress: show a tqdm bar over levels.
            source: name used in error messages (e.g. the embedding file).
        """
        cfg = self.config
        x = validate_vectors(x, source=source)
        n, d = x.shape
        k = cfg.codebook_size
        if n < k:
            raise DataError(f"need at least codebook_size={k} training vectors, got {n}", table=source, column="embedding", value=n)
        rng = np.random.default_rng(cfg.seed)
        cap = min(n, k * cfg.max_points_per_centroid)
        # Fresh sample per level where the data allows: a level fitted on the very points
        # whose earlier-level residuals were fitted would see optimistically small residuals.
        perm = rng.permutation(n)
        disjoint = n >= cfg.levels * cap
        codebooks = np.zeros((cfg.levels, k, d), dtype=np.float32)
        stats: dict[str, Any] = {"n": n, "dim": d, "train_points_per_level": cap, "levels": []}
        t_start = time.perf_counter()
        from tqdm.auto import tqdm

        for level in tqdm(range(cfg.levels), desc="rq-kmeans levels", disable=not progress):
            if disjoint:
                idx = np.sort(perm[level * cap : (level + 1) * cap])
            else:
                idx = np.sort(rng.choice(n, size=cap, replace=False))
            # residuals of the sample after the levels fitted so far
            resid = self._residuals(x[idx], codebooks[:level])  # (m, D)
            seed = (cfg.seed + 7919 * level) % (2**31)
            cents = _kmeans(resid, k, cfg, seed)  # (K, D)
            cents, reseeded = _reseed_dead(resid, cents, cfg.normalize_residuals)
            codebooks[level] = cents
            stats["levels"].append({"level": level + 1, "reseeded": reseeded})
        self.codebooks = codebooks
        stats["seconds"] = time.perf_counter() - t_start
        self.fit_stats = stats
        return self

    def _residuals(self, x: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
        """Residual entering level len(codebooks)+1 (normalised when configured)."""
        r = torch.from_numpy(x.copy())
        for cb in codebooks:
            c = torch.from_numpy(cb)
            if self.config.normalize_residuals:
                r = _normalize_rows(r)
            dist = torch.addmm((c * c).sum(1), r, c.T, alpha=-2.0)  # (m, K)
            r -= c[dist.argmin(dim=1)]
        if self.config.normalize_residuals:
            r = _normalize_rows(r)
        return np.ascontiguousarray(r.numpy())

    # ------------------------------------------------------------------ encode / decode
    def encode(self, x: Any, *, progress: bool = False, source: str = "input") -> np.ndarray:
        """Codes (n, L) int32 of x (n, D): nearest codeword per level on the residuals.

        Args:
            x: vectors (n, D) with D equal to the model's dimension.
            progress: show a tqdm bar over blocks.
            source: name used in error messages.
        """
        codes, _ = self._encode(x, progress=progress, source=source, track_errors=False)
        return codes

    def _encode(self, x: Any, *, progress: bool, source: str, track_errors: bool) -> tuple[np.ndarray, np.ndarray | None]:
        cb_np = self._require_fitted()
        # the NaN/inf scan runs per block in the workers (a serial pass over x cost ~6% of encode)
        x = validate_vectors(x, source=source, dim=cb_np.shape[2], check_finite=False)
        n = x.shape[0]
        L = cb_np.shape[0]
        codes = torch.empty((n, L), dtype=torch.int32)
        # The cross-level table path needs linear residuals; normalised residuals and the
        # error tracking (which needs the residuals themselves) go level by level.
        step = self._encode_block_residual if (self.config.normalize_residuals or track_errors) else self._encode_block_table
        state = self._encode_state()
        with warnings.catch_warnings():  # x may be a read-only Arrow buffer; it is never written
            warnings.simplefilter("ignore", UserWarning)
            xt = torch.from_numpy(x)
        bs = self.config.batch_size
        starts = list(range(0, n, bs))
        threads = torch.get_num_threads()
        workers = max(1, min(threads, len(starts)))
        from tqdm.auto import tqdm

        bar = tqdm(total=len(starts), desc="encode", disable=not progress, unit="block")

        def work(chunk: list[int], single_thread: bool) -> tuple[np.ndarray | None, int | None]:
            if single_thread:
                # The blocks are the parallel unit: one torch thread per worker. Many small
                # intra-op parallel regions stall on every barrier when the machine is shared
                # (far slower than this under load). torch's OpenMP/MKL setting is
                # per calling thread; only torch.get_num_threads() reads a global, restored below.
                torch.set_num_threads(1)
            err = np.zeros((L, 2), dtype=np.float64) if track_errors else None
            # per-worker scratch reused across blocks: a fresh multi-MB score block per block
            # costs page faults
            local = {**state, "scratch": {}}
            with torch.inference_mode():
                for start in chunk:
                    bad = step(xt[start : start + bs], codes[start : start + bs], local, err)
                    if bad is not None:  # stop this worker; the caller raises for the first bad row
                        return err, start + bad
                    bar.update(1)
            return err, None

        try:
            if workers == 1:
                parts = [work(starts, single_thread=False)]
            else:
                from concurrent.futures import ThreadPoolExecutor

                chunks = [list(c) for c in np.array_split(np.asarray(starts), workers)]  # contiguous rows per worker
                with ThreadPoolExecutor(workers) as pool:
                    parts = list(pool.map(lambda c: work(c, single_thread=True), chunks))
        finally:
            torch.set_num_threads(threads)
            bar.close()
        bad_rows = [bad for _, bad in parts if bad is not None]
        if bad_rows:
            row = min(bad_rows)
            if first_non_finite_row(x[row : row + 1]) is None:  # finite, but the scores overflowed
                raise DataError("embedding values too large: float32 distances overflow", table=source, column="embedding", row=row)
            raise non_finite_error(source, row)
        # errors[l] = (sum ||input of level l||^2, sum ||residual after level l||^2) in float64
        errors = np.sum([e for e, _ in parts], axis=0) if track_errors else None
        return codes.numpy(), errors

    def encode_path(self) -> str:
        """"C kernel" where encode runs the optional C kernel, else "torch" (same codes).

        The kernel is chosen only where its SIMD loops run (``kernel_available()``) and
        ``use_kernel`` is set (False: always the torch/NumPy path)."""
        cfg = self.config
        fast = self.use_kernel and not cfg.normalize_residuals and cfg.levels <= 64  # 64: the kernel's level cap
        return "C kernel" if fast and kernel_available() else "torch"

    def _encode_state(self) -> dict[str, Any]:
        """Arrays the block encoders share (built once per encode call)."""
        cb_np = self._require_fitted()
        cb = torch.from_numpy(cb_np)  # (L, K, D)
        L, K, D = cb.shape
        state: dict[str, Any] = {"cb": cb, "cnorm": (cb * cb).sum(-1)}
        if not self.config.normalize_residuals:
            # float64 via torch, not NumPy: a NumPy matmul wakes OpenBLAS's thread pool, whose
            # spinning threads then compete with the encode workers
            cb64 = cb.double()
            state["all_t"] = cb.reshape(L * K, D).T.contiguous()  # (D, L*K)
            state["neg_half_norm"] = (-0.5 * (cb64**2).sum(-1)).float().reshape(L * K)  # (L*K,)
            # cross[l] stacks <c_j, c_l> for j < l: (l*K, K); row j*K + k is codeword k of level j
            state["cross"] = [torch.cat([cb64[j] @ cb64[lv].T for j in range(lv)], dim=0).float() if lv else None for lv in range(L)]
            state["offsets"] = torch.arange(L, dtype=torch.int64) * K  # (L,)
            kernel = state["kernel"] = _kernel() if self.encode_path() == "C kernel" else None
            if kernel is not None:
                blocks = [c.reshape(-1) for c in state["cross"][1:]]  # (l*K*K,) per level l >= 1, read back to back by the kernel
                state["cross_flat"] = torch.cat(blocks) if blocks else torch.zeros(1)
                state["packed"] = pack_panels(state["all_t"])  # the codewords in the GEMM's panel order
                state["bias"] = torch.zeros(state["packed"].numel() // D)  # zero on the padding columns
                state["bias"][: L * K] = state["neg_half_norm"]
        return state

    @staticmethod
    def _encode_block_table(x: torch.Tensor, out: torch.Tensor, state: dict[str, Any], errors: Any) -> int | None:
        """Fast path: one GEMM against all levels' codewords, then O(L^2 K) lookups.

        With r_l = x - sum_{j<l} c_j, the score to maximise at level l is
        <r_l, c> - ||c||^2/2 = (<x, c> - ||c||^2/2) - sum_{j<l} <c_j, c>, so a single
        (B, D) x (D, L*K) GEMM replaces L thin ones, and the prefix terms are rows of
        precomputed cross-level inner-product tables. The C kernel, when built, runs the GEMM
        six rows at a time and the per-level subtract + argmax on those rows' scores while
        they are still in L1 (a 2 MB score block read back from L3 cost ~10%). Otherwise the
        GEMM runs in torch (not NumPy: two BLAS thread pools spin against each other) and the
        argmax in NumPy (its SIMD row argmax beat torch's for K=64 on the machines we timed).
        """
        L = out.shape[1]
        K = state["neg_half_norm"].shape[0] // L
        kernel = state["kernel"]
        if kernel is not None:  # GEMM and argmax fused; also finds rows with NaN/inf (see _rqkernel.c)
            n, D = x.shape
            bad = kernel.encode(x.data_ptr(), n, D, x.stride(0), state["packed"].data_ptr(), state["bias"].data_ptr(), L, K, state["cross_flat"].data_ptr(), out.data_ptr(), 1)
            if bad == -2:
                raise MemoryError("RQ-KMeans encode kernel: could not allocate its score buffer")
            return None if bad < 0 else int(bad)
        scratch = state.get("scratch", {})
        buf = scratch.get("scores")
        if buf is None or buf.shape[0] < x.shape[0]:
            buf = scratch["scores"] = torch.empty((x.shape[0], L * K))
        scores = torch.addmm(state["neg_half_norm"], x, state["all_t"], out=buf[: x.shape[0]])  # (B, L*K)
        scores_np = scores.numpy()
        bad = first_non_finite_row(scores_np[:, :K])  # same rule as the kernel: level-0 scores
        if bad is not None:
            return bad
        prev = torch.empty((x.shape[0], L), dtype=torch.int64)  # (B, L) rows of the stacked cross tables
        for level in range(L):
            s = scores_np[:, level * K : (level + 1) * K]  # (B, K) view
            if level:
                corr = torch.nn.functional.embedding_bag(prev[:, :level], state["cross"][level], mode="sum")  # (B, K)
                s = torch.sub(scores[:, level * K : (level + 1) * K], corr, out=corr).numpy()
            idx = torch.from_numpy(s.argmax(axis=1))  # (B,)
            out[:, level] = idx
            prev[:, level] = idx + state["offsets"][level]
        return None

    def _encode_block_residual(self, x: torch.Tensor, out: torch.Tensor, state: dict[str, Any], errors: Any) -> int | None:
        """Level by level on explicit residuals: argmin ||c||^2 - 2 r.c (one thin GEMM per level).

        Returns the first row of the block with a NaN/inf (nothing encoded), else None.
        """
        bad = first_non_finite_row(x.numpy())
        if bad is not None:
            return bad
        cb, cnorm = state["cb"], state["cnorm"]
        r = x.clone()  # (B, D), the only per-block copy of x
        for level in range(out.shape[1]):
            if self.config.normalize_residuals:
                r = _normalize_rows(r)
            if errors is not None:
                errors[level, 0] += float(torch.sum(r.double() ** 2))
            dist = torch.addmm(cnorm[level], r, cb[level].T, alpha=-2.0)  # (B, K)
            idx = dist.argmin(dim=1)  # (B,)
            out[:, level] = idx.to(torch.int32)
            r -= cb[level].index_select(0, idx)  # (B, D)
            if errors is not None:
                errors[level, 1] += float(torch.sum(r.double() ** 2))
        return None

    def decode(self, codes: Any) -> np.ndarray:
        """Reconstruction (n, D) float32 = sum over levels of the chosen codewords.

        Raises UsageError for models fitted with normalize_residuals (codes carry no scale).
        """
        cb = self._require_fitted()
        if self.config.normalize_residuals:
            raise UsageError("a model with normalize_residuals has no reconstruction (codes carry no residual scale)")
        codes = self.check_codes(codes)
        out = np.zeros((codes.shape[0], cb.shape[2]), dtype=np.float32)
        for level in range(codes.shape[1]):
            out += cb[level][codes[:, level]]
        return out

    def check_codes(self, codes: Any, *, source: str = "codes") -> np.ndarray:
        """Validate an (n, L') code array (L' <= L, values in [0, K)) and return it as int64."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] > self.levels or codes.shape[1] == 0:
            raise DataError(f"expected codes of shape (n, <= {self.levels}), got {codes.shape}", table=source)
        if not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"expected integer codes, got dtype {codes.dtype}", table=source)
        bad = (codes < 0) | (codes >= self.codebook_size)
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(
                f"code out of range [0, {self.codebook_size})", table=source, column=f"c{col + 1}", row=row, value=int(codes[row, col])
            )
        return codes.astype(np.int64)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``codebooks.safetensors`` (L, K, D) and ``rqkmeans.json`` (settings + fit stats)."""
        from safetensors.numpy import save_file

        cb = self._require_fitted()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / CODEBOOKS_FILE) as tmp:
            save_file({"codebooks": np.ascontiguousarray(cb)}, str(tmp))
        write_json(
            out / CONFIG_FILE,
            {"format_version": FORMAT_VERSION, "config": dataclasses.asdict(self.config), "dim": int(cb.shape[2]), "fit_stats": self.fit_stats},
        )
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RQKMeans:
        """Load a model written by ``save``; checks the tensor shapes against the settings."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        d = Path(directory)
        if not d.is_dir():
            raise DataError("model directory not found", table=str(d))
        meta = read_json(d / CONFIG_FILE)
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION or "config" not in meta:
            raise DataError(f"not an RQ-KMeans model file (expected format_version {FORMAT_VERSION})", table=str(d / CONFIG_FILE))
        try:
            model = cls(**meta["config"])
        except (ConfigError, TypeError) as exc:
            raise DataError(f"invalid settings: {exc}", table=str(d / CONFIG_FILE)) from None
        path = d / CODEBOOKS_FILE
        if not path.exists():
            raise DataError("codebook file not found", table=str(path))
        try:
            cb = load_file(str(path))["codebooks"]
        except (SafetensorError, KeyError, OSError) as exc:
            raise DataError(f"unreadable codebooks: {exc}", table=str(path)) from None
        expected = (model.levels, model.codebook_size, meta.get("dim"))
        if cb.shape != expected:
            raise DataError(f"codebooks have shape {cb.shape}, settings say {expected}", table=str(path))
        model.codebooks = np.ascontiguousarray(cb, dtype=np.float32)
        model.fit_stats = meta.get("fit_stats", {})
        return model


def _reseed_dead(x: np.ndarray, cents: np.ndarray, normalize: bool) -> tuple[np.ndarray, int]:
    """Move codewords no training point picks onto the worst-quantised points.

    faiss already splits empty clusters during training, but duplicate or degenerate
    data can still leave codewords unused; a dead codeword wastes a slot in every
    downstream embedding table.
    """
    xt, ct = torch.from_numpy(x), torch.from_numpy(cents.copy())
    dist = torch.addmm((ct * ct).sum(1), xt, ct.T, alpha=-2.0)  # (m, K)
    best, idx = dist.min(dim=1)
    counts = torch.bincount(idx, minlength=ct.shape[0])
    dead = torch.nonzero(counts == 0).flatten()  # (n_dead,)
    if len(dead) == 0:
        return cents, 0
    err = best + (xt * xt).sum(1)  # squared error of each point
    order = torch.argsort(err, descending=True, stable=True)
    taken = 0
    seen: set[bytes] = {c.tobytes() for c in cents}
    for j in order.tolist():
        if taken == len(dead):
            break
        cand = x[j]
        if float(err[j]) <= 0 or cand.tobytes() in seen:  # identical points cannot make a new cluster
            continue
        ct[dead[taken]] = torch.from_numpy(cand / max(np.linalg.norm(cand), 1e-12) if normalize else cand)
        seen.add(cand.tobytes())
        taken += 1
    return ct.numpy(), taken


def encode_reference(x: np.ndarray, codebooks: np.ndarray, *, normalize_residuals: bool = False) -> np.ndarray:
    """Plain NumPy reference of ``RQKMeans.encode`` (float64, explicit distances).

    Args:
        x: (n, D) vectors.
        codebooks: (L, K, D) codewords.
        normalize_residuals: as in RQKMeansConfig.

    Example:
        >>> encode_reference(x, model.codebooks)   # equals model.encode(x) up to float ties
    """
    r = np.asarray(x, dtype=np.float64).copy()
    codes = np.zeros((r.shape[0], codebooks.shape[0]), dtype=np.int32)
    for level, cb in enumerate(np.asarray(codebooks, dtype=np.float64)):
        if normalize_residuals:
            r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
        dist = ((r[:, None, :] - cb[None, :, :]) ** 2).sum(-1)  # (n, K)
        codes[:, level] = dist.argmin(axis=1)
        r = r - cb[codes[:, level]]
    return codes
