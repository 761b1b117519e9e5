"""Code -> embedding-row ids, and id hashing: the one home of both (fluid.txt Eq. 1).

Prefix n-gram: level l's id is the path from the root, ``cbar_l = sum_{k<=l} c_k N^(l-k)``
(0-based levels in code: ``cbar_l = cbar_{l-1} * N + c_l``), so the same c_l under different
prefixes gets different rows. Level-wise (the ablation): level l's id is just c_l.

Each level has its own table. When a level's id space (N^l for prefix ids) exceeds
``table_cap``, its ids are taken modulo the largest prime <= ``table_cap`` (a prime modulus
spreads the structured prefix ids evenly; never into another level's range).
Unknown codes are handled one way everywhere: every level's table has one extra last row,
and a code that is ``UNKNOWN_CODE`` (a room with no coded slice yet, a history pad) or
outside ``[0, N)`` (a codeword the model never saw) maps to it; for prefix ids an unknown
code also makes every deeper level unknown. ``NgramSpec.ids`` (numpy: ``codes stats``, the
sequence models) and ``row_ids_torch`` (the ranker, in the graph) are the same rule; a
test compares them. Raw ids (users, authors) hash with splitmix64 (``hash_ids``).

Shapes: n items, L levels, N codebook size.

Example:
    >>> spec = NgramSpec(codebook_size=64, levels=4, table_cap=1_000_000)
    >>> spec.table_sizes          # rows per level, unknown row included
    (65, 4097, 262145, 999984)
    >>> ids = spec.ids(codes)     # (n, 4) int64, ids[:, l] < spec.table_sizes[l]
"""

from __future__ import annotations

import dataclasses
import math

from typing import TYPE_CHECKING

import numpy as np

from fluidrec.codes.rooms import UNKNOWN_CODE
from fluidrec.errors import DataError, check

if TYPE_CHECKING:  # torch is imported where used: `codes stats` and the numpy paths stay light
    import torch

MODES = ("prefix", "level")  # the scheme names everywhere (the ranker's TokenizerConfig.scheme too)
# Earlier spellings of the same two schemes (the ranker's "prefix_ngram"/"levelwise"), still
# found in saved checkpoints and run configs; ``ngram_mode`` maps them, here and nowhere else.
OLD_MODE_NAMES = {"prefix_ngram": "prefix", "levelwise": "level"}
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def ngram_mode(name: str) -> str:
    """``name`` as one of ``MODES`` (an earlier spelling in ``OLD_MODE_NAMES`` is mapped).

    Raises:
        ConfigError: any other name.
    """
    mode = OLD_MODE_NAMES.get(name, name)
    check(mode in MODES, f"scheme must be one of {MODES}, got {name!r}")
    return mode


def prime_at_most(n: int) -> int:
    """Largest prime <= n (n >= 2).

    Example:
        >>> prime_at_most(100)
        97
    """
    def is_prime(k: int) -> bool:
        return k >= 2 and all(k % d for d in range(2, int(math.isqrt(k)) + 1))

    check(n >= 2, f"prime_at_most needs n >= 2, got {n}")
    while not is_prime(n):
        n -= 1
    return n


def level_rows(codebook_size: int, levels: int, mode: str = "prefix", table_cap: int | None = None) -> tuple[int, ...]:
    """Rows of each level's id range before the unknown row: N^(l+1) (prefix) or N (level-wise), capped.

    A level whose id space exceeds ``table_cap`` gets ``prime_at_most(table_cap)`` rows.

    Example:
        >>> level_rows(64, 4, table_cap=5000)
        (64, 4096, 4999, 4999)
    """
    check(mode in MODES, f"mode must be one of {MODES}, got {mode!r}")
    spaces = [codebook_size ** (lv + 1) if mode == "prefix" else codebook_size for lv in range(levels)]
    if table_cap is None:
        return tuple(spaces)
    cap = prime_at_most(table_cap) if any(s > table_cap for s in spaces) else table_cap
    return tuple(s if s <= table_cap else cap for s in spaces)


