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

from fluidrec.utils.lazy import lazy_exports

# Public names and their submodules, imported on first use (keeps `fluidrec --help` fast).
_EXPORTS = {
    "ARMS": "arms",
    "ArmPlan": "arms",
    "build_arm": "arms",
    "Batch": "batching",
    "ScoringContext": "evaluate",
    "evaluate_model": "evaluate",
    "predict": "evaluate",
    "score": "evaluate",
    "score_candidates": "evaluate",
    "FeatureConfig": "features",
    "Features": "features",
    "build_features": "features",
    "load_or_build_features": "features",
    "DEFAULT_TASKS": "heads",
    "Task": "heads",
    "FusedBackbone": "fused",
    "fuse_backbone": "fused",
    "Scorer": "inference",
    "compile_scorer": "inference",
    "Ranker": "model",
    "RankerSpec": "model",
    "build_ranker": "model",
    "init_from": "model",
    "load_checkpoint": "model",
    "save_checkpoint": "model",
    "PeerConfig": "peers",
    "evaluate_peer": "peers",
    "train_peer": "peers",
    "RankerModelConfig": "train",
    "RankerTrainConfig": "train",
    "ranker_demo": "train",
    "ranker_small": "train",
    "train_arm": "train",
    "WarmupStage": "warmup",
    "WarmupConfig": "warmup",
    "fluid_stages": "warmup",
}
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "ARMS", "ArmPlan", "Batch", "DEFAULT_TASKS", "FeatureConfig", "Features", "FusedBackbone", "PeerConfig", "Ranker",
    "RankerModelConfig", "RankerSpec", "RankerTrainConfig", "Scorer", "ScoringContext", "Task", "WarmupConfig", "WarmupStage",
    "build_arm", "build_features", "build_ranker", "compile_scorer", "evaluate_model", "evaluate_peer", "fluid_stages",
    "fuse_backbone", "init_from", "load_checkpoint", "load_or_build_features", "predict", "ranker_demo", "ranker_small",
    "save_checkpoint", "score", "score_candidates", "train_arm", "train_peer",
]  # fmt: skip
