"""The main job's simulated online A/B tests: trained ranker arms rank the rooms live
at requests of the test period, and the world's ground truth answers.

- replay (``run_online_ab``): a sample of the logged test-period requests (user, time);
  each keeps the user's logged history at that moment, and the arms are frozen.
- closed loop (``run_closed_ab``): every test-period request in event time; users are split
  between arms (or mirrored), each arm keeps training on the impressions it served and its
  users' histories grow with the clicks it caused; ``oracle`` and ``random`` arms ride along.

Arms rank by predicted click probability.
"""

from __future__ import annotations

import numpy as np
import torch

from fluidrec.experiments.config import AB_ARMS, ReproduceConfig
from fluidrec.simulate.ab import ABConfig, Candidates, WorldContext, run_ab
from fluidrec.simulate.closed_loop import ClosedLoopConfig, OracleArm, RandomArm, run_closed_loop

SCORE_BATCH = 8192


def sample_requests(features, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``n`` distinct (user, ts) requests from the test rows; returns (user_ids, ts, representative row)."""
    rows = np.arange(features.n_train, len(features))
    keys = np.stack([features.user_id[rows], features.ts[rows]], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    reps = rows[np.sort(first)]
    if len(reps) > n:
        reps = np.sort(np.random.default_rng(seed).choice(reps, size=n, replace=False))
    return features.user_id[reps].astype(np.int64), features.ts[reps].astype(np.int64), reps


def world_context(dataset_dir, features, niche_share: float) -> WorldContext:
    """Rooms, niche authors (least exposed in training) and level-2 topic tags of the slices."""
    from fluidrec.data.io import Dataset

    ds = Dataset(dataset_dir)
    rooms = ds.table("rooms", ["room_id", "author_id", "start_ts"])
    room_ids = rooms.column("room_id").to_numpy()
    room_author = rooms.column("author_id").to_numpy()
    authors = ds.numpy("authors", "author_id")
    order = np.argsort(room_ids)
    train_rooms = features.room_id[: features.n_train]
    train_authors = room_author[order][np.searchsorted(room_ids[order], train_rooms)]
    exposure = np.array([0] * len(authors))
    a_order = np.argsort(authors)
    np.add.at(exposure, a_order[np.searchsorted(authors[a_order], train_authors)], 1)
    least_first = np.lexsort((authors, exposure))
    niche = authors[least_first[: int(round(niche_share * len(authors)))]]
    slices = ds.table("slices", ["slice_id", "topic_l1", "topic_l2"])
    tag = slices.column("topic_l1").to_numpy().astype(np.int64) * 1000 + slices.column("topic_l2").to_numpy()
    return WorldContext(room_ids, rooms.column("start_ts").to_numpy(), room_author, niche, slices.column("slice_id").to_numpy(), tag)


class SliceCodeIndex:
    """Slice codes by slice id, and the room code while each live slice is on air.

    A room's code at time t is the causal vote over its slices started by t
    (``fluidrec.codes.room_codes``), so it changes only when a slice starts: the code
    while slice s is on air is the vote right after s started, computed once per slice.
    """

    def __init__(self, slice_codes_path, dataset_dir) -> None:
        from fluidrec.codes import read_codes, room_codes
        from fluidrec.data.io import Dataset

        self.ids, self.codes = read_codes(slice_codes_path)
        self.order = np.argsort(self.ids)
        sl = Dataset(dataset_dir).table("slices", ["slice_id", "room_id", "start_ts"])
        room = sl.column("room_id").to_numpy()
        live = room >= 0
        self.live_room = room[live]
        self.live_start = sl.column("start_ts").to_numpy()[live]
        self.live_codes = self.of(sl.column("slice_id").to_numpy()[live])
        self.live_ids = sl.column("slice_id").to_numpy()[live]
        self.live_order = np.argsort(self.live_ids)
        self.live_room_codes = room_codes(self.live_room, self.live_start, self.live_room, self.live_start, self.live_codes)  # (S, L)

    def of(self, slice_id: np.ndarray) -> np.ndarray:
        """(n, L) codes of the given slice ids."""
        return self.codes[self.order[np.searchsorted(self.ids[self.order], slice_id)]]

    def room_code(self, slice_id: np.ndarray) -> np.ndarray:
        """(n, L) room codes while the given live slices are on air."""
        return self.live_room_codes[self.live_order[np.searchsorted(self.live_ids[self.live_order], slice_id)]]


class ArmScorer:
    """Scores ``Candidates`` with one trained arm (click probability)."""

    def __init__(self, model_path, dataset_dir, features, codes: SliceCodeIndex, rep_rows: np.ndarray):
        from fluidrec.ranker.evaluate import ScoringContext
        from fluidrec.ranker.model import load_checkpoint

        self.model = load_checkpoint(model_path)
        self.ctx = ScoringContext.from_dataset(dataset_dir, self.model)
        self.features = features
        self.codes = codes
        self.rep_rows = rep_rows

    def __call__(self, c: Candidates) -> np.ndarray:
        from fluidrec.ranker.evaluate import score

        sc = self.codes.of(c.slice_id)  # (C, L)
        rc = self.codes.room_code(c.slice_id)  # (C, L)
        hist_rows = self.features.hist_rows[self.rep_rows[c.request]]  # (C, K)
        hist_mask = hist_rows >= 0
        hist_codes = self.features.slice_codes[np.where(hist_mask, hist_rows, 0)]  # (C, K, L)
        out = np.empty(len(c))
        for b0 in range(0, len(c), SCORE_BATCH):
            s = slice(b0, b0 + SCORE_BATCH)
            batch = self.ctx.make_batch(self.model, c.user_id[s], c.room_id[s], sc[s], rc[s], c.ts[s], 0)
            batch.hist_codes = torch.from_numpy(hist_codes[s].astype(np.int64))  # (b, K, L): one history per row
            batch.hist_mask = torch.from_numpy(hist_mask[s])
            batch.hist_group = None
            out[s] = score(self.model, batch)["click"]
        return out


def run_online_ab(cfg: ReproduceConfig, paths, features) -> dict:
    """Replay held-out requests under the baseline, +slice, -ID and FLUID arms."""
    from fluidrec.data.world import World

    world = World.load(paths.world)
    ab_cfg = ABConfig(n_requests=cfg.ab_requests, max_candidates=cfg.ab_candidates, n_boot=cfg.n_boot, seed=cfg.seed)
    users, ts, reps = sample_requests(features, ab_cfg.n_requests, cfg.seed)
    codes = SliceCodeIndex(paths.slice_codes, paths.world)
    scorers = {row: ArmScorer(paths.ranker(arm) / "model.pt", paths.world, features, codes, reps) for row, arm in AB_ARMS.items()}
    context = world_context(paths.world, features, ab_cfg.niche_share)
    return run_ab(world, (users, ts), scorers, context, ab_cfg, control="baseline")


def user_covariates(features, users: np.ndarray, test_requests: np.ndarray) -> np.ndarray:
    """(U, 4) per-user covariates no arm can move, for CUPED: test-period requests (the world
    draws them before any arm acts), and training-period impressions, clicks and long views."""
    from fluidrec.data.schema import LABELS_BINARY

    n = features.n_train
    idx = np.searchsorted(users, features.user_id[:n])
    known = (idx < len(users)) & (users[np.minimum(idx, len(users) - 1)] == features.user_id[:n])
    idx = idx[known]
    lab = features.labels[:n][known]

    def count(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(idx, weights=weights, minlength=len(users)).astype(np.float64)

    req = np.bincount(np.searchsorted(users, test_requests), minlength=len(users)).astype(np.float64)
    return np.stack([req, count(), count(lab[:, LABELS_BINARY.index("click")]), count(lab[:, LABELS_BINARY.index("long_view")])], axis=1)


def run_closed_ab(cfg: ReproduceConfig, paths, features, assignment: str = "user", progress: bool = True) -> dict:
    """The closed-loop A/B over every test-period request: AB_ARMS + oracle + random, each learning online."""
    from fluidrec.data.world import World
    from fluidrec.simulate.ranker_arm import RankerArm

    import torch

    world = World.load(paths.world)
    train_cfg = cfg.ranker_config()
    torch.set_num_threads(train_cfg.threads)  # a fixed thread count: CPU reductions split by it, so the numbers depend on it
    loop_cfg = ClosedLoopConfig(max_candidates=cfg.ab_candidates, n_boot=cfg.n_boot, seed=cfg.seed, window_minutes=cfg.closed_window_minutes, assignment=assignment)
    users, ts, _ = sample_requests(features, len(features), cfg.seed)
    codes = SliceCodeIndex(paths.slice_codes, paths.world)
    arms: dict = {row: RankerArm.from_run(paths.ranker(arm) / "model.pt", paths.world, features, codes, train_cfg) for row, arm in AB_ARMS.items()}
    arms.update({"oracle": OracleArm(world), "random": RandomArm(cfg.seed)})
    context = world_context(paths.world, features, loop_cfg.niche_share)
    covariates = user_covariates(features, np.unique(users), users) if assignment == "user" else None
    result = run_closed_loop(world, (users, ts), arms, context, loop_cfg, control="baseline", covariates=covariates, progress=progress)
    result["online_steps"] = {row: arm.steps for row, arm in arms.items() if isinstance(arm, RankerArm)}
    return result
