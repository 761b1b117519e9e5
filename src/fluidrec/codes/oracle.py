"""True-topic codes: slice and room codes read from a dataset's ground-truth topic path.

The yardstick that separates what the encoder loses from what the ranker loses
(``shared/DESIGN.md``, "Yardsticks"): a ranker trained on these codes sees the content
exactly as the world made it, so the gap to it is the encoder's + quantiser's loss.

**Representation.** The code at level l is the node's *child index within its parent*, in
``[0, N)`` with one ``N`` for all levels (the largest branching factor). The ranker's
prefix n-gram ids (``fluidrec.codes.ngram.prefix_ids``, ``fluidrec.ranker.tokens``) are
``cbar_l = cbar_{l-1} * N + c_l``: base-N digits, so with child indices two slices share
the level-l row exactly when they share the true level-l ancestor, i.e. the prefix id *is*
the taxonomy path, in a compact table (N = 8 for the default world: 8, 64, 512, 4096
rows). The taxonomy's global node ids (``topic_l*``, ``parent * b_l + child``) would not
do: they exceed any small N (N = 192 gives 192^4 rows, hashed and colliding), and the
level-wise ablation (``mode="level"``) would then see the true node at every level, which
learned RQ codes never give it. Like learned codes, a child index means nothing without
its prefix, and the room code's per-level vote counts child indices across parents just as
it counts RQ codewords across first-level cells.

- Synthetic worlds (``manifest["world_config"]["branching"]`` known): ``c_l = topic_l % b_l``,
  checked against the tree (``topic_l // b_l == topic_(l-1)``).
- Other datasets with topic columns (tagged real data, dense ids per level): ``c_l`` is the
  rank of the value among the distinct values seen under the same parent path (``-1`` at a
  deeper level is one more value). Slices whose ``topic_l1`` is ``-1`` get no code.

Room codes are the causal per-level majority vote over these slice codes
(``room_codes_for_dataset``), as for learned codes.

Shapes: n slices, L levels (4), N codebook size.

Example:
    >>> oc = oracle_codes("runs/world_small")
    >>> oc.codes.shape, oc.num_codes                    # ((n_slices, 4), 8)
    >>> write_oracle_codes("runs/world_small", "runs/oracle_codes")   # slice_codes.parquet, room_codes.parquet
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fluidrec.errors import DataError, UsageError

SLICE_CODES_FILE = "slice_codes.parquet"
ROOM_CODES_FILE = "room_codes.parquet"


class OracleCodes(NamedTuple):
    """Slice codes from the topic path (unpacks as ``slice_ids, codes, num_codes``).

    Attributes:
        slice_ids: (n,) int64 slices with a known topic (live slices and short videos).
        codes: (n, L) int32 child index within the parent at each level, in [0, num_codes).
        num_codes: N, the codebook size shared by all levels.
    """

    slice_ids: np.ndarray
    codes: np.ndarray
    num_codes: int


def child_codes(topics: np.ndarray, branching: Sequence[int] | None = None, *, source: str = "slices") -> tuple[np.ndarray, int]:
    """Topic ids (n, L) -> (child-index codes (n, L) int32, N).

    Args:
        topics: (n, L) per-level topic ids, all known (>= 0 at level 1).
        branching: children per node at each level when the ids are a tree's global ids
            (``id_l = id_(l-1) * branching[l] + child``, the world taxonomy); None ranks the
            distinct values under each parent path instead.
        source: table name for error messages.

    Returns:
        codes and N = max(branching) (or the most children any parent has, at least 2).

    Example:
        >>> child_codes(np.array([[1, 5], [0, 1]]), branching=(2, 4))[0].tolist()   # 5 = 1 * 4 + 1
        [[1, 1], [0, 1]]
        >>> child_codes(np.array([[7, 30], [7, 12], [3, 12]]))[0].tolist()           # ranks per parent
        [[1, 1], [1, 0], [0, 0]]
    """
    topics = np.asarray(topics, dtype=np.int64)
    if topics.ndim != 2:
        raise DataError(f"expected topics of shape (n, L), got {topics.shape}", table=source)
    n, levels = topics.shape
    codes = np.empty((n, levels), dtype=np.int32)
    if branching is not None:
        b = [int(x) for x in branching]
        if len(b) != levels:
            raise DataError(f"branching has {len(b)} levels, the topics {levels}", table=source)
        for lv in range(levels):
            col = topics[:, lv]
            parent_ok = (col // b[lv] == topics[:, lv - 1]) if lv else (col < b[0])
            bad = (col < 0) | ~parent_ok
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                why = f"not a child of its level-{lv} topic" if lv and col[row] >= 0 else f"not a node of the taxonomy (branching {tuple(b)})"
                raise DataError(why, table=source, column=f"topic_l{lv + 1}", row=row, value=int(col[row]))
            codes[:, lv] = col % b[lv]  # global id = parent * b_l + child (taxonomy.build_taxonomy)
        return codes, max(max(b), 2)
    path = np.zeros(n, dtype=np.int64)  # dense id of each slice's path so far
    for lv in range(levels):
        pairs = np.stack([path, topics[:, lv]], axis=1)  # (n, 2)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)  # sorted by parent, then value
        k = np.arange(len(uniq))
        first = np.r_[True, uniq[1:, 0] != uniq[:-1, 0]] if len(uniq) else np.zeros(0, bool)
        rank = k - np.maximum.accumulate(np.where(first, k, 0))
        inverse = inverse.reshape(-1)  # (n,)
        codes[:, lv] = rank[inverse]
        path = inverse
    return codes, max(int(codes.max()) + 1 if n else 0, 2)


def oracle_codes(dataset_dir: str | os.PathLike) -> OracleCodes:
    """Slice codes of every slice with a known topic path (see the module docstring).

    Args:
        dataset_dir: canonical dataset whose ``slices`` table has ``topic_l1..topic_l4``.

    Raises:
        DataError: a topic column is missing (naming the slices file and column), no slice
            has a known topic, or a topic is not in the world's taxonomy.

    Example:
        >>> slice_ids, codes, n = oracle_codes("runs/world_small")
    """
    from fluidrec.data.io import Dataset
    from fluidrec.data.schema import TOPIC_COLUMNS

    ds = Dataset(dataset_dir)
    path = str(ds.path("slices"))
    names = ds.table("slices").schema.names
    for col in TOPIC_COLUMNS:
        if col not in names:
            raise DataError("missing ground-truth topic column (this dataset has no topic path for `codes oracle`)", table=path, column=col)
    sl = ds.table("slices", ["slice_id", *TOPIC_COLUMNS])
    slice_ids = sl.column("slice_id").to_numpy().astype(np.int64)
    topics = np.stack([sl.column(c).to_numpy().astype(np.int64) for c in TOPIC_COLUMNS], axis=1)  # (n, L)
    known = topics[:, 0] >= 0
    if not known.any():
        raise DataError("no ground-truth topics (every value is -1)", table=path, column=TOPIC_COLUMNS[0])
    branching = ds.manifest.get("world_config", {}).get("branching")
    codes, num_codes = child_codes(topics[known], branching, source=path)
    return OracleCodes(slice_ids[known], codes, num_codes)


def write_oracle_codes(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``slice_codes.parquet`` and ``room_codes.parquet`` (``codes assign`` / ``codes rooms``
    formats) from the topic path, each with its ``<stem>.config.json``.

    Both are computed before either is written; each file is written atomically.

    Returns:
        a summary: paths, slice counts, levels, ``num_codes``, representation, room-code stats.

    Example:
        >>> write_oracle_codes("runs/world_small", "runs/oracle_codes")["num_codes"]
        8
    """
    from fluidrec.codes.io import write_codes, write_room_codes
    from fluidrec.codes.rooms import room_codes_for_dataset
    from fluidrec.data.io import Dataset
    from fluidrec.utils.io import write_json

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {out} exists and is not a directory")
    ds = Dataset(dataset_dir)
    oc = oracle_codes(dataset_dir)
    rc = room_codes_for_dataset(ds, oc.slice_ids, oc.codes)
    branching = ds.manifest.get("world_config", {}).get("branching")
    representation = "child index (taxonomy branching)" if branching is not None else "child rank within parent path"
    config = {"command": "codes oracle", "dataset": str(dataset_dir), "num_codes": oc.num_codes, "representation": representation}
    out.mkdir(parents=True, exist_ok=True)
    slice_path, room_path = out / SLICE_CODES_FILE, out / ROOM_CODES_FILE
    write_codes(slice_path, oc.slice_ids, oc.codes, codebook_size=oc.num_codes)
    write_json(out / "slice_codes.config.json", config)
    write_room_codes(room_path, rc.room_ids, rc.codes, codebook_size=oc.num_codes)
    write_json(out / "room_codes.config.json", {**config, "include_on_air": True})
    return {
        "slice_codes": str(slice_path),
        "room_codes": str(room_path),
        "slices": int(ds.num_rows("slices")),
        "slices_with_code": int(len(oc.slice_ids)),
        "num_codes": oc.num_codes,
        "representation": representation,
        **rc.stats,
    }
