"""``reproduce_foresight``: the foresight paper's tables, one call, on the world or imported data.

Stages: inputs -> Sids -> per-author RLE sequences -> next-Sid model per seed vs the rules
(Table 3) -> causal I/D features -> MMoE arms (Table 1) -> replay A/B (Table 2) -> Figures
3 and 4 -> ``results.json``, ``report.md``, ``config.json``.

Inputs: the synthetic world (segments and highlight moments on; LSA segment embeddings),
or, with ``dataset=DIR``, an imported KuaiLive-M3 dataset (its published segment vectors;
``foresight.imported``), where Table 2 (no truth model) and Figure 3's moment kinds (no
moment truth) are not produced.

``resume=True`` reuses the world and the Sids already in ``out`` when the parts of the
config they depend on (``DATA_KEYS``) are the same (the slow, deterministic parts); the
models are always retrained.

Example:
    >>> results = reproduce_foresight(foresight_config("small", seed=0), Path("runs/foresight"))
    >>> results = reproduce_foresight(foresight_config("small", seed=0), Path("runs/fs_klm3"), dataset=Path("runs/klm3"))
    >>> results["table3"]["model"]["acc"], results["table1"]["plus_i_d"]["gift"]["auc"]
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fluidrec.errors import UsageError
from fluidrec.foresight.config import ARMS, DAY_MS, STRATEGIES, TASKS, ForesightConfig
from fluidrec.utils.io import atomic_path, read_json, save_torch_file, strict_jsonable, write_json
from fluidrec.utils.timing import StageClock

if TYPE_CHECKING:
    from fluidrec.data.world import World
    from fluidrec.foresight.ranker import Impressions
    from fluidrec.foresight.segments import SegmentLog
    from fluidrec.foresight.sequences import AuthorSequences

# The parts of the config the world and the Sids depend on: a resume reuses them when these
# match, whatever the model settings (the models are retrained on every run).
DATA_KEYS = ("scale", "seed", "codebook_size", "n_codes", "lsa_fit_max", "lsa_dim", "kmeans_niter", "world", "world_resolved", "dataset")
NO_TRUTH = "imported data: a replay A/B needs the world's truth model to label the slates an arm did not show"


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What the model stages need, from the world or an imported dataset.

    seg_on_air: (n,) segment row on air at each impression (-1 none); moment: (G,) the
    world's moment kind per segment (None on imported data); author_topic: (A,) home topic
    (-1 unknown); world: the loaded ``World`` (None on imported data); data: results["data"].
    """

    seg: SegmentLog
    sids: np.ndarray
    seqs: AuthorSequences
    imp: Impressions
    split_ts: int
    n_users: int
    n_authors: int
    seg_on_air: np.ndarray
    moment: np.ndarray | None
    author_topic: np.ndarray
    world: World | None
    data: dict


def _stage_world(cfg: ForesightConfig, out: Path, reuse: bool, progress: bool) -> Path:
    from fluidrec.data.world import generate_world

    world_dir = out / "world"
    if reuse and (world_dir / "manifest.json").exists():
        return world_dir
    if world_dir.exists():
        shutil.rmtree(world_dir)
    return generate_world(cfg.world_config(), world_dir, progress=progress)


