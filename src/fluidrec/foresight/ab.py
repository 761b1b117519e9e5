"""Table 2 analog: a replay A/B of the ranker arms against the world's ground truth.

Held-out test-day requests (user, time) are replayed: ``simulate.ab.build_candidates`` lists
the rooms live at each request, every arm scores them, ``simulate.ab.rank_slates`` shows its
top ``slate``, and the world draws every label from one fixed uniform vector per candidate
(``World.labels_from_uniforms``: common random numbers, so arms differ only in what they
show). Metrics are per-user totals compared with ``simulate.metrics.paired_bootstrap``
(relative change and 95 % CI over users). Exposure, the paper's first column, is fixed by
construction in a replay (every request shows ``slate`` rooms), so it is not reported.

Ranking score of an arm: the sum of its four predicted probabilities (one fixed rule for
every arm).

Example:
    >>> table2 = run_foresight_ab(world, requests, scorers, slate=6, max_candidates=50, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from fluidrec.simulate.ab import Candidates, build_candidates, rank_slates
from fluidrec.simulate.metrics import paired_bootstrap

METRICS = ("watch_count", "watch_time", "like", "follow", "gift_count", "gift_users")


def _per_user(user_index: np.ndarray, n_users: int, labels: dict[str, np.ndarray], shown: np.ndarray) -> dict[str, np.ndarray]:
    def total(x: np.ndarray) -> np.ndarray:
        return np.bincount(user_index, weights=np.where(shown, x, 0).astype(np.float64), minlength=n_users)

    gifts = total(labels["gift"])
    return {"watch_count": total(labels["click"]), "watch_time": total(labels["watch_s"]), "like": total(labels["like"]),
            "follow": total(labels["follow"]), "gift_count": gifts, "gift_users": (gifts > 0).astype(np.float64)}


def run_foresight_ab(world, requests: tuple[np.ndarray, np.ndarray], scorers: Mapping[str, Callable[[Candidates], np.ndarray]], *,
                     slate: int, max_candidates: int, seed: int, control: str = "base", n_boot: int = 1000) -> dict:
    """Replay ``requests`` under every scorer; returns totals and deltas vs ``control`` with CIs."""
    rng = np.random.default_rng([seed, 0xAB])
    cands = build_candidates(world, requests[0], requests[1], max_candidates, rng)
    u = rng.random((len(cands), 5))  # one fixed draw per candidate and label (common random numbers)
    users, user_index = np.unique(cands.user_id, return_inverse=True)
    per_user = {}
    for arm, scorer in scorers.items():
        position = rank_slates(np.asarray(scorer(cands), float), cands.request, slate)
        shown = position >= 0
        labels = world.labels_from_uniforms(cands.user_id, cands.room_id, cands.ts, np.maximum(position, 0), u)
        per_user[arm] = _per_user(user_index, len(users), labels, shown)
    arms = {arm: {m: paired_bootstrap(per_user[arm][m], per_user[control][m], n_boot=n_boot, seed=seed) for m in METRICS}
            for arm in scorers if arm != control}
    totals = {arm: {m: float(v.sum()) for m, v in d.items()} for arm, d in per_user.items()}
    return {"n_requests": int(len(requests[0])), "n_candidates": int(len(cands)), "n_users": int(len(users)), "control": control,
            "totals": totals, "arms": arms}
