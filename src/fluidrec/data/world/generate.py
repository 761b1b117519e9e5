"""``generate_world``: build the synthetic livestream world and write it as a canonical dataset.

Steps (each with its own random stream spawned from the seed, so changing one part
does not reshuffle the others): taxonomy -> authors -> rooms and slice topics -> users
-> truth (``World``) -> tables (authors, users, rooms, slices with text and frames,
short videos) -> impressions day by day through the exposure policy, labels drawn from
the truth -> queries from engaged slices and videos -> manifest.

Impressions are never all in memory: each day is simulated and written as one Parquet
row group, then dropped.

Example:
    >>> cfg = WorldConfig.for_scale("tiny", seed=0)
    >>> out = generate_world(cfg, "runs/world_tiny", progress=False)
    >>> World.load(out).live_rooms(cfg.t0_ms + 21 * 3_600_000)
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from fluidrec.data.io import DatasetWriter, TableWriter, write_manifest, write_table
from fluidrec.data.schema import TEXT_FIELDS
from fluidrec.data.world import content
from fluidrec.data.world.config import WorldConfig
from fluidrec.data.world.population import (
    DAY_MS,
    DIURNAL,
    Authors,
    Rooms,
    Segments,
    Users,
    make_authors,
    make_rooms,
    make_segments,
    make_users,
    slice_times,
)
from fluidrec.data.world.taxonomy import Taxonomy, build_taxonomy
from fluidrec.data.world.truth import World

SOURCE = "synthetic-world"
SEGMENTS_FILE = "segments.parquet"  # written only when cfg.segments (docs/world.md, "Segments")
_CHUNK = 4096  # slices rendered per batch (bounds memory of text + frames)
_STREAMS = ("taxonomy", "authors", "rooms", "users", "truth", "slices", "videos", "impressions", "queries")


@dataclasses.dataclass
class WorldSummary:
    """What ``generate_world`` wrote (also returned by the CLI)."""

    out_dir: Path
    rows: dict[str, int]
    ctr: float
    seconds: float
    timings: dict[str, float]  # seconds per phase: population, slices, impressions, queries
    video_feed: dict[str, float] | None = None  # the feed's figures (video_feed.write_video_feed), when on


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(ss) for name, ss in zip(_STREAMS, children)}


def world_taxonomy(dataset_dir: str | os.PathLike) -> Taxonomy:
    """The topic tree and vocabularies of a generated dataset, rebuilt from its saved config and seed.

    Example:
        >>> tax = world_taxonomy("runs/world_small")
    """
    cfg = World.load(dataset_dir).cfg
    return build_taxonomy(cfg, _streams(cfg.seed)["taxonomy"])


def _binary_array(frames: np.ndarray) -> pa.Array:
    """(N, S, S, 3) uint8 -> pa.binary() array of N raw frames, without per-row Python objects."""
    n = len(frames)
    per = int(np.prod(frames.shape[1:]))
    offsets = np.arange(n + 1, dtype=np.int32) * per
    data = np.ascontiguousarray(frames).reshape(-1)  # (N, S, S, 3) -> (N*S*S*3,)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _slice_columns(
    tax: Taxonomy,
    palette: dict[str, np.ndarray],
    cfg: WorldConfig,
    leaves: np.ndarray,
    domain: str,
    titles: list[str] | None,
    rng: np.random.Generator,
) -> dict[str, object]:
    """Text fields, frames and topic columns for one batch of slices of one domain."""
    mix = content.MIXES[domain]
    cols: dict[str, object] = {}
    for field in TEXT_FIELDS:
        if field == "title" and titles is not None:
            cols[field] = titles  # live: set per room, stable across its slices
        else:
            cols[field] = content.sample_text(tax, leaves, field, mix[field], rng, prefix="#" if field == "tags" else "")
    cols["frame"] = _binary_array(content.render_frames(leaves, tax, palette, cfg.frame_size, rng))
    anc = tax.ancestors[leaves]
    for lv in range(4):
        cols[f"topic_l{lv + 1}"] = anc[:, lv].astype(np.int32)
    return cols


def _write_slices(
    out: Path,
    cfg: WorldConfig,
    tax: Taxonomy,
    authors: Authors,
    rooms: Rooms,
    rng: np.random.Generator,
    video_rng: np.random.Generator,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Live slices (in room order) then short videos; returns video ids/leaves/authors."""
    palette = content.make_palette(tax, rng)
    room_of, start, end = slice_times(cfg, rooms)
    # Room titles: drawn once per room from its opening topic, shared by its slices.
    room_titles = np.array(
        content.sample_text(tax, rooms.slice_leaf[rooms.first_slice], "title", content.MIXES["live"]["title"], rng), dtype=object
    )
    n_live = len(room_of)
    # Short videos: the same authors and taxonomy; one leaf from the author's mix.
    n_v = cfg.n_videos
    v_author = video_rng.integers(0, len(authors), size=n_v)
    cum = np.cumsum(authors.mix, axis=1)[v_author]
    pick = np.minimum((video_rng.random(n_v)[:, None] > cum).sum(axis=1), cum.shape[1] - 1)
    v_leaf = authors.leaves[v_author, pick]
    v_start = cfg.t0_ms + np.sort(video_rng.integers(0, cfg.days * DAY_MS, size=n_v))
    v_end = v_start + video_rng.integers(15, 61, size=n_v) * 1000  # 15-60 s videos (assumption)
    v_ids = n_live + np.arange(n_v, dtype=np.int64)

    total = n_live + n_v
    bar = _bar(total, "slices", progress)
    with TableWriter(out, "slices") as w:
        for s in range(0, n_live, _CHUNK):
            e = min(n_live, s + _CHUNK)
            cols = _slice_columns(tax, palette, cfg, rooms.slice_leaf[s:e], "live", list(room_titles[room_of[s:e]]), rng)
            w.write({
                "slice_id": np.arange(s, e, dtype=np.int64),
                "room_id": room_of[s:e],
                "author_id": rooms.author[room_of[s:e]],
                "start_ts": start[s:e],
                "end_ts": end[s:e],
                "domain": ["live"] * (e - s),
                **cols,
            })
            bar.update(e - s)
        for s in range(0, n_v, _CHUNK):
            e = min(n_v, s + _CHUNK)
            cols = _slice_columns(tax, palette, cfg, v_leaf[s:e], "video", None, video_rng)
            w.write({
                "slice_id": v_ids[s:e],
                "room_id": np.full(e - s, -1, dtype=np.int64),
                "author_id": v_author[s:e].astype(np.int64),
                "start_ts": v_start[s:e],
                "end_ts": v_end[s:e],
                "domain": ["video"] * (e - s),
                **cols,
            })
            bar.update(e - s)
    bar.close()
    return {"ids": v_ids, "leaf": v_leaf, "author": v_author, "start": v_start, "duration_s": (v_end - v_start) / 1000.0}


