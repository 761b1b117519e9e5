"""Candidate arms: one builder function per arm name, each returning an ``ArmPlan``.

    baseline        {g}                               fluid.txt Table 7 reference
    early_replace   {h = s}                           Eq. 3
    early_concat    {h = W[g || s]}                   Eq. 4
    gate_learned    {h = a g + (1 - a) s}, a = sigmoid(f(g))              Eq. 5
    gate_feature    same, a from side info (exposure so far, ||g||)       Eq. 5
    late            {g, s}                            Eq. 7 (= stage 1)
    late_em3        {g, s} + alignment loss pulling s toward g
    no_id           no candidate item token
    fluid           {r, s} via staged warmup          Eq. 8, 3.4.3
    naive_joint     {g, s, r} from scratch
    fluid_id_back   fluid, then g added back
    fluid_levelwise fluid with level-wise code embeddings (Table 5)
    fluid_shared    fluid with shared slice/room tables (Table 5)
    fluid_stage1    stages 0-1, then {g, s} online to the end (Table 7, "Stage 1")
    fluid_stage2    stages 0-2, then {s} online to the end (Table 7, "Stage 2")

Example:
    >>> plan = build_arm("fluid")
    >>> [s.name for s in plan.stages]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fluidrec.codes.ngram import ngram_mode
from fluidrec.errors import UsageError
from fluidrec.ranker.warmup import WarmupConfig, WarmupStage, fluid_stages, validate_stages


@dataclasses.dataclass(frozen=True)
class ArmPlan:
    """An arm: its stages and the code-embedding variant it uses.

    Args:
        scheme: code-id scheme, a ``fluidrec.codes.ngram.MODES`` name ("prefix" or "level").
    """

    name: str
    stages: tuple[WarmupStage, ...]
    scheme: str = "prefix"
    shared_code_tables: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", ngram_mode(self.scheme))  # frozen; maps an earlier spelling


def _single(name: str, tokens: tuple[str, ...], **kw) -> ArmPlan:
    return ArmPlan(name, (WarmupStage(name, tokens, 1.0, init=False, **kw),))


def baseline_arm(w: WarmupConfig) -> ArmPlan:
    return _single("baseline", ("item_id",))


def early_replace_arm(w: WarmupConfig) -> ArmPlan:
    return _single("early_replace", ("early",), fusion="replace")


def early_concat_arm(w: WarmupConfig) -> ArmPlan:
    return _single("early_concat", ("early",), fusion="concat")


def gate_learned_arm(w: WarmupConfig) -> ArmPlan:
    return _single("gate_learned", ("early",), fusion="gate_learned")


def gate_feature_arm(w: WarmupConfig) -> ArmPlan:
    return _single("gate_feature", ("early",), fusion="gate_feature")


def late_arm(w: WarmupConfig) -> ArmPlan:
    return _single("late", ("item_id", "slice"))


def late_em3_arm(w: WarmupConfig, em3_weight: float = 0.1) -> ArmPlan:
    return _single("late_em3", ("item_id", "slice"), em3_weight=em3_weight)


def no_id_arm(w: WarmupConfig) -> ArmPlan:
    return _single("no_id", ())


def naive_joint_arm(w: WarmupConfig) -> ArmPlan:
    return _single("naive_joint", ("item_id", "slice", "room"))


def fluid_arm(w: WarmupConfig) -> ArmPlan:
    return ArmPlan("fluid", tuple(fluid_stages(w)))


def fluid_id_back_arm(w: WarmupConfig) -> ArmPlan:
    return ArmPlan("fluid_id_back", tuple(fluid_stages(w, add_id_back=True)))


def fluid_levelwise_arm(w: WarmupConfig) -> ArmPlan:
    return ArmPlan("fluid_levelwise", tuple(fluid_stages(w)), scheme="level")


def fluid_shared_arm(w: WarmupConfig) -> ArmPlan:
    return ArmPlan("fluid_shared", tuple(fluid_stages(w)), shared_code_tables=True)


def _truncated_fluid(name: str, w: WarmupConfig, keep: int) -> ArmPlan:
    """FLUID's first ``keep`` stages, the last one extended over the rest of the stream.

    Table 7 reports the model after each warmup stage; deploying it means training it
    online in that configuration, so the last kept stage runs to the end of the stream.
    """
    stages = fluid_stages(w)[:keep]
    rest = 1.0 - sum(s.fraction for s in stages[:-1])
    last = stages[-1]
    # once the ID multiplier is exactly zero, the ID token is gone: keep only the others
    tokens = tuple(t for t in last.tokens if not (t == "item_id" and last.id_scale_to == 0.0))
    online = WarmupStage(f"online_{last.name}", tokens, rest - last.fraction)
    return ArmPlan(name, (*stages, online))


def fluid_stage1_arm(w: WarmupConfig) -> ArmPlan:
    return _truncated_fluid("fluid_stage1", w, keep=2)


def fluid_stage2_arm(w: WarmupConfig) -> ArmPlan:
    return _truncated_fluid("fluid_stage2", w, keep=3)


# Plain dispatch table from the CLI's arm name to its builder (explicit, no registration magic).
_BUILDERS: dict[str, Callable[[WarmupConfig], ArmPlan]] = {
    "baseline": baseline_arm,
    "early_replace": early_replace_arm,
    "early_concat": early_concat_arm,
    "gate_learned": gate_learned_arm,
    "gate_feature": gate_feature_arm,
    "late": late_arm,
    "late_em3": late_em3_arm,
    "no_id": no_id_arm,
    "fluid": fluid_arm,
    "naive_joint": naive_joint_arm,
    "fluid_id_back": fluid_id_back_arm,
    "fluid_levelwise": fluid_levelwise_arm,
    "fluid_shared": fluid_shared_arm,
    "fluid_stage1": fluid_stage1_arm,
    "fluid_stage2": fluid_stage2_arm,
}
ARMS: tuple[str, ...] = tuple(_BUILDERS)


def build_arm(name: str, warmup: WarmupConfig | None = None) -> ArmPlan:
    """The plan of arm ``name``.

    Raises:
        UsageError: unknown arm name (the message lists the valid ones).
    """
    if name not in _BUILDERS:
        raise UsageError(f"unknown arm {name!r}; choose one of: {', '.join(ARMS)}")
    plan = _BUILDERS[name](warmup or WarmupConfig())
    validate_stages(list(plan.stages))
    return plan
