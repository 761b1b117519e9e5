"""``reproduce_foresight``: the foresight paper's tables on the synthetic world, one call.

Stages: world (segments and highlight moments on) -> segment embeddings (LSA) -> flat
K-Means Sids -> per-author RLE sequences -> next-Sid model per seed vs the rules (Table 3)
-> causal I/D features -> MMoE arms (Table 1) -> replay A/B (Table 2) -> Figures 3 and 4
-> ``results.json``, ``report.md``, ``config.json``.

``resume=True`` reuses the world and the Sids already in ``out`` when the parts of the
config they depend on (``DATA_KEYS``) are the same (the slow, deterministic parts); the
models are always retrained.

Example:
    >>> results = reproduce_foresight(foresight_config("small", seed=0), Path("runs/foresight"))
    >>> results["table3"]["model"]["acc"], results["table1"]["plus_i_d"]["gift"]["auc"]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from fluidrec.errors import UsageError
from fluidrec.foresight.config import ARMS, DAY_MS, STRATEGIES, TASKS, ForesightConfig
from fluidrec.utils.io import read_json, save_torch_file, write_json
from fluidrec.utils.timing import StageClock

# The parts of the config the world and the Sids depend on: a resume reuses them when these
# match, whatever the model settings (the models are retrained on every run).
DATA_KEYS = ("scale", "seed", "codebook_size", "n_codes", "lsa_fit_max", "lsa_dim", "kmeans_niter", "world", "world_resolved")


def _stage_world(cfg: ForesightConfig, out: Path, reuse: bool, progress: bool) -> Path:
    from fluidrec.data.world import generate_world

    world_dir = out / "world"
    if reuse and (world_dir / "manifest.json").exists():
        return world_dir
    if world_dir.exists():
        shutil.rmtree(world_dir)
    return generate_world(cfg.world_config(), world_dir, progress=progress)


def _stage_sids(cfg: ForesightConfig, out: Path, seg, split_ts: int, reuse: bool) -> np.ndarray:
    from fluidrec.foresight.segments import embed_segments, fit_sids

    path = out / "sids.npy"
    if reuse and path.exists():
        return np.load(path, allow_pickle=False)
    fit_rows = np.flatnonzero(seg["end_ts"] <= split_ts)
    emb = embed_segments(seg, out / "lsa", fit_rows, seed=cfg.seed, fit_max=cfg.lsa_fit_max, dim=cfg.lsa_dim)
    sids = fit_sids(emb, fit_rows, n_codes=cfg.n_codes, seed=cfg.seed, niter=cfg.kmeans_niter, out_dir=out / "codebook")
    np.save(path, sids, allow_pickle=False)
    return sids


def _table3(runs: list[dict]) -> dict:
    """Mean and sd over seeds of each strategy's accuracy, and the model's margin over the best rule."""
    out: dict = {}
    for s in STRATEGIES:
        acc = np.array([r[s]["acc"] for r in runs])
        out[s] = {"acc": float(acc.mean()), "acc_sd": float(acc.std()), "seeds": acc.tolist()}
    top5 = np.array([r["model"]["top5"] for r in runs])
    out["model"].update(top5=float(top5.mean()), top5_sd=float(top5.std()))
    margin = np.array([r["model"]["acc"] - max(r[s]["acc"] for s in STRATEGIES[1:]) for r in runs])
    out["margin_over_best_rule"] = {"mean": float(margin.mean()), "min": float(margin.min()), "sd": float(margin.std()),
                                    "beats_every_rule_every_seed": bool((margin > 0).all())}
    out["n_test"] = runs[0]["n"]
    return out


def _figures(out: Path, seg, sids: np.ndarray, imp, seg_on_air: np.ndarray, test_rows: np.ndarray) -> dict:
    from fluidrec.foresight.figures import figure3, moment_rates

    labels = {t: imp.labels[t] for t in ("click", "like", "follow", "gift")}
    on = seg_on_air >= 0
    moment = np.where(on, seg["moment"][np.maximum(seg_on_air, 0)], 0)
    rates = moment_rates({k: v[test_rows] for k, v in labels.items()}, moment[test_rows])
    # Figure 3: the test-day room with most impressions; its Sids' rates over the whole log.
    rooms_test = seg["room_id"][seg_on_air[test_rows][on[test_rows]]]
    room = int(np.bincount(rooms_test).argmax()) if len(rooms_test) else int(seg["room_id"][0])
    rows = np.flatnonzero(seg["room_id"] == room)
    imp_sid = np.where(on, sids[np.maximum(seg_on_air, 0)], -1)
    top = [int(s) for s in np.argsort(-np.bincount(sids[rows]))[:8] if np.bincount(sids[rows])[s] > 0]
    sid_rates = {}
    for s in top:
        m = imp_sid == s
        clicks = max(float(labels["click"][m].sum()), 1.0)
        kinds = np.bincount(seg["moment"][sids == s], minlength=3)
        sid_rates[s] = {"moment": int(kinds.argmax()), **{t: float(labels[t][m].sum()) / clicks for t in ("like", "follow", "gift")}}
    figure3(out / "figures" / "figure3_sid_timeline.png", sids[rows], seg["moment"][rows], sid_rates, room)
    return {"room_id": room, "moment_rates_test": rates, "sid_rates": {str(k): v for k, v in sid_rates.items()}}


def _retrieval(out: Path, world_dir: Path, seqs, feats_all: dict, split_ts: int, base_ranker) -> dict:
    from fluidrec.data.io import Dataset
    from fluidrec.foresight.figures import figure4, precision_at_k

    topic = Dataset(world_dir).numpy("authors", "home_topic_l1").astype(np.int64)
    n_a = len(topic)
    # Sid-sequence embedding: mean pooled I over each author's training-day states.
    states = np.arange(seqs.n_states)
    author, p = seqs.split_state(states)
    end_before = np.where(p > seqs.raw_start[author], seqs.end_ts[np.maximum(p - 1, 0)], 0)
    keep = (p > seqs.raw_start[author]) & (end_before <= split_ts)
    emb = np.zeros((n_a, feats_all["i"].shape[1]))
    np.add.at(emb, author[keep], feats_all["i"][keep])
    has = np.bincount(author[keep], minlength=n_a) > 0
    id_emb = base_ranker.author_emb.weight.detach().numpy()
    rng = np.random.default_rng(0)
    p10 = {"sid_sequence": precision_at_k(emb[has], topic[has]), "author_id_embedding": precision_at_k(id_emb[has], topic[has]),
           "random": precision_at_k(rng.normal(size=(int(has.sum()), 8)), topic[has])}
    figure4(out / "figures" / "figure4_retrieval.png", p10)
    return {"precision_at_10": p10, "authors": int(has.sum())}


def reproduce_foresight(cfg: ForesightConfig, out: Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Run the foresight reproduction into ``out``; returns the results dict (also results.json).

    Args:
        cfg: the run's settings (``foresight_config(scale, seed)``).
        out: run directory (created).
        resume: reuse the world and Sids of an earlier run in ``out`` with the same config.
        progress: tqdm bars on stderr.
    """
    from fluidrec.data.world import World
    from fluidrec.foresight.ranker import load_impressions, run_arms
    from fluidrec.foresight.report import write_report
    from fluidrec.foresight.segments import load_segments
    from fluidrec.foresight.sequences import AuthorSequences
    from fluidrec.foresight.train import evaluate_next_sid, split_states, state_features, train_next_sid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = cfg.to_dict()
    previous = read_json(out / "config.json") if (out / "config.json").exists() else None
    if previous is not None and not resume:
        raise UsageError(f"{out} already holds a foresight run; pass --resume or choose another --out")
    now = json.loads(json.dumps(config))
    reuse = resume and previous is not None and all(previous.get(k) == now[k] for k in DATA_KEYS)
    write_json(out / "config.json", config)
    torch.manual_seed(cfg.seed)
    clock = StageClock("foresight")
    world_dir = _stage_world(cfg, out, reuse, progress)
    wcfg = cfg.world_config()
    split_ts = wcfg.t0_ms + (wcfg.days - 1) * DAY_MS  # the last day is the test day
    clock.mark("world")
    seg = load_segments(world_dir)
    sids = _stage_sids(cfg, out, seg, split_ts, reuse)
    clock.mark("sids")
    from fluidrec.data.io import Dataset

    ds = Dataset(world_dir)
    n_authors = ds.num_rows("authors")
    n_users = ds.num_rows("users")
    seqs = AuthorSequences.build(seg["author_id"], seg["end_ts"], sids, n_authors)
    train_states, test_states = split_states(seqs, split_ts)
    n_codes = int(sids.max()) + 1
    runs, models = [], []
    for s in cfg.next_sid_seeds:
        model, log = train_next_sid(seqs, train_states, n_codes=n_codes, cfg=cfg.next_sid, seed=s, progress=progress)
        runs.append({**evaluate_next_sid(model, seqs, test_states, cfg.next_sid.context), "train": log})
        models.append(model)
    save_torch_file(models[0].state_dict(), out / "next_sid.pt")
    table3 = _table3(runs)
    clock.mark("next_sid")

    imp = load_impressions(world_dir, seqs)
    all_states = np.arange(seqs.n_states)
    feats = state_features(models[0], seqs, all_states, cfg.next_sid.context)
    clock.mark("features")
    table1, rankers = run_arms(imp, feats, all_states, split_ts, n_users=n_users, n_authors=n_authors, cfg=cfg.ranker,
                               seeds=cfg.ranker_seeds, progress=progress)
    rows = {"n_train": table1.pop("n_train"), "n_test": table1.pop("n_test")}
    ranker_fit = table1.pop("fit")
    clock.mark("ranker")

    world = World.load(world_dir)
    test_rows = np.flatnonzero(imp.ts > split_ts)
    table2 = _run_ab(cfg, world, imp, test_rows, rankers, seqs, feats) if cfg.ab_requests else {"skipped": "ab_requests = 0"}
    clock.mark("ab")
    seg_on_air = _segment_on_air(seg, world, imp)
    fig3 = _figures(out, seg, sids, imp, seg_on_air, test_rows)
    fig4 = _retrieval(out, world_dir, seqs, feats, split_ts, rankers["base"])
    clock.mark("figures")

    results = {
        "table1": table1, "table1_rows": rows, "ranker_fit": ranker_fit, "table2": table2, "table3": table3, "figure3": fig3, "figure4": fig4,
        "next_sid_runs": runs,
        "data": {"segments": int(len(seg)), "codebook_size": n_codes, "authors": n_authors, "users": n_users,
                 "impressions": int(len(imp)), "train_states": int(len(train_states)), "test_states": int(len(test_states)),
                 "highlight_share": float((seg["moment"] > 0).mean())},
        "timings_s": clock.timings, "seconds": clock.total(),
    }
    write_json(out / "results.json", results)
    write_report(out, cfg, results)
    return results


