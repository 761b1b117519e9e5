"""Vision module: a Hugging Face vision backbone plus a two-layer MLP projector -> visual tokens.

Shape letters: B batch, S frame side, P backbone patch tokens, Nv visual tokens, Dv backbone
width, D language-model width.

Default backbone: a small ViT built from ``transformers.ViTConfig`` and trained from scratch on
the dataset's frames (the synthetic world renders small frames). Any Hugging Face vision model
in a local directory (SigLIP2 in the paper) can be named instead; dual vision-language
checkpoints (SigLIP, CLIP) contribute their ``vision_model``. The backbone's patch tokens are
average-pooled to ``visual_tokens`` tokens (keeps the fused sequence short on CPU) and then
projected to the language model's width.

Example:
    >>> vm = build_vision(ModelConfig(), lm_width=384, frame_size=32)
    >>> frames = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    >>> vm(frames).shape
    torch.Size([2, 4, 384])
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.encoder.config import ModelConfig
from fluidrec.encoder.text import resolve_model_dir
from fluidrec.errors import ConfigError, DataError, UsageError, first_line


class VisionModule(nn.Module):
    """Frames (B, S, S, 3) uint8 -> visual tokens (B, Nv, D).

    Args:
        backbone: a Hugging Face vision model taking ``pixel_values`` (B, 3, H, W).
        backbone_dim: its hidden width Dv.
        width: the language model's width D.
        frame_size: S, the side of the frames this module accepts.
        image_size: the side the backbone expects (frames are resized when it differs).
        visual_tokens: Nv (0 = keep all backbone tokens).
        mean, std: per-channel normalisation of [0, 1] pixels.
    """

    def __init__(
        self,
        backbone: nn.Module,
        backbone_dim: int,
        width: int,
        frame_size: int,
        image_size: int,
        visual_tokens: int,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.frame_size = int(frame_size)
        self.image_size = int(image_size)
        self.visual_tokens = int(visual_tokens)
        # The paper's two-layer MLP projector (trained in the alignment stage).
        self.projector = nn.Sequential(nn.Linear(backbone_dim, width), nn.GELU(), nn.Linear(width, width))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)  # (1, 3, 1, 1)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)  # (1, 3, 1, 1)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> normalised float (B, 3, image_size, image_size)."""
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (self.frame_size, self.frame_size, 3):
            raise DataError(
                f"frames have shape {tuple(frames.shape[1:])}, this encoder expects "
                f"({self.frame_size}, {self.frame_size}, 3) (the frame_size it was trained with)",
                column="frame",
            )
        x = frames.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S)
        if self.image_size != self.frame_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h = self.backbone(pixel_values=self.pixels(frames)).last_hidden_state  # (B, P, Dv)
        if self.visual_tokens and h.shape[1] != self.visual_tokens:
            # Average-pool the token axis to Nv tokens: fewer fused tokens, same content.
            h = F.adaptive_avg_pool1d(h.transpose(1, 2), self.visual_tokens).transpose(1, 2)  # (B, Nv, Dv)
        return self.projector(h)  # (B, Nv, D)


def _vision_config_of(config):
    """The vision sub-config of a dual vision-language config (SigLIP, CLIP), else the config."""
    return getattr(config, "vision_config", None) or config


def _backbone_from_config(vcfg) -> nn.Module:
    from transformers import AutoModel, ViTModel

    if vcfg.model_type == "vit":
        return ViTModel(vcfg, add_pooling_layer=False)
    return AutoModel.from_config(vcfg)


def scratch_vit_config(cfg: ModelConfig, frame_size: int):
    """The small from-scratch ViT for frames of side ``frame_size``."""
    from transformers import ViTConfig

    if frame_size % cfg.vit_patch:
        raise ConfigError(f"frame_size {frame_size} is not a multiple of model.vit_patch {cfg.vit_patch}")
    return ViTConfig(
        image_size=frame_size, patch_size=cfg.vit_patch, num_channels=3, hidden_size=cfg.vit_dim,
        num_hidden_layers=cfg.vit_layers, num_attention_heads=cfg.vit_heads,
        intermediate_size=2 * cfg.vit_dim, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )


def _norm_stats(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pre = path / "preprocessor_config.json"
    if pre.exists():
        d = json.loads(pre.read_text())
        mean, std = d.get("image_mean", [0.5] * 3), d.get("image_std", [0.5] * 3)
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def build_vision(cfg: ModelConfig, lm_width: int, frame_size: int) -> VisionModule:
    """Build the vision module: scratch ViT (random init) or pretrained weights from ``cfg.vision``.

    Args:
        cfg: the model config (``vision``, ``visual_tokens``, ``vit_*``).
        lm_width: the language model's hidden width (projector output).
        frame_size: side S of the dataset's frames.
    """
    if cfg.vision == "scratch":
        vcfg = scratch_vit_config(cfg, frame_size)
        backbone = _backbone_from_config(vcfg)
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    else:
        from transformers import AutoConfig, AutoModel

        path = resolve_model_dir(cfg.vision, "vision")
        try:
            full = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, pickle.UnpicklingError, RuntimeError, EOFError) as exc:  # unpickling refused: no code runs
            raise UsageError(f"cannot load a vision model from {path}: {first_line(exc)}") from None
        backbone = getattr(full, "vision_model", full)
        vcfg = _vision_config_of(AutoConfig.from_pretrained(str(path), local_files_only=True))
        mean, std = _norm_stats(path)
    return _wrap(backbone, vcfg, cfg, lm_width, frame_size, mean, std)


def _wrap(backbone, vcfg, cfg: ModelConfig, lm_width: int, frame_size: int, mean, std) -> VisionModule:
    image_size = getattr(vcfg, "image_size", frame_size)
    if isinstance(image_size, (list, tuple)):
        image_size = image_size[0]
    return VisionModule(
        backbone, backbone_dim=int(vcfg.hidden_size), width=lm_width, frame_size=frame_size,
        image_size=int(image_size), visual_tokens=cfg.visual_tokens, mean=tuple(mean), std=tuple(std),
    )


def save_vision_spec(vm: VisionModule, out: Path) -> None:
    """Write what ``vision_from_spec`` needs to rebuild the module's skeleton (weights go elsewhere)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = getattr(vm.backbone, "config", None)
    if cfg is None:
        raise ConfigError("vision backbone has no Hugging Face config to save")
    cfg.save_pretrained(str(out))
    (out / "fluidrec_vision.json").write_text(json.dumps({
        "mean": vm.mean.view(-1).tolist(), "std": vm.std.view(-1).tolist(), "frame_size": vm.frame_size,  # (3,) each
    }))


def vision_from_spec(path: Path, cfg: ModelConfig, lm_width: int) -> VisionModule:
    """Rebuild a (randomly initialised) vision module saved by ``save_vision_spec``."""
    from transformers import AutoConfig

    vcfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
    spec = json.loads((path / "fluidrec_vision.json").read_text())
    backbone = _backbone_from_config(vcfg)
    return _wrap(backbone, vcfg, cfg, lm_width, int(spec["frame_size"]), spec["mean"], spec["std"])