def _stage_sids(cfg: ForesightConfig, out: Path, end_ts: np.ndarray, split_ts: int, reuse: bool,
                embed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Flat K-Means Sids fitted on training-day segments; ``embed(fit_rows)`` gives (G, D) vectors."""
    from fluidrec.foresight.segments import fit_sids

    path = out / "sids.npy"
    if reuse and path.exists():
        return np.load(path, allow_pickle=False)
    fit_rows = np.flatnonzero(end_ts <= split_ts)
    sids = fit_sids(embed(fit_rows), fit_rows, n_codes=cfg.n_codes, seed=cfg.seed, niter=cfg.kmeans_niter, out_dir=out / "codebook")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a resume reads it back: never half-written
        np.save(fh, sids, allow_pickle=False)
    return sids


def _world_inputs(cfg: ForesightConfig, out: Path, reuse: bool, progress: bool, clock: StageClock) -> _Inputs:
    from fluidrec.data.io import Dataset
    from fluidrec.data.world import World
    from fluidrec.foresight.ranker import load_impressions
    from fluidrec.foresight.segments import embed_segments, load_segments
    from fluidrec.foresight.sequences import AuthorSequences

    world_dir = _stage_world(cfg, out, reuse, progress)
    wcfg = cfg.world_config()
    split_ts = wcfg.t0_ms + (wcfg.days - 1) * DAY_MS  # the last day is the test day
    clock.mark("world")
    seg = load_segments(world_dir)
    lsa = lambda rows: embed_segments(seg, out / "lsa", rows, seed=cfg.seed, fit_max=cfg.lsa_fit_max, dim=cfg.lsa_dim)  # noqa: E731
    sids = _stage_sids(cfg, out, seg["end_ts"], split_ts, reuse, lsa)
    clock.mark("sids")
    ds = Dataset(world_dir)
    n_authors, n_users = ds.num_rows("authors"), ds.num_rows("users")
    seqs = AuthorSequences.build(seg["author_id"], seg["end_ts"], sids, n_authors)
    imp = load_impressions(world_dir, seqs)
    world = World.load(world_dir)
    data = {"source": "synthetic world", "embeddings": f"LSA ({cfg.lsa_dim} dims) of the segments' text",
            "highlight_share": float((seg["moment"] > 0).mean())}
    return _Inputs(seg, sids, seqs, imp, split_ts, n_users, n_authors, _segment_on_air(world, imp), seg["moment"],
                   ds.numpy("authors", "home_topic_l1").astype(np.int64), world, data)


def _imported_inputs(cfg: ForesightConfig, out: Path, dataset: Path, reuse: bool, clock: StageClock) -> _Inputs:
    from fluidrec.foresight.imported import load_imported
    from fluidrec.foresight.sequences import AuthorSequences

    d = load_imported(dataset)
    clock.mark("dataset")
    sids = _stage_sids(cfg, out, d.seg["end_ts"], d.split_ts, reuse, lambda rows: d.emb)
    clock.mark("sids")
    seqs = AuthorSequences.build(d.seg["author_id"], d.seg["end_ts"], sids, d.n_authors)
    data = {"source": f"imported dataset {dataset}", "embeddings": f"published segment vectors ({d.emb.shape[1]} dims)",
            "split_ts": d.split_ts, **d.notes}
    return _Inputs(d.seg, sids, seqs, d.impressions(seqs), d.split_ts, d.n_users, d.n_authors, d.segment_on_air(), None,
                   d.author_topic, None, data)


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


def _figures(out: Path, x: _Inputs, test_rows: np.ndarray) -> dict:
    """Figure 3: the test-day room with most impressions; its Sids' interaction rates over the whole log."""
    from fluidrec.foresight.figures import figure3, moment_rates

    seg, sids, imp = x.seg, x.sids, x.imp
    labels = {t: imp.labels[t] for t in ("click", "like", "follow", "gift")}
    on = x.seg_on_air >= 0
    out_fig: dict = {}
    if x.moment is not None:  # the world's truth: rates by the moment kind on air
        moment = np.where(on, x.moment[np.maximum(x.seg_on_air, 0)], 0)
        out_fig["moment_rates_test"] = moment_rates({k: v[test_rows] for k, v in labels.items()}, moment[test_rows])
    rooms_test = seg["room_id"][x.seg_on_air[test_rows][on[test_rows]]]
    ids, counts = np.unique(rooms_test, return_counts=True)  # imported room ids are raw (large) ids
    room = int(ids[counts.argmax()]) if len(ids) else int(seg["room_id"][0])
    rows = np.flatnonzero(seg["room_id"] == room)
    imp_sid = np.where(on, sids[np.maximum(x.seg_on_air, 0)], -1)
    counts = np.bincount(sids[rows])
    top = [int(s) for s in np.argsort(-counts)[:8] if counts[s] > 0]
    sid_rates = {}
    for s in top:
        m = imp_sid == s
        clicks = max(float(labels["click"][m].sum()), 1.0)
        kind = {"moment": int(np.bincount(x.moment[sids == s], minlength=3).argmax())} if x.moment is not None else {}
        sid_rates[s] = {**kind, **{t: float(labels[t][m].sum()) / clicks for t in ("like", "follow", "gift")}}
    room_moment = x.moment[rows] if x.moment is not None else None
    figure3(out / "figures" / "figure3_sid_timeline.png", sids[rows], room_moment, sid_rates, room)
    return {"room_id": room, **out_fig, "sid_rates": {str(k): v for k, v in sid_rates.items()}}


def _retrieval(out: Path, x: _Inputs, feats_all: dict, base_ranker) -> dict:
    """Figure 4: precision@10 of author retrieval by Sid-sequence embedding vs the author-ID embedding."""
    from fluidrec.foresight.figures import figure4, precision_at_k

    seqs, topic = x.seqs, x.author_topic
    n_a = len(topic)
    # Sid-sequence embedding: mean pooled I over each author's training-day states.
    author, p = seqs.split_state(np.arange(seqs.n_states))
    end_before = np.where(p > seqs.raw_start[author], seqs.end_ts[np.maximum(p - 1, 0)], 0)
    keep = (p > seqs.raw_start[author]) & (end_before <= x.split_ts)
    emb = np.zeros((n_a, feats_all["i"].shape[1]))
    np.add.at(emb, author[keep], feats_all["i"][keep])
    has = (np.bincount(author[keep], minlength=n_a) > 0) & (topic >= 0)
    if has.sum() < 2:
        return {"skipped": f"{int(has.sum())} author(s) with both training-day segments and a known home topic (need 2)"}
    id_emb = base_ranker.author_emb.weight.detach().numpy()
    rng = np.random.default_rng(0)
    p10 = {"sid_sequence": precision_at_k(emb[has], topic[has]), "author_id_embedding": precision_at_k(id_emb[has], topic[has]),
           "random": precision_at_k(rng.normal(size=(int(has.sum()), 8)), topic[has])}
    figure4(out / "figures" / "figure4_retrieval.png", p10)
    return {"precision_at_10": p10, "authors": int(has.sum())}


def _setup(cfg: ForesightConfig, out: Path, dataset: Path | None, resume: bool) -> bool:
    """Create ``out``, refuse to overwrite a run without ``resume``, write config.json; returns reuse."""
    out.mkdir(parents=True, exist_ok=True)
    config = {**cfg.to_dict(), "dataset": str(Path(dataset).resolve()) if dataset is not None else None}
    previous = read_json(out / "config.json") if (out / "config.json").exists() else None
    if previous is not None and not resume:
        raise UsageError(f"{out} already holds a foresight run; pass --resume or choose another --out")
    now = json.loads(json.dumps(config))
    reuse = resume and previous is not None and all(previous.get(k) == now[k] for k in DATA_KEYS)
    write_json(out / "config.json", config)
    torch.manual_seed(cfg.seed)
    return reuse


def _work(cfg: ForesightConfig, x: _Inputs, out: Path, progress: bool, clock: StageClock) -> dict:
    """Next-Sid model per seed vs the rules (Table 3), the I/D features, the MMoE arms (Table 1)."""
    from fluidrec.foresight.ranker import run_arms
    from fluidrec.foresight.train import evaluate_next_sid, split_states, state_features, train_next_sid

    train_states, test_states = split_states(x.seqs, x.split_ts)
    n_codes = int(x.sids.max()) + 1
    runs, models = [], []
    for s in cfg.next_sid_seeds:
        model, log = train_next_sid(x.seqs, train_states, n_codes=n_codes, cfg=cfg.next_sid, seed=s, progress=progress)
        runs.append({**evaluate_next_sid(model, x.seqs, test_states, cfg.next_sid.context), "train": log})
        models.append(model)
    save_torch_file(models[0].state_dict(), out / "next_sid.pt")
    clock.mark("next_sid")
    all_states = np.arange(x.seqs.n_states)
    feats = state_features(models[0], x.seqs, all_states, cfg.next_sid.context)
    clock.mark("features")
    table1, rankers = run_arms(x.imp, feats, all_states, x.split_ts, n_users=x.n_users, n_authors=x.n_authors, cfg=cfg.ranker,
                               seeds=cfg.ranker_seeds, progress=progress)
    rows = {"n_train": table1.pop("n_train"), "n_test": table1.pop("n_test")}
    fit = table1.pop("fit")
    clock.mark("ranker")
    return {"table1": table1, "table1_rows": rows, "ranker_fit": fit, "table3": _table3(runs), "next_sid_runs": runs,
            "feats": feats, "rankers": rankers, "codebook_size": n_codes, "train_states": int(len(train_states)),
            "test_states": int(len(test_states))}


def _finish(cfg: ForesightConfig, out: Path, x: _Inputs, w: dict, clock: StageClock) -> dict:
    """Replay A/B (world only), Figures 3 and 4, results.json and report.md."""
    from fluidrec.foresight.report import write_report

    test_rows = np.flatnonzero(x.imp.ts > x.split_ts)
    if x.world is None:
        table2 = {"skipped": NO_TRUTH}
    elif cfg.ab_requests:
        table2 = _run_ab(cfg, x.world, x.imp, test_rows, w["rankers"], x.seqs, w["feats"])
    else:
        table2 = {"skipped": "ab_requests = 0"}
    clock.mark("ab")
    fig3 = _figures(out, x, test_rows)
    fig4 = _retrieval(out, x, w["feats"], w["rankers"]["base"])
    clock.mark("figures")
    results = {
        **{k: w[k] for k in ("table1", "table1_rows", "ranker_fit", "table3", "next_sid_runs")},
        "table2": table2, "figure3": fig3, "figure4": fig4,
        "data": {**x.data, "segments": int(len(x.seg)), "codebook_size": w["codebook_size"], "authors": x.n_authors,
                 "users": x.n_users, "impressions": int(len(x.imp)), "train_states": w["train_states"], "test_states": w["test_states"]},
        "timings_s": clock.timings, "seconds": clock.total(),
    }
    write_json(out / "results.json", strict_jsonable(results))  # an undefined metric (one class only) is null
    write_report(out, cfg, results)
    return results


def reproduce_foresight(cfg: ForesightConfig, out: Path, *, dataset: Path | None = None, resume: bool = False,
                        progress: bool = True) -> dict:
    """Run the foresight reproduction into ``out``; returns the results dict (also results.json).

    Args:
        cfg: the run's settings (``foresight_config(scale, seed)``; on a dataset the scale picks the model sizes).
        out: run directory (created).
        dataset: an imported KuaiLive-M3 dataset (``fluidrec data import kuailive-m3``) instead of the world.
        resume: reuse the world (or dataset) Sids of an earlier run in ``out`` with the same config.
        progress: tqdm bars on stderr.
    """
    out = Path(out)
    reuse = _setup(cfg, out, dataset, resume)
    clock = StageClock("foresight")
    if dataset is None:
        x = _world_inputs(cfg, out, reuse, progress, clock)
    else:
        x = _imported_inputs(cfg, out, Path(dataset), reuse, clock)
    return _finish(cfg, out, x, _work(cfg, x, out, progress, clock), clock)


def _segment_on_air(world, imp) -> np.ndarray:
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