def _segment_streams(cfg: WorldConfig) -> tuple[np.random.Generator, np.random.Generator] | None:
    """Two streams (segment moments, segment text) of their own, or None without segments.

    They are spawned after the generator's own streams, so switching segments on changes
    no draw of the tables the world makes without them.
    """
    if not cfg.segments:
        return None
    children = np.random.SeedSequence(cfg.seed).spawn(len(_STREAMS) + 2)[len(_STREAMS):]
    return np.random.default_rng(children[0]), np.random.default_rng(children[1])


def _video_feed_streams(cfg: WorldConfig) -> tuple[np.random.Generator, np.random.Generator] | None:
    """Two streams (feed truth, feed draws) of their own, or None without the video feed.

    Spawned after the generator's and the segments' streams, so switching the feed on
    changes no draw of any other table.
    """
    if not cfg.video_feed:
        return None
    children = np.random.SeedSequence(cfg.seed).spawn(len(_STREAMS) + 4)[len(_STREAMS) + 2:]
    return np.random.default_rng(children[0]), np.random.default_rng(children[1])


def _write_video_feed(out: Path, cfg: WorldConfig, tax: Taxonomy, users: Users, authors: Authors,
                      videos: dict[str, np.ndarray], progress: bool) -> dict[str, float] | None:
    """``video_impressions.parquet`` and its truth (cfg.video_feed only; docs/world.md, "Video feed")."""
    streams = _video_feed_streams(cfg)
    if streams is None:
        return None
    from fluidrec.data.world import video_feed

    vids = video_feed.Videos(videos["ids"], videos["leaf"].astype(np.int64), videos["author"].astype(np.int64),
                             videos["start"].astype(np.int64), videos["duration_s"])
    return video_feed.write_video_feed(out, cfg, tax, users, authors.quality, vids, streams, progress)