def _segment_on_air(seg, world, imp) -> np.ndarray:
    """(n,) segment on air at each impression (the world's segment grid; for the figures only)."""
    seg_ms = world.cfg.segment_s * 1000
    start, end = world.room_start[imp.room], world.room_end[imp.room]
    k = (imp.ts - start) // seg_ms
    return np.where((imp.ts >= start) & (imp.ts < end), world.room_first_segment[imp.room] + k, -1)


def _run_ab(cfg: ForesightConfig, world, imp, test_rows: np.ndarray, rankers: dict, seqs, feats: dict) -> dict:
    """Replay test-day requests under the three arms (Table 2)."""
    from fluidrec.foresight.ab import run_foresight_ab
    from fluidrec.foresight.mmoe import RankBatch

    rng = np.random.default_rng([cfg.seed, 0xAB5])
    rows = np.sort(rng.choice(test_rows, size=min(cfg.ab_requests, len(test_rows)), replace=False))
    requests = (imp.user[rows], imp.ts[rows])
    tfeats = {k: torch.as_tensor(v) for k, v in feats.items()}

    def scorer(model):
        @torch.inference_mode()
        def score(cands) -> np.ndarray:
            author = world.room_author[cands.room_id]
            state = torch.as_tensor(seqs.state_at(author, cands.ts))
            logits = model(RankBatch(user=torch.as_tensor(cands.user_id), author=torch.as_tensor(author),
                                     position=torch.zeros(len(cands), dtype=torch.long), i=tfeats["i"][state], d=tfeats["d"][state]))
            return sum(torch.sigmoid(logits[t]) for t in TASKS).numpy()
        return score

    return run_foresight_ab(world, requests, {arm: scorer(rankers[arm]) for arm in ARMS}, slate=world.cfg.slate_size,
                            max_candidates=50, seed=cfg.seed)
