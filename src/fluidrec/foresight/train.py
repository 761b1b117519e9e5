"""Training and evaluation of the next-Sid model, and its features for the ranker.

Shape letters: B batch, l context entries, D width, N codebook size.

Examples are states (``sequences``): the context of an author after k segments, the
target the Sid of segment k + 1. A state trains when its target segment ends on a
training day and evaluates (Table 3) when it ends on the test day; states with no
history at all are left out of both (every strategy needs at least one Sid).

Example:
    >>> model, log = train_next_sid(seqs, train_states, n_codes=512, cfg=NextSidConfig(), seed=0)
    >>> table3 = evaluate_next_sid(model, seqs, test_states, cfg.context)
    >>> feats = state_features(model, seqs, states, cfg.context)     # pooled I and D per state
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fluidrec.foresight.baselines import predict_last, predict_max_freq, predict_max_weight
from fluidrec.foresight.config import NextSidConfig
from fluidrec.foresight.model import NextSidModel, to_tensors
from fluidrec.foresight.sequences import AuthorSequences


def split_states(seqs: AuthorSequences, split_ts: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) states with >= 1 segment of history and a next segment, by its end time."""
    author = seqs.author
    pos = np.arange(len(author))
    has_history = pos > seqs.raw_start[author]  # the target is not the author's first segment
    state = pos + author  # state "before raw position pos"
    train = has_history & (seqs.end_ts <= split_ts)
    test = has_history & (seqs.end_ts > split_ts)
    return state[train], state[test]


def _batch(seqs: AuthorSequences, states: np.ndarray, l: int):
    ctx = seqs.contexts(states, l)
    values, runs, mask = to_tensors(ctx.values, ctx.runs, ctx.mask)
    return values, runs, mask, ctx


def train_next_sid(seqs: AuthorSequences, states: np.ndarray, *, n_codes: int, cfg: NextSidConfig, seed: int,
                   progress: bool = True) -> tuple[NextSidModel, dict]:
    """Setup -> train (AdamW, shuffled epochs) -> cleanup; returns (model in eval mode, log)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 0x51D])
    if cfg.max_train and len(states) > cfg.max_train:
        states = np.sort(rng.permutation(states)[: cfg.max_train])
    model = NextSidModel(n_codes, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(states) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1)
    targets = seqs.next_sid(states)
    t0 = time.perf_counter()
    losses: list[float] = []
    model.train()
    bar = tqdm(total=steps, desc=f"next-Sid seed {seed}", unit="step", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        perm = rng.permutation(len(states))
        for s in range(0, len(perm), cfg.batch_size):
            rows = perm[s:s + cfg.batch_size]
            values, runs, mask, _ = _batch(seqs, states[rows], cfg.context)
            loss, _ = model.loss(values, runs, mask, torch.as_tensor(targets[rows]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.update(1)
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return model, {"examples": int(len(states)), "steps": len(losses), "final_loss": float(np.mean(tail)) if tail else float("nan"),
                   "seconds": round(time.perf_counter() - t0, 2)}


@torch.inference_mode()
def evaluate_next_sid(model: NextSidModel, seqs: AuthorSequences, states: np.ndarray, l: int, batch: int = 2048) -> dict:
    """Table 3: top-1 accuracy of the model and the rules, top-5 of the model, on ``states``."""
    hits = {k: 0 for k in ("model", "last", "max_freq", "max_weight")}
    top5 = 0
    for s in range(0, len(states), batch):
        st = states[s:s + batch]
        values, runs, mask, ctx = _batch(seqs, st, l)
        target = seqs.next_sid(st)
        logits = model(values, runs, mask).logits  # (B, N)
        top = torch.topk(logits, k=min(5, logits.shape[1]), dim=1).indices.numpy()  # (B, 5)
        hits["model"] += int((top[:, 0] == target).sum())
        top5 += int((top == target[:, None]).any(axis=1).sum())
        hits["last"] += int((predict_last(ctx.raw, ctx.raw_mask) == target).sum())
        hits["max_freq"] += int((predict_max_freq(ctx.raw, ctx.raw_mask) == target).sum())
        hits["max_weight"] += int((predict_max_weight(ctx.values, ctx.runs, ctx.mask) == target).sum())
    n = max(len(states), 1)
    out = {k: {"acc": v / n} for k, v in hits.items()}
    out["model"]["top5"] = top5 / n
    out["n"] = int(len(states))
    return out


@torch.inference_mode()
def state_features(model: NextSidModel, seqs: AuthorSequences, states: np.ndarray, l: int, batch: int = 2048) -> dict[str, np.ndarray]:
    """Pooled encoder output I and decoder output D (both (n, D) float32) for each state.

    Computed under inference mode: these are the ranker's stop-gradient inputs (Eq. 7).
    """
    pooled, dec = [], []
    for s in range(0, len(states), batch):
        values, runs, mask, _ = _batch(seqs, states[s:s + batch], l)
        out = model(values, runs, mask)
        pooled.append(out.pooled.numpy())
        dec.append(out.dec.numpy())
    d = model.cfg.d_model
    return {"i": np.concatenate(pooled) if pooled else np.zeros((0, d), np.float32),
            "d": np.concatenate(dec) if dec else np.zeros((0, d), np.float32)}