def _write_segments(out: Path, cfg: WorldConfig, tax: Taxonomy, rooms: Rooms, segs: Segments,
                    rng: np.random.Generator, progress: bool) -> Path:
    """``segments.parquet``: one row per 30-s segment (a foresight side table, in segment_id order)."""
    import pyarrow.parquet as pq

    from fluidrec.utils.io import atomic_path

    bar = _bar(len(segs), "segments", progress)
    path = out / SEGMENTS_FILE
    with atomic_path(path) as tmp:
        writer = None
        for s in range(0, max(len(segs), 1), _CHUNK * 4):
            e = min(len(segs), s + _CHUNK * 4)
            anc = tax.ancestors[segs.leaf[s:e]]
            cols = {
                "segment_id": np.arange(s, e, dtype=np.int64),
                "room_id": segs.room[s:e],
                "author_id": rooms.author[segs.room[s:e]],
                "slice_id": segs.slice[s:e],
                "start_ts": segs.start_ms[s:e],
                "end_ts": segs.end_ms[s:e],
                **{f"topic_l{lv + 1}": anc[:, lv].astype(np.int32) for lv in range(4)},
                "moment": segs.moment[s:e],
                **content.segment_text(tax, segs.leaf[s:e], segs.moment[s:e], cfg.highlight_words, rng),
            }
            table = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
            bar.update(e - s)
        if writer is not None:
            writer.close()
    bar.close()
    return path


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", disable=not progress, leave=False)


