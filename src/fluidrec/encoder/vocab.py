"""Vocabulary extension: the dataset's frequent words as whole tokens of the encoder's tokenizer.

A pre-trained WordPiece vocabulary cuts words it has never seen into pieces (``kecoce`` ->
``ke ##co ##ce``): about 2.3 tokens a word on the synthetic world, whose level-3/4 topic words
are pseudo-words. With a one-layer language model whose last layer is read at the EOS row only
(the demo), the EOS state is an attention-weighted bag of *pieces*: it cannot tell which pieces
belong together, and a piece such as ``##co`` is shared by many words of many topics. A
TF-IDF + SVD model over the same pieces already loses about 0.1 Q2I Recall@10 to one over
words (docs/encoder.md, "Diagnosis"). Adding the words as tokens (what domain-adapted
tokenizers do for product names and slang) gives the encoder the words, and halves the tokens
an item needs.

- ``select_words``: words of the training slices' text (the tokenizer's own normalizer and
  pre-tokenizer, so a word here is a word there) that the tokenizer cuts into 2+ pieces or
  maps to its unknown token, kept by document frequency (``>= min_df``), most frequent first,
  at most ``max_words``; ties break alphabetically, so the choice is deterministic.
- ``AddedWordEmbedding``: the LM's word table plus a second table for the added tokens
  (ids ``>= base``). Kept apart so that ``freeze_word_embeddings`` can freeze the pre-trained
  rows while the new ones train, and so that AdamW never touches the 30k-row table when it is
  frozen. A new row starts at the mean of its word's pieces: the encoder starts where the
  pieces left it.
- ``extend_vocabulary(model, words)`` wires both into a built encoder; ``attach_added_rows``
  rebuilds the (empty) second table when a saved model is loaded (its tokenizer has the words).

Example:
    >>> words = select_words(docs, model.text.tokenizer, max_words=8192)
    >>> extend_vocabulary(model, words)
    >>> model.text.vocab_size > model.lm.config.vocab_size
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn

from fluidrec.encoder.text import TextModule


def _words(tokenizer, doc: str) -> list[str]:
    """The tokenizer's words of ``doc``: its normalizer (lowercasing, accents) then its pre-tokenizer."""
    backend = tokenizer.backend_tokenizer
    if backend.normalizer is not None:
        doc = backend.normalizer.normalize_str(doc)
    if backend.pre_tokenizer is None:
        return doc.split()
    return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(doc)]


def _pieces(tokenizer, words: Sequence[str]) -> list[list[int]]:
    """Token ids of each word on its own, without specials (a private backend copy: no padding, no truncation)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return [e.ids for e in backend.encode_batch(list(words), add_special_tokens=False)]


def select_words(docs: Sequence[str], tokenizer, max_words: int, *, min_df: int = 2) -> list[str]:
    """Up to ``max_words`` words of ``docs`` worth a token of their own (see the module docstring).

    Example:
        >>> select_words(["kecoce live", "kecoce zusatai", "zusatai"], tok, 10)
        ['kecoce', 'zusatai']
    """
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(_words(tokenizer, doc)))
    frequent = sorted((w for w, n in df.items() if n >= min_df and w.isalnum()), key=lambda w: (-df[w], w))
    unk = tokenizer.unk_token_id
    split = [w for w, ids in zip(frequent, _pieces(tokenizer, frequent)) if len(ids) >= 2 or (len(ids) == 1 and ids[0] == unk)]
    return split[:max_words]


class AddedWordEmbedding(nn.Module):
    """Word table of a LM with added tokens: ``base`` for ids ``< base_rows``, ``added`` above.

    Args:
        base: the LM's own input embedding (V, H).
        added: (A, H) rows of the added tokens, ids ``V .. V + A - 1``.
    """

    def __init__(self, base: nn.Embedding, added: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.added = nn.Embedding.from_pretrained(added.clone(), freeze=False)

    @property
    def base_rows(self) -> int:
        return int(self.base.num_embeddings)

    @property
    def num_embeddings(self) -> int:
        return self.base_rows + int(self.added.num_embeddings)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        is_added = ids >= self.base_rows  # (B, L)
        out = self.base(torch.where(is_added, 0, ids))  # (B, L, H)
        if not bool(is_added.any()):
            return out
        new = self.added((ids - self.base_rows).clamp_min(0))  # (B, L, H)
        return torch.where(is_added.unsqueeze(-1), new, out)


def base_word_table(lm: nn.Module) -> nn.Embedding:
    """The LM's pre-trained word table, whether or not words were added."""
    emb = lm.get_input_embeddings()
    return emb.base if isinstance(emb, AddedWordEmbedding) else emb


def _retokenize(model, words: Sequence[str]) -> None:
    from tokenizers import AddedToken

    tok = model.text.tokenizer
    before = len(tok)
    tok.add_tokens([AddedToken(w, single_word=True, normalized=True) for w in words])
    if len(tok) != before + len(words):  # the rows are matched to the new ids by position
        raise ValueError(f"{len(words)} words gave {len(tok) - before} new tokens: a word was already a token")
    old = model.text
    model.text = TextModule(tok, old.fields, old.item_budget, old.query_budget)


def extend_vocabulary(model, words: Sequence[str]) -> int:
    """Add ``words`` as whole tokens of ``model``'s tokenizer, each row the mean of its pieces; returns how many."""
    if not words:
        return 0
    if isinstance(model.lm.get_input_embeddings(), AddedWordEmbedding):
        raise ValueError("this encoder's vocabulary was already extended")
    base = model.lm.get_input_embeddings()
    pieces = _pieces(model.text.tokenizer, words)
    with torch.no_grad():
        rows = torch.stack([base.weight[torch.tensor(p, dtype=torch.long)].mean(0) for p in pieces])  # (A, H)
    _retokenize(model, words)
    model.lm.set_input_embeddings(AddedWordEmbedding(base, rows))
    return len(words)


def attach_added_rows(model) -> int:
    """On load: when the tokenizer has tokens past the LM's table, add their (to be loaded) rows."""
    base = model.lm.get_input_embeddings()
    extra = model.text.vocab_size - int(base.num_embeddings)
    if extra <= 0 or isinstance(base, AddedWordEmbedding):
        return 0
    model.lm.set_input_embeddings(AddedWordEmbedding(base, torch.zeros(extra, base.embedding_dim)))
    return extra
