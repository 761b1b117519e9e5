"""Semantic codes (LUCID) for ID-free ranking, after fluid.txt 3.2-3.3.

- ``RQKMeans``: residual k-means (faiss training, batched GEMM encode), save/load.
- ``code_quality``: per-level error, utilisation, perplexity; collisions of full codes.
- ``RoomCodeTracker`` / ``room_codes`` / ``room_codes_for_dataset``: causal per-level
  majority vote over a room's slices (room LUCID); ``UNKNOWN_CODE`` (-1) where a room
  has no coded slice yet.
- ``NgramSpec`` / ``prefix_ids``: prefix n-gram (Eq. 1) or level-wise ids, hashed into
  each level's own table when it would exceed a cap; the last row of every table is
  reserved for ``UNKNOWN_CODE``.
- ``flat_codebook``: one-level codebook for segment Sids (N up to 20,000).
- ``fluidrec.codes.io``: code files (``write_codes``, ``read_codes``, ``read_room_codes``).

Example:
    >>> from fluidrec.codes import RQKMeans, NgramSpec
    >>> model = RQKMeans(levels=4, codebook_size=64, seed=0).fit(z)
    >>> ids = NgramSpec(64, 4).ids(model.encode(z))    # (n, 4) embedding-row ids
"""

from fluidrec.codes.flat import flat_codebook
from fluidrec.codes.io import read_codes, read_room_codes, write_codes, write_room_codes
from fluidrec.codes.ngram import NgramSpec, hash_ids, prefix_ids, prefix_ids_reference
from fluidrec.codes.quality import CodeQuality, LevelQuality, code_quality, collision_stats, usage_stats
from fluidrec.codes.rooms import UNKNOWN_CODE, RoomCodes, RoomCodeTracker, room_codes, room_codes_for_dataset, room_codes_reference
from fluidrec.codes.rqkmeans import RQKMeans, RQKMeansConfig, encode_reference, validate_vectors

__all__ = [
    "UNKNOWN_CODE",
    "CodeQuality",
    "LevelQuality",
    "NgramSpec",
    "RQKMeans",
    "RQKMeansConfig",
    "RoomCodeTracker",
    "RoomCodes",
    "code_quality",
    "collision_stats",
    "encode_reference",
    "flat_codebook",
    "hash_ids",
    "prefix_ids",
    "prefix_ids_reference",
    "read_codes",
    "read_room_codes",
    "room_codes",
    "room_codes_for_dataset",
    "room_codes_reference",
    "usage_stats",
    "validate_vectors",
    "write_codes",
    "write_room_codes",
]
