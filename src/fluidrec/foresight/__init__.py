"""Foresight: segment semantic IDs, next-Sid prediction and foresight features in a multi-task
ranker (live_foresight_sid.txt), built on fluidrec's world, encoder, codes and metrics.

Pipeline: 30-s segments -> LSA embeddings -> flat K-Means Sids (``segments``) -> per-author
RLE sequences in event time (``sequences``, ``rle``) -> next-Sid encoder-decoder (``model``,
``train``) vs the rules (``baselines``) -> stop-gradient I/D features in an MMoE ranker
(``mmoe``, ``ranker``) -> replay A/B (``ab``) -> report (``run``, ``report``, ``figures``).

Example:
    >>> from fluidrec.foresight import foresight_config, reproduce_foresight
    >>> results = reproduce_foresight(foresight_config("small", seed=0), Path("runs/foresight"))
"""

from fluidrec.utils.lazy import lazy_exports

# Imported on first use: `fluidrec --help` must not pay for torch.
_EXPORTS = {"ForesightConfig": "config", "NextSidConfig": "config", "RankerConfig": "config", "foresight_config": "config", "reproduce_foresight": "run"}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