def _simulate_day(
    day: int,
    cfg: WorldConfig,
    world: World,
    users: Users,
    rooms: Rooms,
    state: dict[str, np.ndarray],
    rng: np.random.Generator,
    request_base: int,
) -> dict[str, np.ndarray]:
    """All impressions of one day, in time order (requests x slates, labels from the truth).

    Exposure policy (the incumbent ranker that produced the log): every request sees up
    to ``slate_size`` rooms live for the whole current step, sampled without replacement
    by Gumbel-top-k on ``q^a * (1 + audience)^b * exp(c * affinity)`` and ranked by that
    sampled score (position 0 = top). ``audience`` is an exponentially decaying count of
    the room's recent clicks, so popular rooms snowball.
    """
    n_req = cfg.requests_per_day
    hour = rng.choice(24, size=n_req, p=DIURNAL)
    ms_of_day = np.sort(hour * 3_600_000 + rng.integers(0, 3_600_000, size=n_req))
    req_user = rng.choice(len(users), size=n_req, p=state["user_p"])
    day_ms = cfg.t0_ms + day * DAY_MS
    step_ms = cfg.step_s * 1000
    n_steps = -(-DAY_MS // step_ms)
    bounds = np.searchsorted(ms_of_day, np.arange(n_steps + 1) * step_ms)
    decay = 0.5 ** (cfg.step_s / cfg.audience_half_life_s)
    log_q = np.log(world.author_quality)[rooms.author]  # (R,)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "request_id", "user_id", "room_id", "position", "click")}
    audience = state["audience"]
    for step in range(n_steps):
        ws = day_ms + step * step_ms
        we = ws + step_ms
        # Active set: rooms started by the step start and still on air at its end.
        ptr = int(state["ptr"])
        new_ptr = int(np.searchsorted(rooms.start_ms, ws, side="right"))
        active = np.concatenate([state["active"], np.arange(ptr, new_ptr, dtype=np.int64)])
        active = active[rooms.end_ms[active] >= we]
        state["active"], state["ptr"] = active, new_ptr
        audience[active] *= decay
        b0, b1 = bounds[step], bounds[step + 1]
        if b1 == b0 or len(active) == 0:
            continue
        users_b = req_user[b0:b1]  # (B,)
        ts_b = day_ms + ms_of_day[b0:b1]  # (B,)
        k = min(cfg.slate_size, len(active))
        leaf_now = rooms.slice_leaf[world.slice_on_air(active, ws)]  # (L,)
        base = cfg.exposure_quality_pow * log_q[active] + cfg.exposure_audience_pow * np.log1p(audience[active])  # (L,)
        score = base[None, :] + cfg.exposure_affinity * users.affinity[users_b[:, None], leaf_now[None, :]]  # (B, L)
        score = score + rng.gumbel(size=score.shape)
        top = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < len(active) else np.tile(np.arange(k), (len(users_b), 1))
        order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
        slate = active[np.take_along_axis(top, order, axis=1)]  # (B, K) in display order
        nb = len(users_b)
        room_ids = slate.reshape(-1)  # (B*K,)
        user_ids = np.repeat(users_b, k)
        ts = np.repeat(ts_b, k)
        position = np.tile(np.arange(k, dtype=np.int32), nb)
        click = world.sample_clicks(user_ids, room_ids, ts, position, rng, validate=False)
        np.add.at(audience, room_ids, click)
        parts["ts"].append(ts)
        parts["request_id"].append(np.repeat(request_base + np.arange(b0, b1, dtype=np.int64), k))
        parts["user_id"].append(user_ids)
        parts["room_id"].append(room_ids)
        parts["position"].append(position)
        parts["click"].append(click)
    cols = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in parts.items()}
    cols["slice_id"] = world.slice_on_air(cols["room_id"], cols["ts"])
    # Everything after the click is drawn for the whole day at once (it feeds no exposure state).
    cols.update(world.sample_after_click(cols["user_id"], cols["room_id"], cols["ts"], cols["click"], rng))
    cols["click"] = cols["click"].astype(np.int8)
    return cols


def _query_table(
    cfg: WorldConfig,
    tax: Taxonomy,
    rooms: Rooms,
    engaged: np.ndarray,
    videos: dict[str, np.ndarray],
    quality: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, object]:
    """Search-like keyword queries paired with engaged live slices and with videos.

    A live slice gets one query per engagement (like or long view), at most
    ``live_queries_max``; a video gets Poisson(video_queries_mean * sqrt(quality)) queries
    (denser engagement on short videos, fluid.txt 3.1.1), at most ``video_queries_max``.
    """
    n_live = np.minimum(engaged, cfg.live_queries_max)
    n_vid = np.minimum(rng.poisson(cfg.video_queries_mean * np.sqrt(quality[videos["author"]])), cfg.video_queries_max)
    slice_ids = np.concatenate([np.repeat(np.arange(len(engaged), dtype=np.int64), n_live), np.repeat(videos["ids"], n_vid)])
    leaves = np.concatenate([np.repeat(rooms.slice_leaf, n_live), np.repeat(videos["leaf"], n_vid)])
    texts = content.sample_text(tax, leaves, "query", content.MIXES["query"]["query"], rng) if len(leaves) else []
    return {"query_id": np.arange(len(slice_ids), dtype=np.int64), "query_text": texts, "slice_id": slice_ids}


