"""Next-Sid scoring of live authors at each tick, from the event-time store.

Shape letters: B batch (authors scored), l context entries, N codebook size.

``LiveScorer`` keeps the last prediction of every author beside the store's segment count
at the time it was computed. At a tick it forwards, in one batch, only the asked authors
whose count has moved since (a new segment, even one that only lengthens the last run,
is a new model input: the run length is an input and the recency slots shift); every
other author's cached prediction is still exact. ``predict_from_log`` is the baseline
without a store (recompute every context from the log, forward every author); the tests
check both give identical predictions at every tick.

Example:
    >>> store = SidStore(end_ts, author, sids, l=cfg.context)
    >>> scorer = LiveScorer(model, store)
    >>> store.advance(t)
    >>> next_sid = scorer.score(live_authors)        # (B,) predicted next Sid
"""

from __future__ import annotations

import numpy as np
import torch

from fluidrec.foresight.model import NextSidModel, to_tensors
from fluidrec.foresight.sequences import Contexts, SidStore, TimeOrderedLog


@torch.inference_mode()
def predict_next(model: NextSidModel, ctx: Contexts) -> np.ndarray:
    """(B,) the model's top-1 next Sid for each context (one batched forward)."""
    if len(ctx.values) == 0:
        return np.zeros(0, np.int64)
    return model(*to_tensors(ctx.values, ctx.runs, ctx.mask)).logits.argmax(1).numpy()  # (B, N) -> (B,)


class LiveScorer:
    """Cached next-Sid predictions over a ``SidStore``; forwards only changed authors.

    Args:
        model: the next-Sid model (eval mode).
        store: the event-time store the caller advances.

    ``forwarded`` is how many authors the last ``score`` call ran through the model.
    """

    def __init__(self, model: NextSidModel, store: SidStore) -> None:
        self.model = model.eval()
        self.store = store
        self._pred = np.zeros(store.n_authors, np.int64)
        self._seen = np.full(store.n_authors, -1, np.int64)  # store.count when _pred was computed
        self.forwarded = 0

    def score(self, authors: np.ndarray) -> np.ndarray:
        """(B,) predicted next Sid of each author at the store's current time."""
        authors = np.asarray(authors, np.int64)
        stale = np.unique(authors[self._seen[authors] != self.store.count[authors]])
        self.forwarded = len(stale)
        if len(stale):
            self._pred[stale] = predict_next(self.model, self.store.contexts(stale))
            self._seen[stale] = self.store.count[stale]
        return self._pred[authors].copy()


def predict_from_log(model: NextSidModel, log: TimeOrderedLog, authors: np.ndarray, t: int, l: int) -> np.ndarray:
    """The baseline: (B,) predictions from contexts recomputed from the log at ``t``."""
    return predict_next(model, log.contexts(authors, t, l))
