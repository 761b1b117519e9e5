"""Semantic codes (LUCID) for ID-free ranking, after fluid.txt 3.2-3.3.

- ``RQKMeans``: residual k-means (faiss training, batched GEMM encode), save/load.
- ``code_quality``: per-level error, utilisation, perplexity; collisions of full codes;
  ``code_truth_quality`` / ``topic_paths``: purity and NMI of code prefixes against a
  dataset's true topic path.
- ``RoomCodeTracker`` / ``room_codes`` / ``room_codes_for_dataset``: causal per-level
  majority vote over a room's slices (room LUCID); ``UNKNOWN_CODE`` (-1) where a room
  has no coded slice yet.
- ``NgramSpec`` / ``prefix_ids`` / ``row_ids_torch``: the one home of prefix n-gram (Eq. 1)
  and level-wise ids (numpy and in-graph torch, the same rule), taken modulo a prime in
  each level's own table when it would exceed a cap; the last row of every table is
  reserved for ``UNKNOWN_CODE``; ``hash_ids`` hashes raw ids (users, authors).
- ``flat_codebook``: one-level codebook for segment Sids (N up to 20,000).
- ``oracle_codes`` / ``write_oracle_codes``: true-topic codes (child index within the
  parent at each level) from a dataset's ground-truth topic path, the encoder yardstick.
- ``fluidrec.codes.io``: code files (``write_codes``, ``read_codes``, ``read_room_codes``).

Example:
    >>> from fluidrec.codes import RQKMeans, NgramSpec
    >>> model = RQKMeans(levels=4, codebook_size=64, seed=0).fit(z)
    >>> ids = NgramSpec(64, 4).ids(model.encode(z))    # (n, 4) embedding-row ids
"""

from fluidrec.utils.lazy import lazy_exports

# Public names and the submodule each lives in. Loaded on first use (PEP 562), so that
# `fluidrec --help` and torch-free commands do not pay for importing torch.
_EXPORTS = {
    "flat_codebook": "flat",
    "read_codes": "io",
    "read_room_codes": "io",
    "write_codes": "io",
    "write_room_codes": "io",
    "NgramSpec": "ngram",
    "hash_ids": "ngram",
    "level_rows": "ngram",
    "prefix_ids": "ngram",
    "row_ids_torch": "ngram",
    "prefix_ids_reference": "ngram",
    "OracleCodes": "oracle",
    "child_codes": "oracle",
    "oracle_codes": "oracle",
    "write_oracle_codes": "oracle",
    "CodeQuality": "quality",
    "LevelQuality": "quality",
    "code_quality": "quality",
    "code_truth_quality": "quality",
    "topic_paths": "quality",
    "collision_stats": "quality",
    "usage_stats": "quality",
    "UNKNOWN_CODE": "rooms",
    "RoomCodes": "rooms",
    "RoomCodeTracker": "rooms",
    "room_codes": "rooms",
    "room_codes_for_dataset": "rooms",
    "room_codes_reference": "rooms",
    "RQKMeans": "rqkmeans",
    "RQKMeansConfig": "rqkmeans",
    "encode_reference": "rqkmeans",
    "validate_vectors": "rqkmeans",
}


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "UNKNOWN_CODE",
    "CodeQuality",
    "LevelQuality",
    "NgramSpec",
    "OracleCodes",
    "RQKMeans",
    "RQKMeansConfig",
    "RoomCodeTracker",
    "RoomCodes",
    "child_codes",
    "code_quality",
    "code_truth_quality",
    "collision_stats",
    "encode_reference",
    "flat_codebook",
    "hash_ids",
    "level_rows",
    "oracle_codes",
    "prefix_ids",
    "row_ids_torch",
    "prefix_ids_reference",
    "read_codes",
    "read_room_codes",
    "room_codes",
    "room_codes_for_dataset",
    "room_codes_reference",
    "topic_paths",
    "usage_stats",
    "validate_vectors",
    "write_codes",
    "write_oracle_codes",
    "write_room_codes",
]