def generate_world(cfg: WorldConfig, out_dir: str | os.PathLike, *, progress: bool = True) -> Path:
    """Generate the world for ``cfg`` into ``out_dir`` (a canonical dataset + ``world/`` truth).

    Args:
        cfg: the world config (``WorldConfig.for_scale(scale, seed)``).
        out_dir: output directory (created). The dataset is built beside it and swapped in
            whole at the end (``DatasetWriter``): an existing dataset there is replaced, and
            stays intact until the new one is complete.
        progress: show tqdm bars (slices, days).

    Returns:
        ``out_dir`` as a Path. ``generate_world_summary`` returns row counts and timing too.

    Example:
        >>> generate_world(WorldConfig.for_scale("tiny", seed=0), "runs/tiny", progress=False)
    """
    return generate_world_summary(cfg, out_dir, progress=progress).out_dir


def generate_world_summary(cfg: WorldConfig, out_dir: str | os.PathLike, *, progress: bool = True) -> WorldSummary:
    """Like ``generate_world`` but returns a ``WorldSummary`` (rows per table, CTR, seconds)."""
    t_start = time.perf_counter()
    with DatasetWriter(out_dir) as tmp:
        summary = _generate(cfg, tmp, progress, t_start)
    return dataclasses.replace(summary, out_dir=Path(out_dir))


@dataclasses.dataclass
class _Population:
    """Everything drawn before the tables: taxonomy, authors, rooms, users and (optionally) segments."""

    tax: Taxonomy
    authors: Authors
    rooms: Rooms
    users: Users
    segments: Segments | None
    segment_text_rng: np.random.Generator | None  # the segments' text stream, with segments


def _make_population(cfg: WorldConfig, rng: dict[str, np.random.Generator]) -> _Population:
    """Draw the population, each part from its own stream."""
    tax = build_taxonomy(cfg, rng["taxonomy"])
    authors = make_authors(cfg, tax, rng["authors"])
    rooms = make_rooms(cfg, tax, authors, rng["rooms"])
    users = make_users(cfg, tax, rng["users"])
    segments = make_segments(cfg, tax, rooms, seg_rng[0]) if (seg_rng := _segment_streams(cfg)) else None
    return _Population(tax, authors, rooms, users, segments, seg_rng[1] if seg_rng else None)


def _make_truth(cfg: WorldConfig, pop: _Population, truth_rng: np.random.Generator) -> World:
    """The hidden truth (``World``) the impressions' labels are drawn from."""
    rooms, authors, users, segments = pop.rooms, pop.authors, pop.users, pop.segments
    return World(cfg, {
        "room_author": rooms.author,
        "room_start": rooms.start_ms,
        "room_end": rooms.end_ms,
        "room_first_slice": rooms.first_slice,
        "room_n_slices": rooms.n_slices,
        "room_effect": truth_rng.normal(0.0, cfg.room_effect_sigma, size=len(rooms)).astype(np.float32),
        "slice_leaf": rooms.slice_leaf,
        "author_quality": authors.quality,
        "user_affinity": users.affinity,
        "user_bias": users.bias,
        **({} if segments is None else {"segment_moment": segments.moment, "room_first_segment": segments.room_first}),
    })


def _write_entity_tables(out: Path, pop: _Population, authors_rng: np.random.Generator) -> None:
    """Write the authors (with bios), users and rooms tables."""
    tax, authors, users, rooms = pop.tax, pop.authors, pop.users, pop.rooms
    bios = content.sample_text(tax, authors.leaves[:, 0], "bio", content.MIXES["bio"]["bio"], authors_rng)
    write_table(out, "authors", {
        "author_id": np.arange(len(authors), dtype=np.int64),
        "quality": authors.quality,
        "bio": bios,
        "home_topic_l1": authors.home_l1.astype(np.int32),
    })
    write_table(out, "users", {
        "user_id": np.arange(len(users), dtype=np.int64),
        "age_bucket": users.age_bucket,
        "gender": users.gender,
        "region": users.region,
        "activity_level": users.activity_level,
    })
    write_table(out, "rooms", {
        "room_id": np.arange(len(rooms), dtype=np.int64),
        "author_id": rooms.author,
        "start_ts": rooms.start_ms,
        "end_ts": rooms.end_ms,
    })


