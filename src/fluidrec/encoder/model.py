"""Single-tower fusion encoder (FLUID section 3.1.2) and the dual-tower baseline.

Shape letters: B batch, T text tokens, Nv visual tokens, L fused sequence (Nv + T + 1),
H language-model width, D output width (128).

Single tower: the language model runs over ``[visual tokens; text tokens; EOS]`` given as
``inputs_embeds``; the EOS hidden state goes through a linear projection to D and is
L2-normalised. Vision and text interact across the LM's full depth.

Dual tower (the ablation baseline): the LM sees only ``[text; EOS]``; the visual tokens are
mean-pooled on their own; the two meet only at the output (``z = W_t t + W_v v``).

Queries go through the same text path in both: ``[query tokens; EOS]`` -> LM -> EOS -> the
same output projection.

Example:
    >>> model = build_encoder(ModelConfig(backbone="scratch"), frame_size=32)
    >>> q = model.encode_queries(pack_text(model.text.query_tokens(["singing"]), model.text.pad_id))
    >>> q.shape
    torch.Size([1, 128])
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from fluidrec.encoder.batches import CONFIG_FILE, ItemBatch, TextBatch
from fluidrec.encoder.config import EncoderConfig, LsaConfig, ModelConfig
from fluidrec.encoder.text import TextModule, load_tokenizer, minilm_dir, resolve_model_dir
from fluidrec.encoder.vision import VisionModule, build_vision, save_vision_spec, vision_from_spec
from fluidrec.encoder.vocab import AddedWordEmbedding, attach_added_rows
from fluidrec.errors import DataError, FluidrecError, UsageError, first_line
from fluidrec.utils.io import load_torch_file, read_json, save_torch_file, write_json

if TYPE_CHECKING:
    from fluidrec.encoder.lsa import LsaEncoder


# ---------------------------------------------------------------------------------------------
# EOS-only last layer (the CPU fast path)
#
# With EOS pooling only one position of the LM's *last* layer is ever read, so that layer is
# computed for the EOS row alone, and its keys and values are never materialised: for one query
# row per head, q.(W_k h_j + b_k) = (W_k^T q).h_j + const (the constant cancels in the softmax)
# and sum_j p_j (W_v h_j + b_v) = W_v (sum_j p_j h_j) + b_v sum_j p_j. The last layer then costs
# O(L * heads * H + H^2) per item instead of O(L * H^2): for the 1-layer MiniLM of
# ``encoder_demo`` most of an item's cost goes away. It is the same function as
# the Hugging Face forward up to float rounding (``tests/encoder/test_fast_eos.py`` compares
# values and gradients with ``_lm_pool_reference``); used only where that holds: BERT encoders
# with absolute positions (MiniLM, the scratch LM). Decoder LMs and mean pooling take the
# reference path.


def supports_fast_eos(lm: nn.Module) -> bool:
    """True for a (non-decoder) BERT model with absolute positions: what ``bert_eos_pool`` implements."""
    from transformers import BertModel

    c = lm.config
    return (
        isinstance(lm, BertModel) and not c.is_decoder
        and getattr(c, "position_embedding_type", "absolute") == "absolute"
        and not getattr(c, "chunk_size_feed_forward", 0)
    )


def _bert_layer(layer: nn.Module, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """One full post-LN BERT layer: (B, L, H) -> (B, L, H); dropout where Hugging Face puts it."""
    att = layer.attention.self
    b, n = h.shape[0], h.shape[1]
    nh, dh = att.num_attention_heads, att.attention_head_size
    q = att.query(h).view(b, n, nh, dh).transpose(1, 2)  # (B, nh, L, dh)
    k = att.key(h).view(b, n, nh, dh).transpose(1, 2)  # (B, nh, L, dh)
    v = att.value(h).view(b, n, nh, dh).transpose(1, 2)  # (B, nh, L, dh)
    ctx = F.scaled_dot_product_attention(
        q, k, v, attn_mask=key_mask[:, None, None, :],  # (B, 1, 1, L): padding keys are ignored
        dropout_p=att.dropout.p if att.training else 0.0, scale=att.scaling,
    )  # (B, nh, L, dh)
    a = layer.attention.output(ctx.transpose(1, 2).reshape(b, n, nh * dh), h)  # dense, dropout, LN(+h)
    return layer.output(layer.intermediate(a), a)  # feed-forward block, same residual pattern


def _bert_layer_one_row(layer: nn.Module, h: torch.Tensor, key_mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The same layer's output at one row per sequence: (B, L, H) -> (B, H), without K/V projections."""
    att = layer.attention.self
    b, hdim = h.shape[0], h.shape[2]
    nh, dh = att.num_attention_heads, att.attention_head_size
    x = h[torch.arange(b, device=h.device), rows]  # (B, H) the query rows
    q = att.query(x).view(b, nh, dh)  # (B, nh, dh)
    wk = att.key.weight.view(nh, dh, hdim)  # (nh, dh, H)
    wv = att.value.weight.view(nh, dh, hdim)  # (nh, dh, H)
    qk = torch.einsum("bnd,ndh->bnh", q, wk)  # (B, nh, H): W_k^T q per head; q.b_k cancels in softmax
    scores = torch.einsum("bnh,blh->bnl", qk, h) * att.scaling  # (B, nh, L)
    scores = scores.masked_fill(~key_mask[:, None, :], float("-inf"))
    p = torch.softmax(scores, dim=-1)
    p = F.dropout(p, att.dropout.p, training=att.training)  # (B, nh, L)
    pooled = torch.einsum("bnl,blh->bnh", p, h)  # (B, nh, H): sum_j p_j h_j per head
    ctx = torch.einsum("bnh,ndh->bnd", pooled, wv) + att.value.bias.view(nh, dh) * p.sum(-1, keepdim=True)  # (B, nh, dh)
    x1 = x.unsqueeze(1)  # (B, 1, H)
    a = layer.attention.output(ctx.reshape(b, 1, nh * dh), x1)  # (B, 1, nh*dh)
    return layer.output(layer.intermediate(a), a).squeeze(1)  # (B, H)


