"""A seconds-sized run directory for serving tests and benchmarks, in the main job's layout.

``build_tiny_run(out)``: the tiny synthetic world -> the TF-IDF + SVD encoder -> embeddings ->
RQ-KMeans (4 levels of 8) -> slice and room codes -> the ``fluid`` ranker (``ranker_demo``)
-- the stages of ``fluidrec reproduce`` with the same functions, minus everything serving
does not read (peers, A/B, report), in ~20 s on 2 cores instead of minutes.

Example:
    >>> paths = build_tiny_run(Path("/tmp/tiny_run"))      # then: fluidrec serve --run /tmp/tiny_run
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path


def build_tiny_run(out: str | Path, *, world: str | Path | None = None, seed: int = 0, max_train_rows: int | None = None):
    """Write the run under ``out`` (``RunPaths`` layout) and return its ``RunPaths``.

    Args:
        world: an existing canonical dataset to copy in as ``world/`` (default: generate the tiny world).
        max_train_rows: train the ranker on this many rows only (faster; default all).
    """
    from fluidrec.codes import RQKMeans, room_codes_for_dataset, write_codes, write_room_codes
    from fluidrec.data.embeddings import read_embeddings
    from fluidrec.data.world import WorldConfig, generate_world
    from fluidrec.encoder.config import encoder_lsa
    from fluidrec.encoder.embed import embed_dataset
    from fluidrec.encoder.lsa import train_lsa
    from fluidrec.experiments.reproduce import RunPaths
    from fluidrec.ranker.train import ranker_demo, train_arm

    paths = RunPaths(Path(out))
    paths.root.mkdir(parents=True, exist_ok=True)
    if world is not None:
        shutil.copytree(world, paths.world)
    else:
        generate_world(WorldConfig.for_scale("tiny", seed=seed), paths.world, progress=False)
    train_lsa(dataclasses.replace(encoder_lsa(seed), out_dim=32, svd_iter=3), paths.world, paths.encoder)
    embed_dataset(paths.encoder, paths.world, paths.embeddings, progress=False)
    ids, z = read_embeddings(paths.embeddings)
    model = RQKMeans(levels=4, codebook_size=8, seed=seed).fit(z)
    model.save(paths.codes / "model")
    codes = model.encode(z)
    write_codes(paths.slice_codes, ids, codes)
    rc = room_codes_for_dataset(paths.world, ids, codes)
    write_room_codes(paths.room_codes, rc.room_ids, rc.codes)
    cfg = dataclasses.replace(ranker_demo(), seed=seed, progress=False, max_train_rows=max_train_rows)
    train_arm("fluid", paths.world, paths.slice_codes, paths.room_codes, paths.ranker("fluid"), cfg)
    return paths