@dataclasses.dataclass(frozen=True)
class _ImpressionTotals:
    """What the impression days add up to."""

    engaged: np.ndarray  # (slices,) int64 likes or long views per slice (drives the queries)
    clicks: int
    impressions: int


def _write_impressions(
    out: Path, cfg: WorldConfig, world: World, users: Users, rooms: Rooms, rng: np.random.Generator, progress: bool
) -> _ImpressionTotals:
    """Simulate and write the impressions, one day (one row group) at a time."""
    from tqdm.auto import tqdm

    state = {
        "active": np.zeros(0, dtype=np.int64),
        "ptr": np.int64(0),
        "audience": np.zeros(len(rooms), dtype=np.float64),
        "user_p": users.activity / users.activity.sum(),
    }
    engaged = np.zeros(len(rooms.slice_leaf), dtype=np.int64)
    clicks = n_imp = n_req = 0
    with TableWriter(out, "impressions") as w:
        for day in tqdm(range(cfg.days), desc="days", unit="day", disable=not progress, leave=False):
            cols = _simulate_day(day, cfg, world, users, rooms, state, rng, n_req)
            n_req += cfg.requests_per_day
            w.write(cols)
            eng = (cols["like"] > 0) | (cols["long_view"] > 0)
            engaged += np.bincount(cols["slice_id"][eng], minlength=len(engaged))
            clicks += int(cols["click"].sum())
            n_imp += len(cols["ts"])
    return _ImpressionTotals(engaged, clicks, n_imp)


def _generate(cfg: WorldConfig, out: Path, progress: bool, t_start: float) -> WorldSummary:
    """Write every table, the truth and (last) the manifest into ``out``."""
    rng = _streams(cfg.seed)
    pop = _make_population(cfg, rng)
    tax, authors, rooms, users = pop.tax, pop.authors, pop.rooms, pop.users
    world = _make_truth(cfg, pop, rng["truth"])
    world.save(out)
    timings = {"population": time.perf_counter() - t_start}

    _write_entity_tables(out, pop, rng["authors"])
    t0 = time.perf_counter()
    videos = _write_slices(out, cfg, tax, authors, rooms, rng["slices"], rng["videos"], progress)
    timings["slices"] = time.perf_counter() - t0
    if pop.segments is not None:
        t0 = time.perf_counter()
        _write_segments(out, cfg, tax, rooms, pop.segments, pop.segment_text_rng, progress)
        timings["segments"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    totals = _write_impressions(out, cfg, world, users, rooms, rng["impressions"], progress)
    timings["impressions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_table(out, "queries", _query_table(cfg, tax, rooms, totals.engaged, videos, authors.quality, rng["queries"]))
    timings["queries"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feed = _write_video_feed(out, cfg, tax, users, authors, videos, progress)
    if feed is not None:
        timings["video_feed"] = time.perf_counter() - t0

    manifest = write_manifest(out, source=SOURCE, seed=cfg.seed, extra={
        "scale": cfg.scale,
        "frame_size": cfg.frame_size,
        "world_config": cfg.to_dict(),
        "taxonomy": {"branching": list(cfg.branching), "l1_names": tax.names[0], "l2_names": tax.names[1]},
    })
    return WorldSummary(out, dict(manifest["row_counts"]), totals.clicks / max(totals.impressions, 1), time.perf_counter() - t_start,
                        {k: round(v, 3) for k, v in timings.items()}, feed)