def bert_eos_pool(lm: nn.Module, emb: torch.Tensor, mask: torch.Tensor, eos_pos: torch.Tensor) -> torch.Tensor:
    """The BERT LM's last hidden state at ``eos_pos``, computing the last layer for that row only.

    Args:
        lm: a BertModel (``supports_fast_eos(lm)``).
        emb: (B, L, H) input embeddings (what ``inputs_embeds`` would be).
        mask: (B, L) bool, True for real positions.
        eos_pos: (B,) position of each row's EOS.

    Returns (B, H), equal up to float rounding to
    ``lm(inputs_embeds=emb, attention_mask=mask).last_hidden_state[arange(B), eos_pos]``.

    Example:
        >>> h = bert_eos_pool(model.lm, emb, mask, eos)   # (B, H)
    """
    h = lm.embeddings(inputs_embeds=emb)  # (B, L, H): + positions + token type 0, LayerNorm, dropout
    layers = lm.encoder.layer
    for layer in layers[:-1]:
        h = _bert_layer(layer, h, mask)  # (B, L, H)
    return _bert_layer_one_row(layers[-1], h, mask, eos_pos)  # (B, H)


class MultimodalEncoder(nn.Module, abc.ABC):
    """Shared parts: the LM, the text module, EOS placement, pooling, the output projection.

    Args:
        lm: a Hugging Face base model accepting ``inputs_embeds`` and ``attention_mask``.
        vision: the vision module, or None for a text-only dataset.
        text: the TextModule (tokenizer, budgets, EOS and pad ids).
        out_dim: D.
        pooling: ``"eos"`` (the EOS hidden state) or ``"mean"``.
    """

    fusion = "?"

    def __init__(self, lm: nn.Module, vision: VisionModule | None, text: TextModule, out_dim: int, pooling: str) -> None:
        super().__init__()
        self.lm = lm
        self.vision = vision
        self.text = text  # plain attribute: tokenization happens outside the graph
        self.pooling = pooling
        self.fast_eos = True  # False forces the reference LM forward (tests compare the two)
        self.width = int(lm.config.hidden_size)
        self.out_proj = nn.Linear(self.width, out_dim)

    @property
    def frame_size(self) -> int | None:
        return None if self.vision is None else self.vision.frame_size

    @property
    def out_dim(self) -> int:
        """D, the embedding width."""
        return int(self.out_proj.out_features)

    def _text_embeds(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token embeddings of ``[text; EOS]`` -> (emb (B, T+1, H), mask (B, T+1) bool, eos_pos (B,))."""
        b = batch.ids.shape[0]
        ids = F.pad(batch.ids, (0, 1), value=self.text.pad_id)  # (B, T+1)
        ids[torch.arange(b), batch.lengths] = self.text.eos_id  # EOS right after each row's text
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] <= batch.lengths[:, None]  # (B, T+1)
        return self.lm.get_input_embeddings()(ids), mask, batch.lengths

    def _lm_pool(self, emb: torch.Tensor, mask: torch.Tensor, eos_pos: torch.Tensor) -> torch.Tensor:
        """Run the LM over (B, L, H) embeddings and pool -> (B, H).

        EOS pooling on a BERT-style LM takes the fast path (``bert_eos_pool``: the last layer
        is computed for the EOS row only); everything else runs the Hugging Face forward.
        """
        if self.pooling == "eos" and self.fast_eos and supports_fast_eos(self.lm):
            return bert_eos_pool(self.lm, emb, mask, eos_pos)
        return self._lm_pool_reference(emb, mask, eos_pos)

    def _lm_pool_reference(self, emb: torch.Tensor, mask: torch.Tensor, eos_pos: torch.Tensor) -> torch.Tensor:
        """The plain path: the LM's own forward over every position, then pooling."""
        hidden = self.lm(inputs_embeds=emb, attention_mask=mask.long()).last_hidden_state  # (B, L, H)
        if self.pooling == "eos":
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), eos_pos]  # (B, H)
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def encode_queries(self, batch: TextBatch) -> torch.Tensor:
        """Queries through the text path -> L2-normalised (B, D)."""
        emb, mask, eos = self._text_embeds(batch)
        return F.normalize(self.out_proj(self._lm_pool(emb, mask, eos)), dim=-1)

    def _visual(self, batch: ItemBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Visual tokens (B, Nv, H) and their mask (B, Nv), or None without a vision module/frames."""
        if self.vision is None or batch.frames is None:
            return None
        vis = self.vision(batch.frames)  # (B, Nv, H)
        return vis, batch.has_frame[:, None].expand(-1, vis.shape[1])

    @abc.abstractmethod
    def encode_items(self, batch: ItemBatch) -> torch.Tensor:
        """Items -> L2-normalised (B, D); each fusion paradigm defines it."""

    def head_parameters(self) -> list[nn.Parameter]:
        """What the alignment stage trains: the vision projector, the output projection(s) and the
        added word rows (``encoder.vocab``): nothing there is pre-trained to keep."""
        params = list(self.out_proj.parameters())
        words = self.lm.get_input_embeddings()
        if isinstance(words, AddedWordEmbedding):
            params += list(words.added.parameters())
        if self.vision is not None:
            params += list(self.vision.projector.parameters())
        return params


class SingleTowerEncoder(MultimodalEncoder):
    """The LM runs over ``[visual tokens; text tokens; EOS]`` (FLUID's single-tower fusion)."""

    fusion = "single"

    def encode_items(self, batch: ItemBatch) -> torch.Tensor:
        emb, mask, eos = self._text_embeds(batch.text)  # (B, T+1, H)
        vis = self._visual(batch)
        if vis is not None:
            v, vmask = vis
            emb = torch.cat([v.to(emb.dtype), emb], dim=1)  # (B, Nv+T+1, H)
            mask = torch.cat([vmask, mask], dim=1)
            eos = eos + v.shape[1]
        return F.normalize(self.out_proj(self._lm_pool(emb, mask, eos)), dim=-1)


class DualTowerEncoder(MultimodalEncoder):
    """Separate text (LM over ``[text; EOS]``) and vision (mean of visual tokens) poolings,
    fused only at the output: ``z = normalize(W_t t + W_v v)``."""

    fusion = "dual"

    def __init__(self, lm: nn.Module, vision: VisionModule | None, text: TextModule, out_dim: int, pooling: str) -> None:
        super().__init__(lm, vision, text, out_dim, pooling)
        self.vision_out = nn.Linear(self.width, out_dim, bias=False)

    def encode_items(self, batch: ItemBatch) -> torch.Tensor:
        emb, mask, eos = self._text_embeds(batch.text)
        z = self.out_proj(self._lm_pool(emb, mask, eos))  # (B, D)
        vis = self._visual(batch)
        if vis is not None:
            v = vis[0].mean(1) * batch.has_frame[:, None].to(vis[0].dtype)  # (B, H); no frame -> no term
            z = z + self.vision_out(v)
        return F.normalize(z, dim=-1)

    def head_parameters(self) -> list[nn.Parameter]:
        return super().head_parameters() + list(self.vision_out.parameters())


# ---------------------------------------------------------------------------------------------
# Building, saving and loading


def _is_bert_like(config) -> bool:
    return config.model_type in ("bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra")


def _lm_from_config(config) -> nn.Module:
    from transformers import AutoModel, BertModel

    if config.model_type == "bert":
        return BertModel(config, add_pooling_layer=False)  # the pooler is never used
    return AutoModel.from_config(config)


def _lm_from_pretrained(path: Path) -> nn.Module:
    from transformers import AutoConfig, AutoModel, BertModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused BERT pooler weights are expected, not news
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if config.model_type == "bert":
            return BertModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False, dtype=torch.float32)
        return AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, pickle.UnpicklingError, RuntimeError, EOFError) as exc:  # unpickling refused: no code runs
        raise UsageError(f"cannot load a language model from {path}: {first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def truncate_layers(lm: nn.Module, n: int) -> nn.Module:
    """Keep the first ``n`` transformer layers (BERT-style ``encoder.layer`` or decoder ``layers``).

    The config is updated too, so a model rebuilt from the saved config matches the weights.
    """
    holder, attr = (lm.encoder, "layer") if hasattr(lm, "encoder") and hasattr(lm.encoder, "layer") else (lm, "layers")
    layers = getattr(holder, attr, None)
    if not isinstance(layers, nn.ModuleList):
        raise UsageError(f"model.lm_layers: cannot find the layer list of a {type(lm).__name__}")
    if n >= len(layers):
        return lm
    setattr(holder, attr, layers[:n])
    lm.config.num_hidden_layers = n
    if isinstance(getattr(lm.config, "layer_types", None), list):
        lm.config.layer_types = lm.config.layer_types[:n]
    return lm


def _scratch_lm_config(cfg: ModelConfig, vocab_size: int, pad_id: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=cfg.scratch_dim, num_hidden_layers=cfg.scratch_layers,
        num_attention_heads=cfg.scratch_heads, intermediate_size=4 * cfg.scratch_dim,
        max_position_embeddings=512, pad_token_id=pad_id,
    )


def _assemble(cfg: ModelConfig, lm: nn.Module, vision: VisionModule | None, text: TextModule) -> MultimodalEncoder:
    cls = SingleTowerEncoder if cfg.fusion == "single" else DualTowerEncoder
    return cls(lm, vision, text, cfg.out_dim, cfg.pooling)


def build_encoder(cfg: ModelConfig, frame_size: int | None) -> MultimodalEncoder:
    """Build a fresh encoder: pretrained LM (or scratch), vision module, heads (random init).

    Args:
        cfg: the model config.
        frame_size: side of the dataset's frames, or None when it has none (text only).

    Example:
        >>> model = build_encoder(ModelConfig(backbone="minilm", fusion="single"), frame_size=32)
    """
    if cfg.backbone == "scratch":
        tokenizer = load_tokenizer(minilm_dir())  # the scratch LM borrows MiniLM's vocabulary
        text = TextModule(tokenizer, cfg.fields, cfg.text_tokens, cfg.query_tokens)
        lm = _lm_from_config(_scratch_lm_config(cfg, text.vocab_size, text.pad_id))
    else:
        path = resolve_model_dir(cfg.backbone, "backbone")
        tokenizer = load_tokenizer(path)
        text = TextModule(tokenizer, cfg.fields, cfg.text_tokens, cfg.query_tokens)
        lm = _lm_from_pretrained(path)
    if cfg.lm_layers:
        lm = truncate_layers(lm, cfg.lm_layers)
    if text.vocab_size > lm.get_input_embeddings().num_embeddings:
        raise UsageError(
            f"tokenizer has {text.vocab_size} tokens but the language model's embedding table has "
            f"{lm.get_input_embeddings().num_embeddings}; they do not belong together"
        )
    vision = None if frame_size is None else build_vision(cfg, int(lm.config.hidden_size), int(frame_size))
    return _assemble(cfg, lm, vision, text)


MODEL_FILE = "model.pt"


def save_encoder(model: MultimodalEncoder, cfg: EncoderConfig, out_dir: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write a self-contained model directory: weights, tokenizer, LM/vision configs, resolved config.

    ``load_encoder`` needs nothing else (not even the original backbone directory).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.text.tokenizer.save_pretrained(str(out / "tokenizer"))
    model.lm.config.save_pretrained(str(out / "lm"))
    if model.vision is not None:
        save_vision_spec(model.vision, out / "vision")
    save_torch_file(model.state_dict(), out / MODEL_FILE)
    write_json(out / CONFIG_FILE, {**cfg.to_dict(), "frame_size": model.frame_size, **(extra or {})})
    return out


def model_kind(model_dir: str | os.PathLike) -> str:
    """``"lsa"`` for a TF-IDF + SVD directory (``encoder.lsa``), else ``"neural"``.

    Neural configs carry no ``kind`` (their saved form is unchanged, so resumes still match).
    """
    p = Path(model_dir) / CONFIG_FILE
    if not p.exists():
        return "neural"
    saved = read_json(p)
    if not isinstance(saved, dict):
        raise DataError("encoder config is not a JSON object", table=str(p), value=type(saved).__name__)
    return str(saved.get("kind", "neural"))


@contextlib.contextmanager
def _loading(path: Path, what: str) -> Iterator[None]:
    """Turn any failure while loading part of a model directory into one DataError naming ``path``.

    Third-party loaders (transformers, safetensors, json) raise many exception types for a
    missing, truncated or mistyped file; the user needs to know which file and why, not a
    traceback. fluidrec's own errors pass through unchanged.
    """
    try:
        yield
    except DataError:
        raise
    except FluidrecError as exc:  # a ConfigError from a saved config: name the file it came from
        raise DataError(f"invalid {what}: {first_line(exc)}", table=str(path)) from None
    except Exception as exc:  # noqa: BLE001 - boundary: every loader failure becomes a one-line error
        raise DataError(f"cannot load the {what} ({type(exc).__name__}: {first_line(exc)})", table=str(path)) from None


def load_encoder(model_dir: str | os.PathLike) -> tuple[MultimodalEncoder, EncoderConfig] | tuple[LsaEncoder, LsaConfig]:
    """Load a model directory written by ``save_encoder``/``train_encoder`` (eval mode), or by
    ``lsa.train_lsa`` (an ``LsaEncoder``: same ``encode_items``/``encode_queries``/``text``).

    Returns the model and its config (``EncoderConfig``, or ``LsaConfig`` for an LSA directory).
    A broken directory (missing, unreadable or mismatched config, tokenizer, LM config,
    vision spec or weights) raises a DataError naming the file that failed.
    """
    d = Path(model_dir)
    if not d.is_dir():
        raise UsageError(f"model directory {d} not found")
    if model_kind(d) == "lsa":
        from fluidrec.encoder.lsa import load_lsa

        with _loading(d, "lsa encoder"):
            return load_lsa(d)
    from transformers import AutoConfig

    if not (d / MODEL_FILE).exists() or not (d / CONFIG_FILE).exists():
        raise UsageError(f"{d} is not a trained encoder (missing {MODEL_FILE} or {CONFIG_FILE}); run `fluidrec encoder train`")
    for part in ("tokenizer", "lm"):
        if not (d / part).is_dir():
            raise DataError(f"encoder directory has no {part}/ (save_encoder writes it; the directory is incomplete)", table=str(d / part))
    saved = read_json(d / CONFIG_FILE)
    with _loading(d / CONFIG_FILE, "encoder config"):
        cfg = EncoderConfig.from_dict(saved)
    with _loading(d / "tokenizer", "tokenizer"):
        text = TextModule(load_tokenizer(d / "tokenizer"), cfg.model.fields, cfg.model.text_tokens, cfg.model.query_tokens)
    with _loading(d / "lm", "language-model config"):
        lm = _lm_from_config(AutoConfig.from_pretrained(str(d / "lm"), local_files_only=True))
    with _loading(d / "vision", "vision spec"):
        vision = vision_from_spec(d / "vision", cfg.model, int(lm.config.hidden_size)) if (d / "vision").is_dir() else None
    with _loading(d, "encoder (its parts do not fit together)"):
        model = _assemble(cfg.model, lm, vision, text)
        attach_added_rows(model)
    _load_weights(model, d / MODEL_FILE)
    model.eval()
    return model, cfg


def _load_weights(model: nn.Module, path: Path) -> None:
    """Load a state dict into ``model`` after checking every name and shape (one-line errors, not torch's list)."""
    state = load_torch_file(path)
    if not isinstance(state, dict):
        raise DataError("weights file does not hold a state dict", table=str(path), value=type(state).__name__)
    expected = model.state_dict()
    for key, value in expected.items():
        got = state.get(key)
        if not isinstance(got, torch.Tensor):
            raise DataError("weight missing (the weights do not belong to this config)", table=str(path), column=key)
        if tuple(got.shape) != tuple(value.shape):
            raise DataError(f"weight has shape {tuple(got.shape)}, the config builds {tuple(value.shape)}", table=str(path), column=key)
    extra = sorted(set(state) - set(expected))
    if extra:
        raise DataError(f"unexpected weight (not in the model the config builds; {len(extra)} in all)", table=str(path), column=extra[0])
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:  # e.g. a dtype torch cannot copy
        raise DataError(f"cannot load weights: {first_line(exc, 300)}", table=str(path)) from None


def read_model_meta(model_dir: str | os.PathLike) -> dict:
    """The saved config.json of a model directory (with ``frame_size`` and training extras)."""
    return read_json(Path(model_dir) / CONFIG_FILE)


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """Cheap identity of a trained model (weights file size + mtime) for resumable jobs."""
    weights = Path(model_dir) / MODEL_FILE
    if model_kind(model_dir) == "lsa":
        from fluidrec.encoder.lsa import COMPONENTS_FILE

        weights = Path(model_dir) / COMPONENTS_FILE
    st = weights.stat()
    return json.dumps([str(Path(model_dir).resolve()), st.st_size, st.st_mtime_ns])