def prefix_ids_reference(codes: list[list[int]] | np.ndarray, codebook_size: int) -> list[list[int]]:
    """Eq. 1 written out with Python ints: ``cbar_l = sum_{k=1..l} c_k * N^(l-k)``.

    Example:
        >>> prefix_ids_reference([[0, 2], [3, 2]], 4)
        [[0, 2], [3, 14]]
    """
    out = []
    for row in np.asarray(codes).tolist():
        out.append([sum(row[k] * codebook_size ** (level - k) for k in range(level + 1)) for level in range(len(row))])
    return out


def prefix_ids(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Vectorised Eq. 1: (n, L) codes in [0, N) -> (n, L) int64 composite prefix ids (Horner form).

    Example:
        >>> prefix_ids(np.array([[0, 2], [3, 2]]), 4)
        array([[ 0,  2], [ 3, 14]])
    """
    codes = np.asarray(codes, dtype=np.int64)
    out = np.empty_like(codes)
    acc = np.zeros(codes.shape[0], dtype=np.int64)
    for level in range(codes.shape[1]):
        acc = acc * codebook_size + codes[:, level]  # (n,)
        out[:, level] = acc
    return out


def row_ids_reference(code: list[int], codebook_size: int, rows: list[int], mode: str = "prefix") -> list[int]:
    """One code tuple -> per-level row ids with plain Python ints (the reference of both fast paths)."""
    out, unknown = [], False
    for lv, c in enumerate(code):
        bad = c < 0 or c >= codebook_size
        unknown = (unknown or bad) if mode == "prefix" else bad
        if unknown:
            out.append(rows[lv])  # the level's extra last row
        elif mode == "prefix":
            out.append(sum(code[k] * codebook_size ** (lv - k) for k in range(lv + 1)) % rows[lv])
        else:
            out.append(c % rows[lv])
    return out


def row_ids_torch(codes: torch.Tensor, codebook_size: int, rows: torch.Tensor, mode: str = "prefix") -> torch.Tensor:
    """(..., L) codes -> (..., L) per-level row ids in [0, rows_l]; row ``rows_l`` is the unknown row.

    Horner's rule keeps the prefix ids exact in int64 while N^L < 2^63 (``NgramSpec`` and the
    ranker's config check it) at 2 elementwise ops per level.

    Args:
        codes: (..., L) int64 codes; UNKNOWN_CODE or out of [0, N) means unknown.
        codebook_size: N.
        rows: (L,) int64 rows of each level before its unknown row (``level_rows``).
        mode: "prefix" or "level".
    """
    import torch

    bad = (codes < 0) | (codes >= codebook_size)  # (..., L)
    known = codes.masked_fill(bad, 0)
    if mode == "prefix":
        bad = torch.cummax(bad.to(torch.uint8), dim=-1).values.bool()  # an unknown prefix makes the path unknown
        cbar = known[..., 0]
        prefixes = [cbar]
        for lv in range(1, codes.shape[-1]):
            cbar = cbar * codebook_size + known[..., lv]  # (...,)
            prefixes.append(cbar)
        known = torch.stack(prefixes, dim=-1)  # (..., L)
    ids = torch.remainder(known, rows)  # (..., L)
    return torch.where(bad, rows.expand_as(ids), ids)


def hash_ids(ids: np.ndarray, buckets: int) -> np.ndarray:
    """Hash int64 raw ids into [0, buckets) with splitmix64 (stable across runs and machines).

    Example:
        >>> hash_ids(np.array([1, 2, 3]), 100)
    """
    with np.errstate(over="ignore"):
        z = np.asarray(ids).astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(buckets)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class NgramSpec:
    """How codes become per-level embedding-row ids.

    Args:
        codebook_size: N.
        levels: L.
        mode: "prefix" (Eq. 1) or "level" (level-wise ablation).
        table_cap: max rows of a level's table before its ids are taken modulo a prime (None: never).
    """

    codebook_size: int = 64
    levels: int = 4
    mode: str = "prefix"
    table_cap: int | None = None

    def __post_init__(self) -> None:
        check(self.codebook_size >= 2, f"codebook_size must be >= 2, got {self.codebook_size}")
        check(self.levels >= 1, f"levels must be >= 1, got {self.levels}")
        check(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        check(self.table_cap is None or self.table_cap >= 2, f"table_cap must be >= 2 or None, got {self.table_cap}")
        if self.mode == "prefix":
            check(self.codebook_size**self.levels < 2**62, f"N^L = {self.codebook_size}^{self.levels} does not fit int64 prefix ids")

    def id_space(self, level: int) -> int:
        """Distinct ids of 0-based ``level`` before hashing: N^(level+1) for prefix, N for level-wise."""
        return self.codebook_size ** (level + 1) if self.mode == "prefix" else self.codebook_size

    def hashed(self, level: int) -> bool:
        return self.table_cap is not None and self.id_space(level) > self.table_cap

    @property
    def rows(self) -> tuple[int, ...]:
        """Rows of each level's id range, the unknown row excluded (``level_rows``)."""
        return level_rows(self.codebook_size, self.levels, self.mode, self.table_cap)

    @property
    def table_sizes(self) -> tuple[int, ...]:
        """Rows each level's table needs, including the last row reserved for unknown codes."""
        return tuple(r + 1 for r in self.rows)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start row of each level in one concatenated table (see ``flat_ids``)."""
        sizes = self.table_sizes
        return tuple(int(sum(sizes[:lv])) for lv in range(self.levels))

    def unknown_id(self, level: int) -> int:
        return self.table_sizes[level] - 1

    def ids(self, codes: np.ndarray) -> np.ndarray:
        """Per-level table row ids (n, L) int64; level l's ids lie in [0, table_sizes[l]).

        Args:
            codes: (n, L) ints in [0, N), or UNKNOWN_CODE; anything else is a DataError
                (a code file is checked here; the ranker's ``row_ids_torch`` maps it to unknown).
        """
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.levels:
            raise DataError(f"expected codes of shape (n, {self.levels}), got {codes.shape}", table="codes")
        codes = codes.astype(np.int64)
        unknown = codes == UNKNOWN_CODE
        bad = ~unknown & ((codes < 0) | (codes >= self.codebook_size))
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(f"code out of range [0, {self.codebook_size})", table="codes", column=f"c{col + 1}", row=row, value=int(codes[row, col]))
        if self.mode == "prefix":
            raw = prefix_ids(np.where(unknown, 0, codes), self.codebook_size)
            unknown = np.logical_or.accumulate(unknown, axis=1)  # an unknown prefix makes the path unknown
        else:
            raw = np.where(unknown, 0, codes)
        rows = np.asarray(self.rows, dtype=np.int64)
        return np.where(unknown, rows, raw % rows)  # (n, L)

    def ids_torch(self, codes: torch.Tensor) -> torch.Tensor:
        """The same ids on a tensor (in the graph); out-of-range codes count as unknown."""
        import torch

        return row_ids_torch(codes, self.codebook_size, torch.tensor(self.rows, dtype=torch.int64), self.mode)

    def flat_ids(self, codes: np.ndarray) -> np.ndarray:
        """``ids`` shifted by ``offsets``: rows of one table of sum(table_sizes) rows."""
        return self.ids(codes) + np.asarray(self.offsets, dtype=np.int64)

    def collision_rates(self, codes: np.ndarray) -> list[float]:
        """Per level, the share of distinct ids that share a table row with another distinct id.

        0 for levels that are not hashed (ids are exact); unknown codes are ignored.
        """
        codes = np.asarray(codes, dtype=np.int64)
        codes = codes[(codes != UNKNOWN_CODE).all(axis=1)]
        raw = prefix_ids(codes, self.codebook_size) if self.mode == "prefix" else codes
        rates = []
        for level, n_rows in enumerate(self.rows):
            distinct = np.unique(raw[:, level])
            if not self.hashed(level) or len(distinct) == 0:
                rates.append(0.0)
                continue
            _, inverse, counts = np.unique(distinct % n_rows, return_inverse=True, return_counts=True)
            rates.append(float((counts[inverse.reshape(-1)] > 1).sum() / len(distinct)))  # inverse (n_distinct,)
        return rates
