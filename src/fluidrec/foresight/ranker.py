"""Table 1: the MMoE arms (base, +I, +I+D) trained on the training days, scored on the test day.

Protocol: frozen. Every impression is joined with its author's causal state (segments that
ended before the impression, ``AuthorSequences.state_at``) and that state's next-Sid
features; each arm trains on the training days in event-time order, early-stopped per arm
and seed on the last training day (``train_arm``; the test day takes no part in the choice),
and is scored on the test day with AUC and GAUC (per user) for CTR, WTR, LVTR and GTR.

Example:
    >>> imp = load_impressions(dataset_dir, seqs)
    >>> table1, models = run_arms(imp, feats, states, split_ts, n_users=U, n_authors=A, cfg=RankerConfig(), seeds=(0,))
"""

from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.data.io import Dataset
from fluidrec.foresight.config import ARMS, DAY_MS, TASKS, RankerConfig
from fluidrec.foresight.mmoe import ForesightRanker, RankBatch
from fluidrec.foresight.sequences import AuthorSequences
from fluidrec.metrics import auc, gauc

ARM_FEATURES = {"base": (False, False), "plus_i": (True, False), "plus_i_d": (True, True)}


@dataclasses.dataclass(frozen=True)
class Impressions:
    """Impression arrays (n,) in time order, with the author and causal state of each."""

    ts: np.ndarray
    user: np.ndarray
    room: np.ndarray
    author: np.ndarray
    position: np.ndarray
    state: np.ndarray
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ts)


def room_authors(dataset_dir: str | os.PathLike) -> np.ndarray:
    """(R,) author of each room id (rooms are numbered 0..R-1 in the world)."""
    ds = Dataset(dataset_dir)
    room = ds.numpy("rooms", "room_id").astype(np.int64)
    out = np.full(int(room.max(initial=-1)) + 1, -1, np.int64)
    out[room] = ds.numpy("rooms", "author_id").astype(np.int64)
    return out


def load_impressions(dataset_dir: str | os.PathLike, seqs: AuthorSequences) -> Impressions:
    ds = Dataset(dataset_dir)
    cols = ["ts", "user_id", "room_id", "position", *TASKS, "like"]  # like: for Figure 3 only
    t = ds.table("impressions", cols)
    c = {k: t.column(k).to_numpy() for k in cols}
    author = room_authors(dataset_dir)[c["room_id"].astype(np.int64)]
    ts = c["ts"].astype(np.int64)
    state = seqs.state_at(author, ts)
    labels = {k: c[k].astype(np.float32) for k in (*TASKS, "like")}
    return Impressions(ts, c["user_id"].astype(np.int64), c["room_id"].astype(np.int64), author, c["position"].astype(np.int64), state, labels)


def _batch(imp: Impressions, rows: np.ndarray, feats: dict[str, torch.Tensor], state_row: np.ndarray, labels: bool) -> RankBatch:
    fr = torch.as_tensor(state_row[imp.state[rows]])
    return RankBatch(
        user=torch.as_tensor(imp.user[rows]), author=torch.as_tensor(imp.author[rows]), position=torch.as_tensor(imp.position[rows]),
        i=feats["i"][fr], d=feats["d"][fr],
        labels={k: torch.as_tensor(imp.labels[k][rows]) for k in TASKS} if labels else None,
    )


