"""The typed ``Batch`` the ranker consumes (ids hash with ``fluidrec.codes.ngram.hash_ids``).

Shape letters: B batch, H distinct histories, K history length, L code levels, P profile columns.

All rows of one request (a slate of ~6 rooms in training, ~200 candidates when serving)
belong to one user at one time, so they share one history. A Batch may store each
distinct history once (``hist_codes`` (H, K, L), ``hist_mask`` (H, K)) and say which
one each row reads (``hist_group`` (B,)); the tokenizer then embeds H histories instead
of B. ``hist_group=None`` (the default) means one history per row, H = B.

Example:
    >>> batch = features.batch(slice(0, 1024)).to("cpu")
    >>> batch.slice_codes.shape      # (B, L)
    >>> batch.hist_codes.shape       # (H, K, L), H <= B distinct histories
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fluidrec.data.schema import LABELS_BINARY

# Room-age edges (minutes) of the context token's age bucket: 8 buckets, finer where rooms are young.
AGE_EDGES_MIN = (2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
MAX_POSITION = 63  # positions above share one embedding row
PROFILE_VOCAB = 64  # each profile column is clipped to [0, PROFILE_VOCAB)


def age_bucket(age_min: np.ndarray) -> np.ndarray:
    """Room age (minutes) -> context bucket 0..len(AGE_EDGES_MIN)."""
    return np.searchsorted(np.asarray(AGE_EDGES_MIN), np.asarray(age_min), side="right").astype(np.int64)


@dataclasses.dataclass
class Batch:
    """One batch of impressions, already indexed for the embedding tables.

    Attributes:
        user: (B,) hashed user index.
        profile: (B, P) user profile columns.
        hour: (B,) hour of day 0..23.
        position: (B,) slot position, clipped to MAX_POSITION.
        age_bucket: (B,) room age bucket (see AGE_EDGES_MIN).
        age_min: (B,) float room age in minutes (diagnostics only).
        exposure: (B,) float impressions of this room before this one (gate side info).
        author: (B,) hashed author index.
        item: (B,) room index into the item-ID table (0 = unknown room).
        slice_codes: (B, L) slice LUCID.
        room_codes: (B, L) room LUCID (causal majority vote).
        hist_codes: (H, K, L) slice codes of the user's last K clicks (earlier events only).
        hist_mask: (H, K) True where a history slot is filled.
        labels: task name -> (B,) float 0/1; empty when scoring.
        hist_group: (B,) int64, row b's history is ``hist_codes[hist_group[b]]``; None: H = B,
            row b's history is row b. Whoever replaces ``hist_codes``/``hist_mask`` by
            per-row histories must set this back to None (``with_row_histories`` does).
    """

    user: torch.Tensor
    profile: torch.Tensor
    hour: torch.Tensor
    position: torch.Tensor
    age_bucket: torch.Tensor
    age_min: torch.Tensor
    exposure: torch.Tensor
    author: torch.Tensor
    item: torch.Tensor
    slice_codes: torch.Tensor
    room_codes: torch.Tensor
    hist_codes: torch.Tensor
    hist_mask: torch.Tensor
    labels: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    hist_group: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def to(self, device: str | torch.device) -> Batch:
        """A copy with every tensor on ``device``."""
        moved = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "labels":
                moved[f.name] = None if v is None else v.to(device)
        return Batch(**moved, labels={k: v.to(device) for k, v in self.labels.items()})

    def row_histories(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, L) codes and (B, K) mask of each row's history, shared or not."""
        if self.hist_group is None:
            return self.hist_codes, self.hist_mask
        return self.hist_codes[self.hist_group], self.hist_mask[self.hist_group]  # (B, K, L), (B, K)

    def with_row_histories(self) -> Batch:
        """The same batch with one history per row (hist_group None): the plain layout."""
        if self.hist_group is None:
            return self
        codes, mask = self.row_histories()
        return dataclasses.replace(self, hist_codes=codes, hist_mask=mask, hist_group=None)

    def with_shared_histories(self) -> Batch:
        """The same batch with each run of consecutive rows of identical history stored once.

        Identical means equal codes and mask in every slot (padding included), so the
        result scores exactly like ``self``; a batch without such runs comes back as it is.
        """
        if self.hist_group is not None or len(self) < 2:
            return self
        codes, mask = self.hist_codes, self.hist_mask
        differs = (codes[1:] != codes[:-1]).flatten(1).any(1) | (mask[1:] != mask[:-1]).any(1)  # (B-1,)
        if bool(differs.all()):
            return self
        starts = torch.cat([differs.new_ones(1), differs])  # (B,) row opens a new history
        group = starts.cumsum(0) - 1  # (B,) index of the row's history among the H kept
        return dataclasses.replace(self, hist_codes=codes[starts], hist_mask=mask[starts], hist_group=group)

    @classmethod
    def from_numpy(cls, arrays: dict[str, np.ndarray], labels: np.ndarray | None = None) -> Batch:
        """Build from numpy arrays named like the fields; ``labels`` is (B, 5) in LABELS_BINARY order."""
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        lab = {}
        if labels is not None:
            lab_t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))
            lab = {name: lab_t[:, i] for i, name in enumerate(LABELS_BINARY)}
        return cls(**t, labels=lab)
