"""Configuration of the main job (``fluidrec reproduce``): one typed dataclass that
resolves every stage's settings and is written beside the results."""

from __future__ import annotations

import dataclasses

from fluidrec.errors import check

SCALES = ("tiny", "small", "medium", "large")

# Arms trained by the main job, and the paper row each one fills.
TABLE3_ARMS = {"baseline": "baseline", "slice": "fluid_stage1", "no_id": "no_id", "fluid": "fluid"}
TABLE5_ARMS = {"prefix_ngram": "fluid", "levelwise": "fluid_levelwise", "independent_tables": "fluid", "shared_tables": "fluid_shared"}
TABLE7_ARMS = {
    "early_replace": "early_replace",
    "early_concat": "early_concat",
    "gate_learned": "gate_learned",
    "gate_feature": "gate_feature",
    "late_em3": "late_em3",
    "late": "late",
    "naive_joint": "naive_joint",
    "stage1": "fluid_stage1",
    "stage2": "fluid_stage2",
    "stage3": "fluid",
    "fluid_id_back": "fluid_id_back",
}
AB_ARMS = {"baseline": "baseline", "slice": "fluid_stage1", "no_id": "no_id", "fluid": "fluid"}

# Table 3 row order (results.json and report): the world's own scores, the classical peers,
# the neural arms, and FLUID on the true-topic codes.
TRUTH_ROWS = ("oracle", "ceiling_no_id", "content_only", "position_only")  # = fluidrec.simulate.truth_rows.TRUTH_ROWS
PEER_ROWS = ("lr", "gbdt")  # = fluidrec.ranker.names.PEER_ARMS
TRUE_CODES_ROW = "fluid_true_codes"  # the FLUID arm trained on codes read from the world's topic path
NEURAL_ROWS = (*TABLE3_ARMS, TRUE_CODES_ROW)  # the rows trained once per ranker seed
TABLE3_ROWS = (*TRUTH_ROWS, *PEER_ROWS, *NEURAL_ROWS)

ENCODER_PRESETS = ("demo", "tiny", "lsa")


def all_arms() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for table in (TABLE3_ARMS, TABLE5_ARMS, TABLE7_ARMS, AB_ARMS):
        for arm in table.values():
            seen[arm] = None
    return tuple(seen)


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Settings of the main job.

    Args:
        scale: synthetic world scale (tiny for tests, small for the demo).
        seed: seeds every stage.
        encoder_preset: the encoder whose embeddings become the codes: ``lsa`` (default: the
            TF-IDF + SVD reference encoder; on the small world it ties the CPU-sized neural
            encoder, within the seed spread over 5 seeds, at a tenth of the cost, docs/encoder.md),
            ``demo`` (MiniLM cut to 1 layer with added words; the paper's recipe, always trained
            for Table 6) or ``tiny`` (tests).
        encoder_steps: training steps of the main encoder (None = the preset's).
        ablation_steps: training steps of each encoder-ablation run (0 skips Table 6).
        ablation_seeds: seeds of every Table 6 row (``seed, seed + 1, ...``): mean ± sd, and per
            comparison whether the difference exceeds the seed spread.
        code_levels, codebook_size: RQ-KMeans shape (the paper: 4 x 64).
        ranker_preset: ``demo`` (1 layer, D=16) or ``small`` (the benchmark default).
        ab_requests: held-out requests replayed in the simulated A/B test.
        ab_candidates: live rooms scored per request.
        n_boot: bootstrap resamples for the A/B confidence intervals.
        closed_window_minutes: the closed-loop A/B's online-training interval (arms learn
            from what they served, and user histories update, once per window).
        seeds: ranker seeds of the Table 3 neural rows (baseline, slice, no_id, fluid,
            fluid_true_codes): ``seed, seed + 1, ...``. Only the ranker's seed changes; the
            world, encoder and codes are those of ``seed``. Other tables use ``seed`` alone.
    """

    scale: str = "small"
    seed: int = 0
    encoder_preset: str = "lsa"
    encoder_steps: int | None = None
    ablation_steps: int = 100
    ablation_seeds: int = 3
    code_levels: int = 4
    codebook_size: int = 64
    ranker_preset: str = "demo"
    ab_requests: int = 6000
    ab_candidates: int = 40
    n_boot: int = 1000
    seeds: int = 3
    closed_window_minutes: float = 10.0

    def __post_init__(self) -> None:
        check(self.scale in SCALES, f"scale must be one of {SCALES}, got {self.scale!r}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.encoder_preset in ENCODER_PRESETS, f"encoder_preset must be one of {ENCODER_PRESETS}, got {self.encoder_preset!r}")
        check(self.encoder_steps is None or self.encoder_steps > 0, "encoder_steps must be > 0")
        check(self.encoder_steps is None or self.encoder_preset != "lsa", "encoder_steps does not apply to the lsa preset (it has no training steps)")
        check(self.ablation_steps >= 0, "ablation_steps must be >= 0")
        check(isinstance(self.ablation_seeds, int) and self.ablation_seeds >= 1, f"ablation_seeds must be an int >= 1, got {self.ablation_seeds!r}")
        check(self.code_levels >= 1 and self.codebook_size >= 2, "need code_levels >= 1 and codebook_size >= 2")
        check(self.ranker_preset in ("demo", "small"), f"ranker_preset must be demo or small, got {self.ranker_preset!r}")
        check(self.ab_requests > 0 and self.ab_candidates >= 6, "need ab_requests > 0 and ab_candidates >= 6")
        check(isinstance(self.seeds, int) and self.seeds >= 1, f"seeds must be an int >= 1, got {self.seeds!r}")
        check(self.closed_window_minutes > 0, f"closed_window_minutes must be > 0, got {self.closed_window_minutes}")

    @property
    def ranker_seeds(self) -> tuple[int, ...]:
        """Ranker seeds of the Table 3 neural rows; the first is ``seed`` (every other table's)."""
        return tuple(range(self.seed, self.seed + self.seeds))

    @property
    def neural_encoder_preset(self) -> str:
        """The neural preset behind the ablation (Table 6) and the lsa evaluation sizes."""
        if self.encoder_preset != "lsa":
            return self.encoder_preset
        return "tiny" if self.scale == "tiny" else "demo"

    def ranker_config(self, ranker_seed: int | None = None):
        """The ``RankerTrainConfig`` of every ranker arm: the ``ranker_preset``'s, with ``ranker_seed``
        (default ``seed``); progress bars off."""
        from fluidrec.ranker.train import ranker_demo, ranker_small

        base = ranker_demo() if self.ranker_preset == "demo" else ranker_small()
        return dataclasses.replace(base, seed=self.seed if ranker_seed is None else ranker_seed, progress=False)

    @classmethod
    def tiny(cls, seed: int = 0, *, seeds: int = 2) -> ReproduceConfig:
        """Seconds-sized settings for tests: tiny world, tiny encoder, few A/B requests, two ranker seeds."""
        return cls(
            scale="tiny", seed=seed, encoder_preset="tiny", ablation_steps=4, ablation_seeds=1, codebook_size=8, ab_requests=300, ab_candidates=10,
            n_boot=200, seeds=seeds,
        )  # fmt: skip