def holdout_split(ts: np.ndarray, train_rows: np.ndarray, split_ts: int, cfg: RankerConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) rows: the last ``cfg.val_days`` training days, or the last
    ``cfg.val_fraction`` of the training rows when the days would leave fewer fit rows than
    held-out ones. ``train_rows`` are in event-time order and all end by ``split_ts``, so
    the validation rows never include a test-day impression."""
    cut = split_ts - cfg.val_days * DAY_MS
    n_val = int((ts[train_rows] > cut).sum())
    if n_val == 0 or n_val > len(train_rows) - n_val:
        n_val = max(1, int(round(cfg.val_fraction * len(train_rows))))
    return train_rows[: len(train_rows) - n_val], train_rows[len(train_rows) - n_val:]


def _one_pass(model: ForesightRanker, opt: torch.optim.Optimizer, imp: Impressions, rows: np.ndarray,
              feats: dict[str, torch.Tensor], state_row: np.ndarray, batch_size: int, bar) -> None:
    model.train()
    for s in range(0, len(rows), batch_size):  # event-time order, as online training
        loss, _ = model.loss(_batch(imp, rows[s:s + batch_size], feats, state_row, labels=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)


@torch.inference_mode()
def validation_loss(model: ForesightRanker, imp: Impressions, rows: np.ndarray, feats: dict[str, torch.Tensor],
                    state_row: np.ndarray, batch: int = 8192) -> float:
    """Mean over rows and tasks of the binary logloss on ``rows`` (the early-stopping criterion)."""
    model.eval()
    total = 0.0
    for s in range(0, len(rows), batch):
        b = _batch(imp, rows[s:s + batch], feats, state_row, labels=True)
        logits = model(b)
        total += sum(float(F.binary_cross_entropy_with_logits(logits[t], b.labels[t], reduction="sum")) for t in TASKS)
    return total / max(len(rows) * len(TASKS), 1)


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    return copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())


def train_arm(imp: Impressions, train_rows: np.ndarray, feats: dict[str, torch.Tensor], state_row: np.ndarray, *, arm: str,
              n_users: int, n_authors: int, cfg: RankerConfig, split_ts: int, seed: int,
              progress: bool = True) -> tuple[ForesightRanker, dict]:
    """Setup -> event-time passes, early-stopped on held-out training rows -> eval mode.

    With ``cfg.patience`` >= 1: up to ``cfg.epochs`` passes over the fit rows, each followed by
    the validation loss on the held-out rows (``holdout_split``); stop once ``patience``
    passes in a row have not lowered it, restore the weights (and Adam state) of the best
    pass, then optionally one pass over the held-out rows. Only training rows are touched.

    Returns:
        (model, log): log = {best_pass, passes_run, val_loss (per pass), n_fit, n_val, final_holdout_pass}.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    use_i, use_d = ARM_FEATURES[arm]
    model = ForesightRanker(n_users, n_authors, cfg, use_i=use_i, use_d=use_d, feat_dim=feats["i"].shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    early = cfg.patience >= 1
    fit_rows, val_rows = holdout_split(imp.ts, train_rows, split_ts, cfg) if early else (train_rows, train_rows[:0])
    bar = tqdm(total=cfg.epochs * -(-len(fit_rows) // cfg.batch_size), desc=f"ranker {arm} seed {seed}", unit="step",
               disable=not progress, leave=False)
    losses: list[float] = []
    best, best_state = 0, None
    for k in range(1, cfg.epochs + 1):
        _one_pass(model, opt, imp, fit_rows, feats, state_row, cfg.batch_size, bar)
        if not early:
            continue
        losses.append(validation_loss(model, imp, val_rows, feats, state_row))
        if best == 0 or losses[-1] < losses[best - 1]:
            best, best_state = k, _snapshot(model, opt)
        elif k - best >= cfg.patience:
            break
    bar.close()
    if early:
        model.load_state_dict(best_state[0])
        opt.load_state_dict(best_state[1])
        if cfg.final_holdout_pass:  # the held-out day is the most recent: learn it before the test day
            _one_pass(model, opt, imp, val_rows, feats, state_row, cfg.batch_size, bar)
    log = {"best_pass": best if early else cfg.epochs, "passes_run": len(losses) if early else cfg.epochs, "val_loss": losses,
           "n_fit": int(len(fit_rows)), "n_val": int(len(val_rows)), "final_holdout_pass": bool(early and cfg.final_holdout_pass)}
    return model.eval(), log


@torch.inference_mode()
def predict(model: ForesightRanker, imp: Impressions, rows: np.ndarray, feats: dict[str, torch.Tensor], state_row: np.ndarray,
            batch: int = 8192) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {t: [] for t in TASKS}
    for s in range(0, len(rows), batch):
        logits = model(_batch(imp, rows[s:s + batch], feats, state_row, labels=False))
        for t in TASKS:
            out[t].append(logits[t].numpy())
    return {t: np.concatenate(v) if v else np.zeros(0) for t, v in out.items()}


def score_arm(imp: Impressions, rows: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """AUC and GAUC (grouped by user) of every task on ``rows``."""
    return {t: {"auc": auc(imp.labels[t][rows], scores[t]), "gauc": gauc(imp.user[rows], imp.labels[t][rows], scores[t])} for t in TASKS}


def run_arms(imp: Impressions, feats: dict[str, np.ndarray], states: np.ndarray, split_ts: int, *, n_users: int, n_authors: int,
             cfg: RankerConfig, seeds: tuple[int, ...], progress: bool = True) -> tuple[dict, dict]:
    """Train and score every arm for every seed.

    Args:
        feats: {"i", "d"}: (n_states_used, D) features of ``states`` (row k is state ``states[k]``).

    Returns:
        (table1, models): ``table1[arm][task] = {auc, gauc, auc_sd, gauc_sd, seeds}`` (mean over
        seeds), ``table1["fit"][arm][seed]`` the training log (passes chosen) and ``models[arm]``
        the first seed's ranker (for the A/B and Figure 4).
    """
    state_row = np.full(int(states.max(initial=0)) + 1 if len(states) else 1, -1, np.int64)
    state_row[states] = np.arange(len(states))
    tfeats = {k: torch.as_tensor(v) for k, v in feats.items()}
    train_rows = np.flatnonzero(imp.ts <= split_ts)
    test_rows = np.flatnonzero(imp.ts > split_ts)
    table1: dict[str, dict] = {}
    models: dict[str, ForesightRanker] = {}
    fit: dict[str, dict] = {arm: {} for arm in ARMS}
    for arm in ARMS:
        per_seed = []
        for seed in seeds:
            model, log = train_arm(imp, train_rows, tfeats, state_row, arm=arm, n_users=n_users, n_authors=n_authors, cfg=cfg,
                                   split_ts=split_ts, seed=seed, progress=progress)
            fit[arm][str(seed)] = log
            per_seed.append(score_arm(imp, test_rows, predict(model, imp, test_rows, tfeats, state_row)))
            models.setdefault(arm, model)
        table1[arm] = {}
        for t in TASKS:
            a = np.array([r[t]["auc"] for r in per_seed])
            g = np.array([r[t]["gauc"] for r in per_seed])
            table1[arm][t] = {"auc": float(a.mean()), "gauc": float(g.mean()), "auc_sd": float(a.std()), "gauc_sd": float(g.std()),
                              "seeds": [{"auc": float(x), "gauc": float(y)} for x, y in zip(a, g)]}
    table1["n_train"], table1["n_test"] = int(len(train_rows)), int(len(test_rows))
    table1["fit"] = fit  # passes chosen per arm and seed (popped into results["ranker_fit"] by the run)
    return table1, models
