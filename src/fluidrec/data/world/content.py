"""Slice content generated from a topic: text fields, small RGB frames, search queries.

Every token of a text field is drawn from one of eight *sources* relative to the
slice's leaf topic: the leaf's own vocabulary, its level-3/2/1 ancestors', a sibling
leaf's, a random leaf's, generic filler words, or noise tokens. The source mixture
differs by field (tags are topical, comments noisy) and by domain (short videos are
cleaner: fluid.txt 3.1.1, "clean and dense supervision" from short videos).

Frames are S x S x 3 uint8: background hue from the level-1 topic, a shape whose kind
comes from the level-2 topic, its colour from the level-3 topic and its size from the
leaf, at a random position, plus brightness jitter, blotches and block noise.

Example:
    >>> texts = sample_text(tax, leaves, n_words=20, mix=MIXES["live"]["transcript"], rng=rng)
    >>> frames = render_frames(leaves, tax, palette, size=32, rng=rng)   # (N, 32, 32, 3) uint8
"""

from __future__ import annotations

import numpy as np

from fluidrec.data.world.taxonomy import Taxonomy

# Source order: leaf, level-3, level-2, level-1, sibling leaf, random leaf, generic, noise.
SOURCES = ("leaf", "l3", "l2", "l1", "sibling", "random", "generic", "noise")
MIXES: dict[str, dict[str, tuple[float, ...]]] = {
    "live": {
        "title": (0.22, 0.14, 0.16, 0.14, 0.06, 0.05, 0.18, 0.05),
        "transcript": (0.16, 0.11, 0.10, 0.08, 0.07, 0.06, 0.32, 0.10),
        "comments": (0.10, 0.07, 0.08, 0.08, 0.06, 0.07, 0.30, 0.24),
        "ocr": (0.22, 0.14, 0.14, 0.10, 0.06, 0.06, 0.12, 0.16),
        "tags": (0.28, 0.20, 0.20, 0.14, 0.08, 0.06, 0.02, 0.02),
    },
    "video": {  # cleaner: more topical words, less noise
        "title": (0.30, 0.18, 0.16, 0.12, 0.05, 0.03, 0.14, 0.02),
        "transcript": (0.24, 0.14, 0.12, 0.08, 0.06, 0.04, 0.28, 0.04),
        "comments": (0.16, 0.10, 0.10, 0.08, 0.06, 0.05, 0.30, 0.15),
        "ocr": (0.30, 0.18, 0.14, 0.10, 0.05, 0.03, 0.12, 0.08),
        "tags": (0.34, 0.22, 0.20, 0.14, 0.05, 0.03, 0.01, 0.01),
    },
    "query": {"query": (0.40, 0.20, 0.20, 0.10, 0.04, 0.0, 0.06, 0.0)},
    "bio": {"bio": (0.25, 0.15, 0.15, 0.15, 0.05, 0.0, 0.25, 0.0)},
}
# Words per field (min, max), inclusive.
LENGTHS: dict[str, tuple[int, int]] = {
    "title": (4, 8),
    "transcript": (20, 32),
    "comments": (8, 16),
    "ocr": (2, 5),
    "tags": (3, 5),
    "query": (2, 4),
    "bio": (6, 10),
}

_SHAPES = 4  # disk, square, horizontal stripes, diagonal band


