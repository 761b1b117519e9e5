"""``fluidrec bench real``: item ID vs code on an imported real dataset.

Protocol (issue 7): embed each item's text with the default text encoder
(all-MiniLM-L6-v2, mean pooled), fit RQ-KMeans codes, then train three arms with the
same ranker and budget: ``id`` (item ID only, the baseline arm), ``id_code`` (ID +
code as independent tokens, the late arm) and ``code`` (code only, no item ID: the
replace arm). Test set: leave-last-out per user when the data has only order
(MicroLens), else the last ``test_share`` of the timeline; in both cases a random
``holdout_items`` share of items is removed from training entirely, so the test has
cold items. AUC and GAUC are reported on warm and on cold test items. Beside them run the
peer arms ``lr`` and ``gbdt`` (``fluidrec.ranker.peers``: causal hand features, one
model per task) on the same split.

Implementation note: the split is materialised as a derived dataset whose timestamps
put every training row (in its original order) on day 0 and every test row on day 2,
so the ranker's standard "last day is test" split applies unchanged. Rows that shared a
time keep sharing one (a positive and the negatives sampled beside it), so no row's causal
features (user history, peer statistics) see the label of a row from its own request.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from fluidrec.errors import DataError, check
from fluidrec.utils.io import write_json

ARMS = {"id": "baseline", "id_code": "late", "code": "early_replace"}
PEERS = ("lr", "gbdt")  # fluidrec.ranker.names.PEER_ARMS, each reported under its own name
DAY_MS = 86_400_000
T0 = 1_700_006_400_000  # a UTC midnight


@dataclasses.dataclass(frozen=True)
class RealBenchConfig:
    """Settings of the real-data benchmark.

    Args:
        seed: seeds the item hold-out, code fitting and training.
        holdout_items: share of items removed from training entirely (cold items).
        test_share: share of the timeline used as test when the data has real times.
        levels, codebook_size: RQ-KMeans shape (codebook size is capped at items / 4).
        lm_layers: MiniLM layers used to embed text (None = all 6).
        max_tokens: token budget per item text.
        max_rows: cap on impressions used (the earliest ones), None = all.
    """

    seed: int = 0
    holdout_items: float = 0.2
    test_share: float = 0.2
    levels: int = 4
    codebook_size: int = 64
    lm_layers: int | None = None
    max_tokens: int = 64
    max_rows: int | None = None

    def __post_init__(self) -> None:
        check(0.0 <= self.holdout_items < 1.0, f"holdout_items must be in [0, 1), got {self.holdout_items}")
        check(0.0 < self.test_share < 1.0, f"test_share must be in (0, 1), got {self.test_share}")
        check(self.levels >= 1 and self.codebook_size >= 2, "need levels >= 1 and codebook_size >= 2")
        check(self.lm_layers is None or 1 <= self.lm_layers <= 6, f"lm_layers must be in 1..6, got {self.lm_layers}")
        check(self.max_rows is None or self.max_rows > 0, "max_rows must be > 0")


def embed_texts(texts: list[str], *, lm_layers: int | None = None, max_tokens: int = 64, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings (n, 384), batched by length.

    Example:
        >>> z = embed_texts(["funny cat", "cooking pasta"])   # (2, 384)
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    from fluidrec.encoder.text import minilm_dir

    path = minilm_dir()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    if lm_layers is not None:
        model.encoder.layer = model.encoder.layer[:lm_layers]
    model.eval()
    enc = tok([t or "" for t in texts], truncation=True, max_length=max_tokens)["input_ids"]
    order = np.argsort([len(x) for x in enc], kind="stable")  # similar lengths together: little padding
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for b0 in tqdm(range(0, len(order), batch_size), desc="embed text", disable=not progress, unit="batch"):
            idx = order[b0 : b0 + batch_size]
            width = max(len(enc[i]) for i in idx)
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(enc[i])] = torch.tensor(enc[i])
                mask[r, : len(enc[i])] = 1
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, D)
            pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, D)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def split_rows(ts: np.ndarray, user: np.ndarray, click: np.ndarray, room: np.ndarray, order_only: bool, cfg: RealBenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) masks over impressions.

    ``order_only``: leave-last-out per user (each user's last positive and the rows
    sharing its time are test). Otherwise the last ``test_share`` of the timeline.
    Items in a random ``holdout_items`` share never appear in training.
    """
    n = len(ts)
    if order_only:
        pos_ts = np.where(click > 0, ts, np.iinfo(np.int64).min)
        users, inv = np.unique(user, return_inverse=True)
        last = np.full(len(users), np.iinfo(np.int64).min)
        np.maximum.at(last, inv, pos_ts)
        test = (ts == last[inv]) & (last[inv] > np.iinfo(np.int64).min)
    else:
        cut = ts.min() + (1.0 - cfg.test_share) * (ts.max() - ts.min())
        test = ts > cut
    items = np.unique(room)
    rng = np.random.default_rng(cfg.seed)
    held = rng.choice(items, size=int(round(cfg.holdout_items * len(items))), replace=False)
    train = ~test & ~np.isin(room, held)
    if not train.any() or not test.any():
        raise DataError(f"the split leaves {int(train.sum())} train and {int(test.sum())} test rows of {n}", table="impressions")
    return train, test


