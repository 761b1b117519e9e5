"""Token-based ranker with item-ID, fusion and ID-free (FLUID) candidate arms.

Pipeline: ``features`` (per-impression arrays, built once) -> ``Tokenizer`` (prime
tokens) -> ``Backbone`` (token fusion + token boost) -> ``Heads`` (multi-task BCE),
trained in event-time order by ``train_arm`` with per-arm stage lists (``arms``,
``warmup``) and evaluated by ``evaluate_model``.

Example:
    >>> from fluidrec.ranker import train_arm, evaluate_model, ranker_demo
    >>> train_arm("fluid", "data/tiny", "codes/slice_codes.parquet", "codes/room_codes.parquet", "runs/fluid", ranker_demo())
    >>> evaluate_model("runs/fluid", "data/tiny")["click"]["auc"]
"""

from fluidrec.ranker.arms import ARMS, ArmPlan, build_arm
from fluidrec.ranker.batching import Batch
from fluidrec.ranker.evaluate import ScoringContext, evaluate_model, predict, score, score_candidates
from fluidrec.ranker.features import FeatureConfig, Features, build_features, load_or_build_features
from fluidrec.ranker.heads import DEFAULT_TASKS, Task
from fluidrec.ranker.model import Ranker, RankerSpec, build_ranker, init_from, load_checkpoint, save_checkpoint
from fluidrec.ranker.train import ModelConfig, TrainConfig, ranker_demo, ranker_small, train_arm
from fluidrec.ranker.warmup import Stage, WarmupConfig, fluid_stages

__all__ = [
    "ARMS", "ArmPlan", "Batch", "DEFAULT_TASKS", "FeatureConfig", "Features", "ModelConfig", "Ranker",
    "RankerSpec", "ScoringContext", "Stage", "Task", "TrainConfig", "WarmupConfig", "build_arm",
    "build_features", "build_ranker", "evaluate_model", "fluid_stages", "init_from", "load_checkpoint",
    "load_or_build_features", "predict", "ranker_demo", "ranker_small", "save_checkpoint", "score",
    "score_candidates", "train_arm",
]  # fmt: skip
