"""Code -> embedding-row ids: prefix n-gram (fluid.txt Eq. 1) and level-wise ids, with hashing.

Prefix n-gram: level l's id is the path from the root, ``cbar_l = sum_{k<=l} c_k N^(l-k)``
(0-based levels in code: ``cbar_l = cbar_{l-1} * N + c_l``), so the same c_l under different
prefixes gets different rows. Level-wise (the ablation): level l's id is just c_l.

Each level has its own table. When a level's id space (N^l for prefix ids) exceeds
``table_cap`` its ids are hashed into ``[0, table_cap)`` of *that level's* table (never
into another level's range); ``flat_ids`` adds per-level offsets for one concatenated table.
Every table has one extra last row for ``UNKNOWN_CODE`` (a room with no coded slice yet):
any unknown code at a level (or, for prefix ids, in its prefix) maps to that row.

Shapes: n items, L levels, N codebook size.

Example:
    >>> spec = NgramSpec(codebook_size=64, levels=4, table_cap=1_000_000)
    >>> spec.table_sizes          # rows per level, unknown row included
    (65, 4097, 262145, 1000001)
    >>> ids = spec.ids(codes)     # (n, 4) int64, ids[:, l] < spec.table_sizes[l]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fluidrec.codes.rooms import UNKNOWN_CODE
from fluidrec.errors import DataError, check

MODES = ("prefix", "level")
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


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


def hash_ids(ids: np.ndarray, buckets: int, level: int, seed: int = 0) -> np.ndarray:
    """Hash int64 ids into [0, buckets) with a per-level splitmix64 (deterministic, no Python hash)."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + _GOLDEN * np.uint64(level + 1 + 1000 * seed)
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
        table_cap: max rows of a level's table before its ids are hashed (None: never hash).
        seed: hash seed.
    """

    codebook_size: int = 64
    levels: int = 4
    mode: str = "prefix"
    table_cap: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.codebook_size >= 2, f"codebook_size must be >= 2, got {self.codebook_size}")
        check(self.levels >= 1, f"levels must be >= 1, got {self.levels}")
        check(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        check(self.table_cap is None or self.table_cap >= 1, f"table_cap must be >= 1 or None, got {self.table_cap}")
        if self.mode == "prefix":
            check(self.codebook_size**self.levels < 2**62, f"N^L = {self.codebook_size}^{self.levels} does not fit int64 prefix ids")

    def id_space(self, level: int) -> int:
        """Distinct ids of 0-based ``level`` before hashing: N^(level+1) for prefix, N for level-wise."""
        return self.codebook_size ** (level + 1) if self.mode == "prefix" else self.codebook_size

    def hashed(self, level: int) -> bool:
        return self.table_cap is not None and self.id_space(level) > self.table_cap

    @property
    def table_sizes(self) -> tuple[int, ...]:
        """Rows each level's table needs, including the last row reserved for unknown codes."""
        return tuple((self.table_cap if self.hashed(lv) else self.id_space(lv)) + 1 for lv in range(self.levels))

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
            codes: (n, L) ints in [0, N), or UNKNOWN_CODE.
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
        out = np.empty_like(raw)
        for level in range(self.levels):
            col = hash_ids(raw[:, level], self.table_cap, level, self.seed) if self.hashed(level) else raw[:, level]
            out[:, level] = np.where(unknown[:, level], self.unknown_id(level), col)
        return out

    def flat_ids(self, codes: np.ndarray) -> np.ndarray:
        """``ids`` shifted by ``offsets``: rows of one table of sum(table_sizes) rows."""
        return self.ids(codes) + np.asarray(self.offsets, dtype=np.int64)

    def collision_rates(self, codes: np.ndarray) -> list[float]:
        """Per level, the share of distinct ids that share a table row with another distinct id.

        0 for levels that are not hashed (ids are exact); unknown codes are ignored.
        """
        codes = np.asarray(codes, dtype=np.int64)
        known = (codes != UNKNOWN_CODE).all(axis=1)
        codes = codes[known]
        if self.mode == "prefix":
            raw = prefix_ids(codes, self.codebook_size)
        else:
            raw = codes
        rates = []
        for level in range(self.levels):
            distinct = np.unique(raw[:, level])
            if not self.hashed(level) or len(distinct) == 0:
                rates.append(0.0)
                continue
            rows = hash_ids(distinct, self.table_cap, level, self.seed)
            _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
            rates.append(float((counts[inverse.reshape(-1)] > 1).sum() / len(distinct)))
        return rates