def write_split_dataset(src, out: Path, train: np.ndarray, test: np.ndarray) -> Path:
    """A copy of ``src`` with only train+test rows, train on day 0 and test on day 2 (original order kept)."""
    from fluidrec.data.io import Dataset, DatasetWriter, write_manifest, write_table

    ds = src if isinstance(src, Dataset) else Dataset(src)
    imp = ds.table("impressions")
    idx_train, idx_test = np.flatnonzero(train), np.flatnonzero(test)
    rows = np.concatenate([idx_train, idx_test])
    old_ts = imp.column("ts").to_numpy()

    def spread(idx: np.ndarray) -> np.ndarray:  # rank of the original time: order and ties survive
        rank = np.unique(old_ts[idx], return_inverse=True)[1].astype(np.int64).ravel()
        return rank * (DAY_MS // 2 // max(int(rank.max(initial=0)) + 1, 1))

    new_ts = np.concatenate([T0 + spread(idx_train), T0 + 2 * DAY_MS + spread(idx_test)])
    keep = [c for c in imp.column_names if c != "ts"]
    cols = {"ts": new_ts, **{c: imp.column(c).take(rows) for c in keep}}
    end = int(new_ts[-1]) + 1
    with DatasetWriter(out) as tmp:  # swapped in whole: a killed bench never leaves a half-written split
        rooms = ds.table("rooms")
        n_rooms = rooms.num_rows
        write_table(tmp, "rooms", {"room_id": rooms.column("room_id"), "author_id": rooms.column("author_id"),
                                   "start_ts": np.full(n_rooms, T0, np.int64), "end_ts": np.full(n_rooms, end, np.int64)})  # fmt: skip
        sl = ds.table("slices")
        sl = sl.set_column(sl.column_names.index("start_ts"), "start_ts", pa.array(np.full(sl.num_rows, T0, np.int64)))
        sl = sl.set_column(sl.column_names.index("end_ts"), "end_ts", pa.array(np.full(sl.num_rows, end, np.int64)))
        write_table(tmp, "slices", sl)
        write_table(tmp, "impressions", cols)
        for name in ("authors", "users", "queries"):
            write_table(tmp, name, ds.table(name))
        write_manifest(tmp, source=f"split of {ds.manifest.get('source')}", seed=ds.manifest.get("seed"), extra={"frame_size": ds.frame_size})
    return out


def bench_real(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: RealBenchConfig, *, progress: bool = True) -> dict:
    """Run the benchmark; writes ``results.json``, ``results.md`` and ``config.json`` into ``out_dir``."""
    from fluidrec.codes import RQKMeans, code_quality, room_codes_for_dataset, write_codes, write_room_codes
    from fluidrec.data.io import Dataset
    from fluidrec.ranker.evaluate import evaluate_model
    from fluidrec.ranker.features import FeatureConfig, load_or_build_features
    from fluidrec.ranker.peers import PeerConfig, evaluate_peer, train_peer
    from fluidrec.ranker.train import ranker_demo, train_arm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"dataset": str(Path(dataset_dir).resolve()), "bench": dataclasses.asdict(cfg)})
    ds = Dataset(dataset_dir)
    imp = ds.table("impressions", ["ts", "user_id", "room_id", "click"])
    if cfg.max_rows is not None and imp.num_rows > cfg.max_rows:
        imp = imp.slice(0, cfg.max_rows)
    ts, user, room, click = (imp.column(c).to_numpy() for c in ("ts", "user_id", "room_id", "click"))
    train, test = split_rows(ts, user, click, room, ds.manifest.get("time_kind") == "sequence_index", cfg)
    full_train = np.zeros(ds.num_rows("impressions"), bool)
    full_test = np.zeros_like(full_train)
    full_train[: len(train)], full_test[: len(test)] = train, test
    split_dir = write_split_dataset(ds, out / "split", full_train, full_test)

    sl = Dataset(split_dir).table("slices")
    text = [" ".join(filter(None, parts)) for parts in zip(*(sl.column(f).to_pylist() for f in ("title", "ocr", "tags") if f in sl.column_names))]
    z = embed_texts(text, lm_layers=cfg.lm_layers, max_tokens=cfg.max_tokens, progress=progress)
    ids = sl.column("slice_id").to_numpy()
    n_codes = int(min(cfg.codebook_size, max(2, len(ids) // 4)))
    model = RQKMeans(levels=cfg.levels, codebook_size=n_codes, seed=cfg.seed).fit(z, progress=progress)
    codes = model.encode(z)
    write_codes(out / "codes" / "slice_codes.parquet", ids, codes, codebook_size=n_codes)
    rc = room_codes_for_dataset(split_dir, ids, codes)
    write_room_codes(out / "codes" / "room_codes.parquet", rc.room_ids, rc.codes, codebook_size=n_codes)
    quality = code_quality(model, z)

    rcfg = dataclasses.replace(ranker_demo(), seed=cfg.seed, progress=progress, features=FeatureConfig(test_days=1.0))
    feats = load_or_build_features(split_dir, out / "codes" / "slice_codes.parquet", out / "codes" / "room_codes.parquet", rcfg.features, out / "cache")
    codes = (out / "codes" / "slice_codes.parquet", out / "codes" / "room_codes.parquet")
    reports = {}
    for name, arm in ARMS.items():
        train_arm(arm, split_dir, *codes, out / "rankers" / name, rcfg, features=feats)
        reports[name] = evaluate_model(out / "rankers" / name, split_dir, features=feats)
    pcfg = PeerConfig(seed=cfg.seed, features=rcfg.features, progress=progress)
    for name in PEERS:
        train_peer(name, split_dir, *codes, out / "rankers" / name, pcfg, features=feats)
        reports[name] = evaluate_peer(out / "rankers" / name, split_dir, features=feats)
    arms = {name: _click_row(rep) for name, rep in reports.items()}
    result = {
        "arms": arms,
        "codes": {
            "utilisation": [lv.utilisation for lv in quality.levels],
            "collision_rate": quality.collision_rate,
            "unique_code_ratio": quality.unique_code_ratio,
            "codebook_size": n_codes,
        },
        "split": {"train_rows": int(train.sum()), "test_rows": int(test.sum()), "protocol": "leave-last-out" if ds.manifest.get("time_kind") == "sequence_index" else "time"},
    }
    write_json(out / "results.json", result)
    (out / "results.md").write_text(render_real(result))
    return result


def _click_row(rep: dict) -> dict:
    """The click metrics of one arm's report on warm and cold items."""
    b = rep["buckets"]
    return {
        "auc_warm": b["seen_room"]["click"]["auc"], "auc_cold": b["new_room"]["click"]["auc"],
        "gauc_warm": b["seen_room"]["click"]["gauc"], "gauc_cold": b["new_room"]["click"]["gauc"],
        "auc": rep["click"]["auc"], "n_warm": b["seen_room"]["n"], "n_cold": b["new_room"]["n"],
    }  # fmt: skip


def render_real(r: dict) -> str:
    lines = ["| arm | AUC warm | AUC cold | GAUC warm | GAUC cold |", "|---|---|---|---|---|"]
    for name, a in r["arms"].items():
        lines.append(f"| {name} | {a['auc_warm']:.4f} | {a['auc_cold']:.4f} | {a['gauc_warm']:.4f} | {a['gauc_cold']:.4f} |")
    c = r["codes"]
    lines.append("")
    lines.append(f"codes: utilisation per level {[round(u, 3) for u in c['utilisation']]} (N = {c['codebook_size']}), "
                 f"collision rate {c['collision_rate']:.3f}; split {r['split']}")  # fmt: skip
    return "\n".join(lines)
