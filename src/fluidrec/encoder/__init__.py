"""Cross-domain multimodal encoder (FLUID section 3.1): vision + text -> single-tower fusion -> z.

Library entry points (each also a ``fluidrec encoder`` subcommand):

- ``train_encoder(cfg, dataset_dir, out_dir) -> Path``: two-stage Q2I InfoNCE training.
- ``embed_dataset(model_dir, dataset_dir, out_file) -> EmbedSummary``: the embedding Parquet.
- ``evaluate_encoder(model_dir, dataset_dir) -> dict``: Q2I/I2Q Recall@10/50, linear probes.
- ``run_ablation(dataset_dir, out_dir, cfg) -> dict``: Table-6-shaped ablation.

Config builders: ``encoder_default``, ``encoder_demo`` (for ``fluidrec reproduce``),
``encoder_tiny`` (tests), ``encoder_lsa`` (the TF-IDF + SVD reference encoder, fitted by
``train_lsa``; its model directory works with ``embed_dataset`` and ``evaluate_encoder``), ``ablation_demo``, ``ablation_reproduce`` (the ablation of
``fluidrec reproduce``: reuse the main encoder as the reference row).

Example:
    >>> from fluidrec.encoder import encoder_demo, train_encoder, embed_dataset
    >>> model_dir = train_encoder(encoder_demo(seed=0), "data/world", "runs/encoder")
    >>> embed_dataset(model_dir, "data/world", "runs/embeddings.parquet")
"""

from fluidrec.utils.lazy import lazy_exports

# Public names and their submodules, imported on first use (keeps `fluidrec --help` fast).
_EXPORTS = {
    "ablation_demo": "ablation",
    "ablation_reproduce": "ablation",
    "run_ablation": "ablation",
    "EncoderConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "encoder_default": "config",
    "encoder_demo": "config",
    "encoder_tiny": "config",
    "LsaConfig": "config",
    "encoder_lsa": "config",
    "train_lsa": "lsa",
    "EmbedSummary": "embed",
    "embed_dataset": "embed",
    "evaluate_encoder": "evaluate",
    "DualTowerEncoder": "model",
    "SingleTowerEncoder": "model",
    "build_encoder": "model",
    "load_encoder": "model",
    "train_encoder": "train",
}
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "EncoderConfig", "ModelConfig", "TrainConfig", "encoder_default", "encoder_demo", "encoder_tiny", "ablation_demo", "ablation_reproduce",
    "LsaConfig", "encoder_lsa", "train_lsa",
    "train_encoder", "embed_dataset", "EmbedSummary", "evaluate_encoder", "run_ablation",
    "build_encoder", "load_encoder", "SingleTowerEncoder", "DualTowerEncoder",
]
