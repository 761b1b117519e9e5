"""Metrics as pure numpy functions: AUC, GAUC, logloss, cold-start buckets, purity and NMI.

Each optimised function has a plain reference implementation (``*_reference``) that the
tests compare against on small, hand-checkable examples.

Example:
    >>> from fluidrec.metrics import auc, gauc, logloss
    >>> auc(np.array([0, 1, 1]), np.array([0.1, 0.8, 0.3]))
    1.0
"""

from fluidrec.metrics.auc import auc, auc_reference
from fluidrec.metrics.buckets import AGE_BUCKETS, BUCKET_NAMES, bucket_masks
from fluidrec.metrics.clustering import nmi, prefix_labels, purity
from fluidrec.metrics.gauc import gauc, gauc_reference
from fluidrec.metrics.logloss import logloss

__all__ = [
    "AGE_BUCKETS",
    "BUCKET_NAMES",
    "auc",
    "auc_reference",
    "bucket_masks",
    "gauc",
    "gauc_reference",
    "logloss",
    "nmi",
    "prefix_labels",
    "purity",
]
