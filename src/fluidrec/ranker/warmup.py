"""Staged warmup as data: a list of ``WarmupStage`` objects, run in order over the time-ordered stream.

FLUID (fluid.txt 3.4.3) changes one item-side component per stage:

    stage0  baseline {g}                 first part of the stream
    stage1  + slice token {g, s}         init from stage0
    stage2  phase g out {g * lam, s}     lam: 1 -> 0 linearly, then exactly 0 (no ID lookups)
    stage3  + room token {s, r}          r's tables copied from the warm slice tables
    online  {s, r}                       the rest of the stream, no ID

Example:
    >>> stages = fluid_stages(WarmupConfig())
    >>> [s.name for s in stages]
    ['stage0', 'stage1', 'stage2', 'stage3', 'online']
    >>> id_scale_at(stages[2], 0.9)
    0.0
"""

from __future__ import annotations

import dataclasses

from fluidrec.errors import check
from fluidrec.ranker.names import CANDIDATE_TOKENS, FUSIONS


@dataclasses.dataclass(frozen=True)
class WarmupStage:
    """One training stage over a contiguous share of the training stream.

    Args:
        name: label in logs and summaries.
        tokens: candidate-side tokens (the fixed user/context tokens are always present).
        fraction: share of the training rows this stage consumes (stages sum to 1).
        fusion: early-fusion kind when tokens contain "early".
        init: start from the previous stage's weights (False: fresh, e.g. naive joint training).
        copy_tokens: (new, source) pairs: new token starts as a copy of source (tables and per-token rows).
        id_scale_from, id_scale_to: item-ID multiplier at the stage start and from ``phase_end`` on.
        phase_end: progress (0..1 of the stage) at which the multiplier reaches id_scale_to exactly.
        em3_weight: weight of the EM3-style alignment loss pulling s toward stop-grad(g).
        max_epochs: 1 = one pass (``RankerTrainConfig.epochs`` passes); > 1 = train to convergence:
            up to this many passes over the stage's rows but a held-out tail, stopping when
            the held-out loss stops falling (best epoch kept), then one pass over the tail.
    """

    name: str
    tokens: tuple[str, ...]
    fraction: float = 1.0
    fusion: str | None = None
    init: bool = True
    copy_tokens: tuple[tuple[str, str], ...] = ()
    id_scale_from: float = 1.0
    id_scale_to: float = 1.0
    phase_end: float = 1.0
    em3_weight: float = 0.0
    max_epochs: int = 1

    def __post_init__(self) -> None:
        for t in self.tokens:
            check(t in CANDIDATE_TOKENS, f"stage {self.name}: unknown candidate token {t!r}; known {CANDIDATE_TOKENS}")
        check(0.0 < self.fraction <= 1.0, f"stage {self.name}: fraction must be in (0, 1], got {self.fraction}")
        check(self.fusion is None or self.fusion in FUSIONS, f"stage {self.name}: fusion must be one of {FUSIONS}")
        check(("early" in self.tokens) == (self.fusion is not None), f"stage {self.name}: fusion needs the 'early' token")
        check(0.0 <= self.id_scale_to <= 1.0 and 0.0 <= self.id_scale_from <= 1.0, "id scales must be in [0, 1]")
        check(0.0 < self.phase_end <= 1.0, f"stage {self.name}: phase_end must be in (0, 1], got {self.phase_end}")
        check(self.em3_weight >= 0.0, f"stage {self.name}: em3_weight must be >= 0")
        check(self.max_epochs >= 1, f"stage {self.name}: max_epochs must be >= 1, got {self.max_epochs}")
        check(self.max_epochs == 1 or self.id_scale_from == self.id_scale_to,
              f"stage {self.name}: a stage trained to convergence must keep a constant ID scale")
        for new, src in self.copy_tokens:
            check(new in self.tokens, f"stage {self.name}: copy target {new!r} is not a token of the stage")
            check(src in CANDIDATE_TOKENS, f"stage {self.name}: copy source {src!r} is not a candidate token")


@dataclasses.dataclass(frozen=True)
class WarmupConfig:
    """Shares of the training stream per FLUID stage (the online stage takes the rest).

    Args:
        stage0, stage1, stage2, stage3: fractions of the training rows.
        phase_end: share of stage 2 over which the ID multiplier ramps 1 -> 0.
        stage0_max_epochs: stage 0 trains to convergence (early stopping on a held-out tail of
            its rows, at most this many passes) as the paper's converged item-ID model; 1 = one pass.
    """

    stage0: float = 0.3
    stage1: float = 0.2
    stage2: float = 0.2
    stage3: float = 0.1
    phase_end: float = 0.75
    stage0_max_epochs: int = 1

    def __post_init__(self) -> None:
        for name in ("stage0", "stage1", "stage2", "stage3"):
            check(0.0 < getattr(self, name) < 1.0, f"{name} must be in (0, 1), got {getattr(self, name)}")
        check(self.stage0 + self.stage1 + self.stage2 + self.stage3 < 1.0, "stage fractions must leave room for the online stage")
        check(0.0 < self.phase_end <= 1.0, f"phase_end must be in (0, 1], got {self.phase_end}")
        check(self.stage0_max_epochs >= 1, f"stage0_max_epochs must be >= 1, got {self.stage0_max_epochs}")

    @property
    def online(self) -> float:
        return 1.0 - (self.stage0 + self.stage1 + self.stage2 + self.stage3)


def fluid_stages(cfg: WarmupConfig, add_id_back: bool = False) -> list[WarmupStage]:
    """FLUID's staged warmup; ``add_id_back`` re-adds g after stage 3 (Table 7, last row)."""
    online_tokens = ("slice", "room", "item_id") if add_id_back else ("slice", "room")
    return [
        WarmupStage("stage0", ("item_id",), cfg.stage0, init=False, max_epochs=cfg.stage0_max_epochs),
        WarmupStage("stage1", ("item_id", "slice"), cfg.stage1),
        WarmupStage("stage2", ("item_id", "slice"), cfg.stage2, id_scale_from=1.0, id_scale_to=0.0, phase_end=cfg.phase_end),
        WarmupStage("stage3", ("slice", "room"), cfg.stage3, copy_tokens=(("room", "slice"),)),
        WarmupStage("online_id_back" if add_id_back else "online", online_tokens, cfg.online),
    ]


def id_scale_at(stage: WarmupStage, progress: float) -> float:
    """Item-ID multiplier at ``progress`` (0..1) through the stage; exactly id_scale_to from phase_end on."""
    if progress >= stage.phase_end:
        return stage.id_scale_to
    t = max(progress, 0.0) / stage.phase_end
    return stage.id_scale_from + (stage.id_scale_to - stage.id_scale_from) * t


def validate_stages(stages: list[WarmupStage]) -> None:
    """Stage fractions must sum to 1 (one pass over the training stream)."""
    check(len(stages) >= 1, "need at least one stage")
    total = sum(s.fraction for s in stages)
    check(abs(total - 1.0) < 1e-6, f"stage fractions must sum to 1, got {total:.4f}")