def sample_word_ids(tax: Taxonomy, leaves: np.ndarray, n_words: int, mix: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Word ids (N, n_words) drawn per token from the source mixture around each leaf.

    Args:
        tax: the taxonomy (vocabularies).
        leaves: (N,) leaf topic per row.
        n_words: tokens per row (callers cut rows to their own lengths).
        mix: probabilities over ``SOURCES`` (normalised here).
        rng: random stream.
    """
    n = len(leaves)
    p = np.asarray(mix, dtype=np.float64)
    p = p / p.sum()
    src = rng.choice(len(SOURCES), size=(n, n_words), p=p)  # (N, W)
    anc = tax.ancestors[leaves]  # (N, 4)
    cand = np.empty((len(SOURCES), n, n_words), dtype=np.int64)  # (8, N, W)

    def from_vocab(level: int, nodes: np.ndarray) -> np.ndarray:
        voc = tax.vocab[level]
        col = rng.integers(0, voc.shape[1], size=(n, n_words))
        return voc[nodes[:, None], col]

    cand[0] = from_vocab(3, anc[:, 3])
    cand[1] = from_vocab(2, anc[:, 2])
    cand[2] = from_vocab(1, anc[:, 1])
    cand[3] = from_vocab(0, anc[:, 0])
    cand[4] = from_vocab(3, tax.siblings_of_leaf(leaves, rng))
    cand[5] = from_vocab(3, rng.integers(0, tax.n_leaves, size=n))
    cand[6] = tax.generic[rng.integers(0, len(tax.generic), size=(n, n_words))]
    cand[7] = tax.noise[rng.integers(0, len(tax.noise), size=(n, n_words))]
    return np.take_along_axis(cand, src[None], axis=0)[0]  # (N, W)


def sample_text(
    tax: Taxonomy,
    leaves: np.ndarray,
    field: str,
    mix: tuple[float, ...],
    rng: np.random.Generator,
    prefix: str = "",
) -> list[str]:
    """One string per leaf: ``LENGTHS[field]`` words from the mixture, joined by spaces.

    Args:
        prefix: put before every word (``"#"`` for tags).
    """
    lo, hi = LENGTHS[field]
    ids = sample_word_ids(tax, leaves, hi, mix, rng)  # (N, hi)
    lengths = rng.integers(lo, hi + 1, size=len(leaves))
    words = tax.words if not prefix else np.array([prefix + w for w in tax.words], dtype=object)
    toks = words[ids]  # (N, hi) object
    return [" ".join(row[:k]) for row, k in zip(toks, lengths)]


def make_palette(tax: Taxonomy, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Colours for frame rendering: level-1 background hues, level-3 shape colours."""
    n1 = tax.n_nodes[0]
    hues = np.arange(n1) / n1
    bg = _hsv_to_rgb(hues, np.full(n1, 0.55), np.full(n1, 0.55))  # (n1, 3)
    fg = rng.uniform(20, 235, size=(tax.n_nodes[2], 3))  # (n3, 3)
    return {"bg": bg, "fg": fg}


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    k = (np.stack([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6.0) % 6.0  # (n, 3)
    rgb = v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb * 255.0


def render_frames(leaves: np.ndarray, tax: Taxonomy, palette: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Render (N, S, S, 3) uint8 frames for ``leaves`` (see module docstring)."""
    n = len(leaves)
    f32 = np.float32
    anc = tax.ancestors[leaves]  # (N, 4)
    shape_kind = anc[:, 1] % _SHAPES  # level-2 topic -> shape
    big = (anc[:, 3] % 2).astype(f32)  # leaf -> size
    radius = (size * (0.18 + 0.12 * big + rng.uniform(-0.03, 0.03, size=n))).astype(f32)  # (N,)
    cy, cx = (size * rng.uniform(0.3, 0.7, size=(2, n))).astype(f32)
    yy, xx = np.mgrid[0:size, 0:size].astype(f32)  # (S, S)
    stripes = (np.arange(size)[:, None] // 3) % 2 == 0  # (S, 1)
    mask = np.empty((n, size, size), dtype=bool)  # (N, S, S)
    for kind in range(_SHAPES):  # only the rows of each shape compute its mask
        idx = np.nonzero(shape_kind == kind)[0]
        dy = yy[None] - cy[idx, None, None]  # (n_k, S, S)
        dx = xx[None] - cx[idx, None, None]
        r = radius[idx, None, None]
        if kind == 0:  # disk
            mask[idx] = dy * dy + dx * dx <= r * r
        elif kind == 1:  # square
            mask[idx] = (np.abs(dy) <= r) & (np.abs(dx) <= r)
        elif kind == 2:  # horizontal stripes
            mask[idx] = (np.abs(dy) <= r) & stripes[None]
        else:  # diagonal band
            mask[idx] = np.abs(dy - dx) <= r * 0.6
    bg = (palette["bg"][anc[:, 0]] + rng.normal(0, 12, size=(n, 3))).astype(f32)  # (N, 3)
    fg = (palette["fg"][anc[:, 2]] + rng.normal(0, 12, size=(n, 3))).astype(f32)
    img = np.where(mask[..., None], fg[:, None, None, :], bg[:, None, None, :])  # (N, S, S, 3)
    # Low-resolution blotches (lighting, other objects), sensor noise on 2x2 blocks (so the
    # frames stay compressible on disk) and a global brightness jitter.
    g = max(2, size // 8)
    rep = -(-size // g)
    blot = rng.standard_normal((n, g, g, 1), dtype=f32) * 14
    img += np.repeat(np.repeat(blot, rep, axis=1), rep, axis=2)[:, :size, :size]
    half = -(-size // 2)
    grain = rng.standard_normal((n, half, half, 3), dtype=f32) * 8
    img += np.repeat(np.repeat(grain, 2, axis=1), 2, axis=2)[:, :size, :size]
    img += rng.standard_normal((n, 1, 1, 1), dtype=f32) * 10
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# Words a highlight moment adds to a segment's speech and chat (assumption, after the
# paper's Figure 1/3 cases: performances draw applause and gifts, interaction moments
# draw questions and follows). They are new words: slices never carry them.
MOMENT_WORDS: dict[int, tuple[str, ...]] = {
    1: ("encore", "applause", "bravo", "solo", "finale", "spotlight", "standing", "ovation", "climax", "showtime"),
    2: ("shoutout", "giveaway", "qna", "vote", "reply", "dm", "poll", "ask", "announce", "collab"),
}
SEGMENT_FIELDS = ("transcript", "comments", "tags")


def segment_text(tax: Taxonomy, leaves: np.ndarray, moment: np.ndarray, n_moment_words: int, rng: np.random.Generator) -> dict[str, list[str]]:
    """Transcript, comments and tags of a batch of 30-s segments (live mixtures).

    A highlight segment (``moment`` 1 or 2) gets ``n_moment_words`` words of its kind
    appended to its transcript and its comments.
    """
    cols = {f: sample_text(tax, leaves, f, MIXES["live"][f], rng, prefix="#" if f == "tags" else "") for f in SEGMENT_FIELDS}
    if n_moment_words == 0:
        return cols
    for kind, words in MOMENT_WORDS.items():
        rows = np.flatnonzero(moment == kind)
        vocab = np.array(words, dtype=object)
        for field in ("transcript", "comments"):
            picks = vocab[rng.integers(0, len(vocab), size=(len(rows), n_moment_words))]  # (n_kind, W)
            for r, extra in zip(rows, picks):
                cols[field][r] = cols[field][r] + " " + " ".join(extra)
    return cols
