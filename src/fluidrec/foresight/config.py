"""Typed settings of the foresight method (live_foresight_sid.txt) and its reproduction run.

Every dataclass validates itself at construction; ``foresight_config(scale, seed)`` is the
builder the CLI and ``reproduce_foresight`` use.

Example:
    >>> cfg = foresight_config("tiny", seed=0)
    >>> cfg.n_codes, cfg.next_sid.context
    (64, 16)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fluidrec.data.world import SCALES, WorldConfig
from fluidrec.errors import ConfigError, check

DAY_MS = 86_400_000
TASKS = ("click", "follow", "long_view", "gift")  # CTR, WTR, LVTR, GTR (paper Eq. 7-8)
TASK_NAMES = {"click": "CTR", "follow": "WTR", "long_view": "LVTR", "gift": "GTR"}
ARMS = ("base", "plus_i", "plus_i_d")  # base MMoE, + historical content I, + foresight D
STRATEGIES = ("model", "last", "max_freq", "max_weight")

# Highlight effects of the foresight world (assumptions, docs/world.md "Segments"): the
# paper reports only their direction (Figures 1 and 3), so each is one unit on the logit
# scale of the label it raises (watch: +50 % mean watch time during a highlight ahead).
HIGHLIGHT_EFFECTS = {
    "highlight_watch_weight": 0.4,
    "highlight_like_weight": 1.0,
    "highlight_gift_weight": 1.0,
    "highlight_follow_weight": 1.0,
}
# Codebook size N per scale: the paper's N = 20,000 serves millions of authors; here N is
# scaled to the data, a few codes per (topic leaf, moment) pair the world can show.
CODEBOOK_SIZE = {"tiny": 64, "small": 512, "medium": 1024, "large": 2048}


@dataclasses.dataclass(frozen=True)
class NextSidConfig:
    """The next-Sid encoder-decoder (paper Eq. 2-6) and its training.

    Args:
        context: l, the RLE entries of context (paper: 100).
        d_model: D, width of Sid / run-length embeddings and of I and D.
        heads: attention heads.
        enc_layers, dec_layers: L_e self-attention and L_d cross-attention layers.
        ffn: hidden width of the feed-forward blocks.
        max_run: run lengths above this share one embedding.
        epochs, batch_size, lr, weight_decay: AdamW training on the training days.
        max_train: cap on training examples (a seeded sample), 0 = all.
    """

    context: int = 100
    d_model: int = 64
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 1
    ffn: int = 128
    max_run: int = 32
    epochs: int = 3
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.01
    max_train: int = 0

    def __post_init__(self) -> None:
        for name in ("context", "d_model", "heads", "enc_layers", "dec_layers", "ffn", "max_run", "epochs", "batch_size"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, f"next_sid.{name} must be an integer >= 1, got {v!r}")
        check(self.d_model % self.heads == 0, f"next_sid.d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        check(self.lr > 0 and self.weight_decay >= 0, "next_sid.lr must be > 0 and weight_decay >= 0")
        check(self.max_train >= 0, f"next_sid.max_train must be >= 0, got {self.max_train}")


@dataclasses.dataclass(frozen=True)
class RankerConfig:
    """The multi-task MMoE ranker (paper Eq. 7-8) and its training.

    Args:
        id_dim: width of the user, author and position embeddings.
        experts: number of shared experts; expert_dim: width of each expert's output.
        tower_dim: hidden width of each task tower.
        epochs: K, the most event-time passes over the fit rows (with ``patience`` >= 1), or
            the fixed number of passes over all training rows (``patience`` = 0).
        batch_size, lr: Adam training in event-time order.
        patience: early stopping per arm and seed: stop after this many passes without a lower
            validation loss (mean multi-task logloss on the held-out rows) and restore the best
            pass's weights; 0 = no holdout, ``epochs`` fixed passes (the first protocol).
        val_days: hold out the last ``val_days`` training days as validation ...
        val_fraction: ... or, when that would leave fewer fit rows than held-out rows (the
            tiny world has one training day), the last ``val_fraction`` of the training rows.
        final_holdout_pass: after restoring the best pass, one more pass over the held-out
            rows, so the most recent data (next to the test day) is learned as online training would.
    """

    id_dim: int = 16
    experts: int = 4
    expert_dim: int = 64
    tower_dim: int = 32
    epochs: int = 8
    batch_size: int = 1024
    lr: float = 3e-3
    patience: int = 1
    val_days: int = 1
    val_fraction: float = 0.2
    final_holdout_pass: bool = True

    def __post_init__(self) -> None:
        for name in ("id_dim", "experts", "expert_dim", "tower_dim", "epochs", "batch_size", "val_days"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, f"ranker.{name} must be an integer >= 1, got {v!r}")
        check(self.lr > 0, f"ranker.lr must be > 0, got {self.lr}")
        check(isinstance(self.patience, int) and self.patience >= 0, f"ranker.patience must be an integer >= 0, got {self.patience!r}")
        check(0.0 < self.val_fraction < 1.0, f"ranker.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclasses.dataclass(frozen=True)
class ForesightConfig:
    """One foresight reproduction run.

    Args:
        scale: world scale preset (tiny/small/medium/large).
        seed: master seed (world, encoder, codebook, models).
        codebook_size: N, flat K-Means codes (0 = ``CODEBOOK_SIZE[scale]``).
        next_sid_seeds: seeds of the next-Sid model for Table 3's spread (the first feeds the ranker).
        ranker_seeds: seeds of each ranker arm for Table 1's spread.
        lsa_fit_max: segments the LSA encoder is fitted on (a seeded sample of training days).
        lsa_dim: width of the segment embeddings (the main job's LSA default is 128).
        kmeans_niter: k-means iterations.
        ab_requests: held-out requests replayed in the A/B (Table 2); 0 skips it.
        world: overrides of the world config (on top of the scale preset with segments on).
    """

    scale: str = "small"
    seed: int = 0
    codebook_size: int = 0
    next_sid_seeds: tuple[int, ...] = (0, 1, 2)
    ranker_seeds: tuple[int, ...] = (0,)
    lsa_fit_max: int = 40_000
    lsa_dim: int = 128
    kmeans_niter: int = 20
    ab_requests: int = 4000
    next_sid: NextSidConfig = dataclasses.field(default_factory=NextSidConfig)
    ranker: RankerConfig = dataclasses.field(default_factory=RankerConfig)
    world: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check(self.scale in SCALES, f"unknown scale {self.scale!r} (choose from {', '.join(SCALES)})")
        check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        check(self.codebook_size == 0 or self.codebook_size >= 2, f"codebook_size must be 0 (per scale) or >= 2, got {self.codebook_size}")
        check(len(self.next_sid_seeds) >= 1 and len(self.ranker_seeds) >= 1, "need at least one next-Sid seed and one ranker seed")
        check(self.lsa_dim >= 2, f"lsa_dim must be >= 2, got {self.lsa_dim}")
        check(self.lsa_fit_max >= 100 and self.kmeans_niter >= 1 and self.ab_requests >= 0, "need lsa_fit_max >= 100, kmeans_niter >= 1, ab_requests >= 0")
        self.world_config()  # validates the overrides

    @property
    def n_codes(self) -> int:
        return self.codebook_size or CODEBOOK_SIZE[self.scale]

    def world_config(self) -> WorldConfig:
        """The foresight world: the scale preset with segments and highlight effects on."""
        try:
            return WorldConfig.for_scale(self.scale, seed=self.seed, **{"segments": True, **HIGHLIGHT_EFFECTS, **self.world})
        except TypeError as exc:
            raise ConfigError(f"bad world override: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "n_codes": self.n_codes, "world_resolved": self.world_config().to_dict()}


def foresight_config(scale: str = "small", seed: int = 0, **overrides: Any) -> ForesightConfig:
    """The foresight run for ``scale`` and ``seed``, sized for two shared CPU cores.

    The paper's model (l = 100, two encoder layers) is ``NextSidConfig()``; the run uses a
    narrower one with l = 24 RLE entries (an author's last ~24 content changes, hours of
    segments). Small trains on every training-day state (134,716 at seed 0) for two epochs
    (528 steps of 512, lr 5e-3): about 46 s per seed on one lightly loaded core, where the learning
    curve has flattened (three epochs at 3e-3 gave the same test accuracy, 48.2 %); the
    first cut's 40,000-state cap and 158 steps stopped far short of it. The ranker makes
    up to eight event-time passes in large batches, early-stopped per arm and seed on the
    last training day (docs/foresight.md, Results). Tiny is cut further so its end-to-end test takes
    seconds.

    Example:
        >>> foresight_config("small", seed=1).n_codes
        512
    """
    if scale == "tiny":
        overrides.setdefault("next_sid", NextSidConfig(context=16, d_model=32, ffn=64, enc_layers=1, epochs=2, batch_size=256))
        overrides.setdefault("ranker", RankerConfig(epochs=4, batch_size=256, expert_dim=32))
        overrides.setdefault("next_sid_seeds", (0, 1))
        overrides.setdefault("ab_requests", 300)
        overrides.setdefault("lsa_dim", 64)
    else:
        overrides.setdefault("next_sid", NextSidConfig(context=24, d_model=32, ffn=64, enc_layers=1, epochs=2, batch_size=512, lr=5e-3))
        overrides.setdefault("ranker", RankerConfig(epochs=8, batch_size=4096, expert_dim=32, lr=5e-3))
        overrides.setdefault("ranker_seeds", (0, 1, 2))  # Table 1's margins are read against this spread
    return ForesightConfig(scale=scale, seed=seed, **overrides)
