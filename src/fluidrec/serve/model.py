"""What a service serves, loaded from a run directory: the ranker (as a compiled ``Scorer``), the
encoder and the RQ-KMeans code model, and the user profiles of the run's dataset.

Two layouts are accepted for ``--run DIR``:

- a main-job run (``fluidrec reproduce``, ``fluidrec.experiments.reproduce.RunPaths``):
  ``rankers/<arm>/model.pt``, ``encoder/``, ``codes/model/``, ``world/``;
- a ranker directory (``fluidrec ranker train --out DIR``): ``model.pt`` and ``config.json``,
  whose ``dataset_dir`` gives the user profiles and whose ``codes_path``'s folder may hold the
  code model (``model/``); the encoder is then given with ``--encoder``.

Without an encoder a slice must come with an embedding or codes; without a code model, with codes.

Shapes: B candidates, D embedding width, L code levels, S frame side.

Example:
    >>> m = ServingModel.load(Artifacts.resolve("runs/demo", arm="fluid"))
    >>> m.quantize(m.embed({"title": "karaoke night"}, None))     # (L,) codes
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fluidrec.codes.rooms import UNKNOWN_CODE
from fluidrec.errors import DataError, UsageError

log = logging.getLogger("fluidrec.serve")


@dataclasses.dataclass(frozen=True)
class Artifacts:
    """Paths of the served parts (None: not available)."""

    ranker: Path
    encoder: Path | None
    code_model: Path | None
    dataset: Path | None
    arm: str

    @classmethod
    def resolve(cls, run: str | Path, *, arm: str = "fluid", encoder: str | Path | None = None, code_model: str | Path | None = None) -> Artifacts:
        """Find the parts of ``run`` (see the module docstring); explicit ``encoder``/``code_model`` win."""
        from fluidrec.experiments.reproduce import RunPaths
        from fluidrec.ranker.train import CHECKPOINT, CONFIG
        from fluidrec.utils.io import read_json

        root = Path(run)
        if not root.is_dir():
            raise UsageError(f"--run {root} is not a directory")
        paths = RunPaths(root)
        if (paths.ranker(arm) / CHECKPOINT).is_file():
            found = cls(paths.ranker(arm), paths.encoder, paths.codes / "model", paths.world, arm)
        elif (root / CHECKPOINT).is_file():
            cfg = read_json(root / CONFIG) if (root / CONFIG).is_file() else {}
            codes_dir = Path(cfg["codes_path"]).parent if cfg.get("codes_path") else root
            dataset = Path(cfg["dataset_dir"]) if cfg.get("dataset_dir") else None
            found = cls(root, None, codes_dir / "model", dataset, str(cfg.get("arm", root.name)))
        else:
            raise UsageError(f"--run {root} has neither rankers/{arm}/{CHECKPOINT} (a `fluidrec reproduce` run) nor {CHECKPOINT} (a `fluidrec ranker train` output)")
        found = dataclasses.replace(
            found,
            encoder=Path(encoder) if encoder else (found.encoder if found.encoder and found.encoder.is_dir() else None),
            code_model=Path(code_model) if code_model else (found.code_model if found.code_model and found.code_model.is_dir() else None),
            dataset=found.dataset if found.dataset and found.dataset.is_dir() else None,
        )
        for name in ("encoder", "code_model"):
            p = getattr(found, name)
            if p is not None and not p.is_dir():
                raise UsageError(f"--{name.replace('_', '-')} {p} is not a directory")
        return found


class ServingModel:
    """The loaded parts and the three operations the service needs: embed, quantize, score."""

    def __init__(self, artifacts: Artifacts, ranker, scorer, context, encoder, code_model, compiled=None) -> None:
        self.artifacts, self.ranker, self.scorer, self.context = artifacts, ranker, scorer, context
        self._compiled = compiled  # a compiled Scorer not yet in use (``compile_in_background``)
        self.encoder, self.code_model = encoder, code_model
        tok = ranker.spec.tokenizer
        self.levels, self.history_len, self.num_codes = tok.levels, tok.history_len, tok.num_codes
        self.tasks = tuple(t.name for t in ranker.tasks)
        self.codebook_size = code_model.codebook_size if code_model is not None else tok.num_codes
        self.fields = tuple(encoder.text.fields) if encoder is not None else ()
        self.frame_size = getattr(encoder, "frame_size", None) if encoder is not None else None
        self.embedding_dim = code_model.dim if code_model is not None else None
        self.compile_state = "done" if scorer.compiled else "off"
        self.compiled_s: float | None = None

    @classmethod
    def load(cls, artifacts: Artifacts, *, compile: bool = True, threads: int = 1) -> ServingModel:
        """Load every part and check they fit together (levels, widths).

        Args:
            compile: score with the compiled scorer from the start (its first call compiles: tens of
                seconds); False: score eagerly until ``compile_in_background`` swaps it in.
            threads: threads of the compiled scorer's fused backbone kernel (its own threads), where
                it runs (``fluidrec.ranker.inference``, ``backbone="auto"``).
                Every other torch op runs on one thread: on a shared 2-core machine OpenMP's
                wake-ups cost more than a second thread gains (an LSA embedding of one slice took
                0.7 ms on one thread, up to 60 ms on two under load).
        """
        import torch

        from fluidrec.ranker.evaluate import ScoringContext
        from fluidrec.ranker.inference import compile_scorer
        from fluidrec.ranker.model import load_checkpoint
        from fluidrec.ranker.train import CHECKPOINT

        ranker = load_checkpoint(artifacts.ranker / CHECKPOINT)
        # dynamic: one graph for every candidate count; a graph per count would stall a request for ~20 s at each new count.
        # backbone "auto": the fused C backbone where its SIMD loops run (the scorer's ``backbone`` says which), else torch's
        compiled = compile_scorer(ranker, compile=True, dynamic=True, backbone="auto", threads=threads)  # compiles at its first call
        torch.set_num_threads(1)
        scorer = compiled if compile else compile_scorer(ranker, compile=False)
        context = ScoringContext.from_dataset(artifacts.dataset, ranker) if artifacts.dataset else _empty_context(ranker)
        encoder = code_model = None
        if artifacts.code_model is not None:
            from fluidrec.codes import RQKMeans

            code_model = RQKMeans.load(artifacts.code_model)
            if code_model.levels != ranker.spec.tokenizer.levels:
                raise UsageError(f"code model {artifacts.code_model} has {code_model.levels} levels, the ranker {ranker.spec.tokenizer.levels}")
        if artifacts.encoder is not None:
            from fluidrec.encoder.model import load_encoder

            encoder, _ = load_encoder(artifacts.encoder)
            if code_model is not None and encoder.out_dim != code_model.dim:
                raise UsageError(f"encoder {artifacts.encoder} embeds to {encoder.out_dim} dims, the code model expects {code_model.dim}")
        return cls(artifacts, ranker, scorer, context, encoder, code_model, compiled=None if compile else compiled)

    def embed(self, texts: Mapping[str, str], frame: np.ndarray | None) -> np.ndarray:
        """(D,) float32 embedding of one slice from its text fields and optional (S, S, 3) uint8 frame."""
        import torch

        from fluidrec.encoder.batches import ItemBatch, pack_text

        enc = self.encoder
        has = np.array([frame is not None])
        tokens = enc.text.item_tokens({f: [t] for f, t in texts.items()}, has_frame=has, table="request")
        frames = None
        if self.frame_size is not None:
            frames = torch.from_numpy(frame[None] if frame is not None else np.zeros((1, self.frame_size, self.frame_size, 3), np.uint8))
        batch = ItemBatch(pack_text(tokens, enc.text.pad_id), frames, torch.from_numpy(has))
        with torch.inference_mode():
            return enc.encode_items(batch).numpy()[0]

    def quantize(self, z: np.ndarray) -> tuple[int, ...]:
        """(L,) codes of one (D,) embedding."""
        return tuple(int(c) for c in self.code_model.encode(z[None].astype(np.float32), source="embedding")[0])

    def ranker_codes(self, codes: np.ndarray) -> np.ndarray:
        """Codes as the ranker reads them: a codeword it never saw in training (>= its num_codes) is unknown."""
        return np.where(codes >= self.num_codes, UNKNOWN_CODE, codes)

    def _score_dummy(self, scorer, candidates: int) -> None:
        from fluidrec.ranker.evaluate import score_candidates

        codes = np.zeros((candidates, self.levels), np.int64)
        hist = np.zeros((1, self.levels), np.int64)
        score_candidates(scorer, self.context, 0, np.arange(candidates), codes, codes, 0, history_codes=hist)
        score_candidates(scorer, self.context, 0, np.arange(7), codes[:7], codes[:7], 0)  # another size, no history
        # one candidate: torch specialises size 1, so without this a client's first 1-room request would compile (seconds)
        score_candidates(scorer, self.context, 0, np.arange(1), codes[:1], codes[:1], 0, history_codes=hist)

    def warm_up(self, candidates: int = 200) -> float:
        """Run every path once (a compiled scorer compiles on its first call); returns the seconds it took."""
        t0 = time.perf_counter()
        self._score_dummy(self.scorer, candidates)
        if self.encoder is not None and self.code_model is not None:
            try:
                self.quantize(self.embed({self.fields[0]: "warm up"}, None))
            except DataError:  # an encoder that cannot embed this placeholder still serves real slices
                pass
        return time.perf_counter() - t0

    def compile_in_background(self, candidates: int = 200) -> threading.Thread | None:
        """Compile a scorer on a thread and swap it in when it works; until then requests score eagerly.

        The service answers within seconds of starting instead of after the compilation
        (tens of seconds on 2 cores); the scores are the same up to float rounding.
        ``compile_state`` is ``pending``, then ``done`` (``compiled_s`` seconds) or ``failed``.
        """
        self.compile_state = "pending"
        t0 = time.perf_counter()
        compiled = self._compiled
        if compiled is None:  # already scoring with it
            self.compile_state = "done"
            return None

        def work() -> None:
            try:
                self._score_dummy(compiled, candidates)  # compiles here
            except Exception:  # noqa: BLE001 - the eager scorer keeps serving; the log says why
                log.exception("compiling the scorer failed; scoring stays eager")
                self.compile_state = "failed"
                return
            if not compiled.compiled:  # Scorer fell back to eager itself (no C++ compiler): nothing to gain
                self.compile_state = "failed"
                return
            self.scorer, self._compiled = compiled, None  # one attribute store: a request sees the old or the new scorer, whole
            self.compiled_s = time.perf_counter() - t0
            self.compile_state = "done"
            log.warning("fluidrec serve: compiled scorer in use after %.1f s", self.compiled_s)

        thread = threading.Thread(target=work, name="fluidrec-compile", daemon=True)
        thread.start()
        return thread


def _empty_context(ranker):
    """A ScoringContext with no users and rooms (a ranker whose dataset is gone: profiles read as 0)."""
    from fluidrec.data.schema import USER_PROFILE_COLUMNS
    from fluidrec.ranker.evaluate import ScoringContext

    tc = ranker.spec.tokenizer
    z = np.zeros(0, np.int64)
    return ScoringContext(z, np.zeros((0, len(USER_PROFILE_COLUMNS)), np.int64), z, z, z, tc.user_buckets, tc.author_buckets)
