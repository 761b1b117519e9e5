"""A trained token ranker as an arm of the closed-loop A/B test: it scores live rooms with
its users' histories as they grow in its own copy of the world, and keeps training online
on the impressions it served, with the optimizers of online training.

Example:
    >>> arm = RankerArm.from_run("runs/demo/rankers/fluid/model.pt", "runs/demo/world", features, codes, ranker_demo())
    >>> arm.score(cands)
"""

from __future__ import annotations

import numpy as np
import torch

from fluidrec.data.schema import LABELS_BINARY
from fluidrec.simulate.ab import Candidates
from fluidrec.simulate.closed_loop import Served
from fluidrec.utils.lookup import sorted_lookup

SCORE_BATCH = 8192


class UserHistory:
    """The slice codes of each user's last K clicks, newest first, updated as clicks happen."""

    def __init__(self, user_ids: np.ndarray, k: int, levels: int) -> None:
        self.user_ids = np.unique(np.asarray(user_ids, np.int64))
        self.codes = np.zeros((len(self.user_ids), k, levels), np.int64)  # (U, K, L)
        self.length = np.zeros(len(self.user_ids), np.int64)  # (U,)

    @classmethod
    def before_test(cls, features, k: int) -> UserHistory:
        """Each user's last ``k`` clicks of the training period (the state when the test begins)."""
        hist = cls(features.user_id, k, features.levels)
        rows = np.flatnonzero(features.labels[: features.n_train, LABELS_BINARY.index("click")] == 1)
        user = hist.index(features.user_id[rows])
        order = np.lexsort((-rows, user))  # by user, newest first
        user, rows = user[order], rows[order]
        starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
        rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        keep = rank < k
        hist.codes[user[keep], rank[keep]] = features.slice_codes[rows[keep]]
        np.maximum.at(hist.length, user[keep], rank[keep] + 1)
        return hist

    def index(self, user_ids: np.ndarray) -> np.ndarray:
        pos, found = sorted_lookup(self.user_ids, user_ids)
        if not found.all():
            raise ValueError("history asked for users it does not know")
        return pos

    def of(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, K, L) codes and (n, K) mask of the users' current histories."""
        i = self.index(user_ids)
        k = self.codes.shape[1]
        return self.codes[i], np.arange(k)[None, :] < self.length[i][:, None]

    def push(self, user_ids: np.ndarray, codes: np.ndarray) -> None:
        """Add clicks, given in time order: each becomes its user's newest entry."""
        for u, c in zip(self.index(np.asarray(user_ids, np.int64)), codes):
            self.codes[u, 1:] = self.codes[u, :-1]
            self.codes[u, 0] = c
            self.length[u] = min(self.length[u] + 1, self.codes.shape[1])


class RankerArm:
    """A trained ranker that scores by click probability and learns from its own impressions."""

    def __init__(self, model, ctx, codes, history: UserHistory, exposure: dict[int, int], train_cfg, learn: bool = True) -> None:
        from fluidrec.ranker.train import make_optimizers

        self.model, self.ctx, self.codes, self.history = model, ctx, codes, history
        self.exposure = exposure
        self.cfg = train_cfg
        self.learning = learn
        self.opts = make_optimizers(model, train_cfg) if learn else []
        self.steps = 0

    @classmethod
    def from_run(cls, model_path, dataset_dir, features, codes, train_cfg, learn: bool = True) -> RankerArm:
        """Load a trained arm; histories and room exposure start from the training log."""
        from fluidrec.ranker.evaluate import ScoringContext
        from fluidrec.ranker.model import load_checkpoint

        model = load_checkpoint(model_path)
        ctx = ScoringContext.from_dataset(dataset_dir, model)
        history = UserHistory.before_test(features, model.spec.tokenizer.history_len)
        rooms, counts = np.unique(features.room_id[: features.n_train], return_counts=True)
        return cls(model, ctx, codes, history, dict(zip(rooms.tolist(), counts.tolist())), train_cfg, learn)

    def _batch(self, c: Candidates, position):
        sc = self.codes.of(c.slice_id)  # (n, L)
        rc = self.codes.room_code(c.slice_id)  # (n, L)
        exposure = np.array([self.exposure.get(r, 0) for r in c.room_id.tolist()], np.float32)
        batch = self.ctx.make_batch(self.model, c.user_id, c.room_id, sc, rc, c.ts, position, exposure=exposure)
        hist, mask = self.history.of(c.user_id)
        batch.hist_codes = torch.from_numpy(hist)  # (n, K, L): one history per row
        batch.hist_mask = torch.from_numpy(mask)
        batch.hist_group = None  # so rows read their own history, not a shared one
        return batch

    def score(self, c: Candidates) -> np.ndarray:
        from fluidrec.ranker.evaluate import score

        out = np.empty(len(c))
        for b0 in range(0, len(c), SCORE_BATCH):
            rows = np.arange(b0, min(b0 + SCORE_BATCH, len(c)))
            out[rows] = score(self.model, self._batch(c.take(rows), 0))["click"]
        return out

    def learn(self, served: Served) -> None:
        """Train on the served impressions (one pass, online batch size), then update user state."""
        from fluidrec.ranker.train import update_step

        c = served.cands
        if self.learning and len(c):
            self.model.train()
            labels = np.stack([served.labels[k] for k in LABELS_BINARY], axis=1).astype(np.float32)  # (n, 5)
            for b0 in range(0, len(c), self.cfg.batch_size):
                rows = np.arange(b0, min(b0 + self.cfg.batch_size, len(c)))
                batch = self._batch(c.take(rows), served.position[rows])
                batch.labels = {k: torch.from_numpy(labels[rows, i]) for i, k in enumerate(LABELS_BINARY)}
                update_step(self.model, batch, self.opts)
                self.steps += 1
        for r in c.room_id.tolist():
            self.exposure[r] = self.exposure.get(r, 0) + 1
        clicked = served.labels["click"].astype(bool)
        self.history.push(c.user_id[clicked], self.codes.of(c.slice_id[clicked]))
