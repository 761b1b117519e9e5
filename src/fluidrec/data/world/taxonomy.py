"""A 4-level topic taxonomy with overlapping per-node vocabularies.

Level 1 and level 2 nodes carry real English names and words (so a pretrained text
encoder has something to hold on to); deeper levels get synthetic pseudo-words made
from syllables (like niche slang a pretrained model has never seen, which only the
Q2I-fine-tuned encoder can learn). Every node's vocabulary borrows a share of its
siblings' words, so neighbouring topics overlap and content is not trivially separable.

Node ids are global per level: level l has ``n_nodes[l]`` nodes numbered 0..n-1, and a
leaf (level 4) id is the ``topic_l4`` value. ``ancestors[leaf] = (l1, l2, l3, l4)``.

Example:
    >>> tax = build_taxonomy(WorldConfig(), np.random.default_rng(0))
    >>> tax.ancestors.shape            # (n_leaves, 4)
    (192, 4)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fluidrec.data.world.config import WorldConfig

L1_NAMES = ("music", "gaming", "chatting", "dance", "sports", "food", "outdoors", "shopping")
L2_NAMES = (
    ("singing", "guitar", "piano", "dj"),
    ("shooter", "strategy", "mobile", "racing"),
    ("talkshow", "dating", "storytelling", "advice"),
    ("kpop", "ballet", "hiphop", "folk"),
    ("football", "basketball", "fitness", "swimming"),
    ("cooking", "baking", "streetfood", "mukbang"),
    ("fishing", "hiking", "travel", "camping"),
    ("fashion", "beauty", "gadgets", "furniture"),
)
L1_WORDS = (
    ("song", "melody", "lyrics", "voice", "concert", "band", "chorus", "rhythm", "note", "tune", "cover", "album"),
    ("game", "level", "boss", "player", "ranked", "squad", "loot", "quest", "respawn", "controller", "speedrun", "lobby"),
    ("talk", "story", "question", "friends", "night", "chat", "topic", "opinion", "life", "laugh", "secret", "answer"),
    ("dance", "move", "choreo", "step", "stage", "routine", "spin", "beat", "groove", "pose", "practice", "costume"),
    ("training", "score", "goal", "coach", "workout", "sprint", "league", "muscle", "reps", "field", "ball", "medal"),
    ("recipe", "taste", "kitchen", "spicy", "dinner", "flavor", "chef", "delicious", "meal", "sauce", "snack", "oven"),
    ("river", "mountain", "trail", "lake", "sunset", "forest", "tent", "boat", "nature", "weather", "road", "view"),
    ("sale", "deal", "price", "discount", "brand", "order", "review", "unboxing", "style", "link", "stock", "coupon"),
)
GENERIC_WORDS = (
    "hello", "everyone", "welcome", "guys", "today", "thanks", "follow", "please", "okay", "so", "yeah", "really",
    "now", "here", "come", "join", "wow", "nice", "cool", "lets", "and", "the", "with", "we", "you", "this", "very",
    "good", "more", "live", "stream", "tonight", "new", "best", "first", "time", "again", "love", "fun", "see",
)
NOISE_WORDS = ("lol", "haha", "666", "hhh", "omg", "???", "!!!", "xd", "lmao", "brb", "gg", "ok", "hi", "+1", "plz")

_CONSONANTS = tuple("bcdfghjklmnprstvwz") + ("sh", "ch", "th", "tr", "kr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")


@dataclasses.dataclass
class Taxonomy:
    """Topic tree and vocabularies (all arrays of ints index into ``words``).

    Attributes:
        branching: children per node for levels 1..4 (level 1 = number of roots).
        n_nodes: nodes per level, e.g. (8, 32, 96, 192).
        parent: ``parent[l]`` maps a level-l node to its level-(l-1) node (``parent[0]`` is empty).
        ancestors: (n_leaves, 4) global node id at each level for every leaf.
        vocab: ``vocab[l]`` is (n_nodes[l], V_l) word ids of each node's vocabulary.
        names: ``names[l][node]`` a display name (real words at levels 1-2).
        words: all words, ``words[i]`` is word id i.
        generic: word ids of generic filler words; noise: word ids of noise tokens.
    """

    branching: tuple[int, int, int, int]
    n_nodes: tuple[int, int, int, int]
    parent: list[np.ndarray]
    ancestors: np.ndarray
    vocab: list[np.ndarray]
    names: list[list[str]]
    words: np.ndarray
    generic: np.ndarray
    noise: np.ndarray

    @property
    def n_leaves(self) -> int:
        return self.n_nodes[3]

    def siblings_of_leaf(self, leaves: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random sibling leaf (same level-3 parent, different leaf) for each leaf."""
        b4 = self.branching[3]
        offset = rng.integers(1, b4, size=len(leaves))  # never 0: a different child
        base = (leaves // b4) * b4
        return base + (leaves - base + offset) % b4


def _pseudo_words(n: int, rng: np.random.Generator, taken: set[str]) -> list[str]:
    """``n`` distinct pronounceable pseudo-words (2-3 syllables) not in ``taken``."""
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(2, 4))
        c = rng.integers(0, len(_CONSONANTS), size=k)
        v = rng.integers(0, len(_VOWELS), size=k)
        w = "".join(_CONSONANTS[i] + _VOWELS[j] for i, j in zip(c, v))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def build_taxonomy(cfg: WorldConfig, rng: np.random.Generator) -> Taxonomy:
    """Build the tree, names and overlapping vocabularies for ``cfg.branching``.

    Args:
        cfg: world config (uses ``branching``, ``words_per_node``, ``sibling_borrow``).
        rng: the generator's random stream (consumed deterministically).
    """
    b = cfg.branching
    n_nodes = (b[0], b[0] * b[1], b[0] * b[1] * b[2], b[0] * b[1] * b[2] * b[3])
    parent = [np.zeros(0, dtype=np.int64)] + [np.arange(n_nodes[lv]) // b[lv] for lv in range(1, 4)]
    leaves = np.arange(n_nodes[3])
    l3 = leaves // b[3]
    l2 = l3 // b[2]
    l1 = l2 // b[1]
    ancestors = np.stack([l1, l2, l3, leaves], axis=1).astype(np.int64)  # (n_leaves, 4)

    taken: set[str] = set(GENERIC_WORDS) | set(NOISE_WORDS)
    for ws in L1_WORDS:
        taken |= set(ws)
    for ns in L2_NAMES:
        taken |= set(ns)
    taken |= set(L1_NAMES)
    words: list[str] = list(GENERIC_WORDS) + list(NOISE_WORDS)
    generic = np.arange(len(GENERIC_WORDS))
    noise_fixed = list(range(len(GENERIC_WORDS), len(words)))

    def add(ws: list[str]) -> list[int]:
        start = len(words)
        words.extend(ws)
        return list(range(start, len(words)))

    # Own words of every node; level 1-2 real where we have them, else synthetic.
    own: list[list[list[int]]] = []
    names: list[list[str]] = []
    for lv in range(4):
        own_lv, names_lv = [], []
        for node in range(n_nodes[lv]):
            n_own = cfg.words_per_node[lv]
            real: list[str] = []
            name = None
            if lv == 0 and node < len(L1_NAMES) and b[0] <= len(L1_NAMES):
                name = L1_NAMES[node]
                real = [name, *L1_WORDS[node]][:n_own]
            elif lv == 1 and b[0] <= len(L2_NAMES) and b[1] <= len(L2_NAMES[0]):
                name = L2_NAMES[node // b[1]][node % b[1]]
                real = [name]
            synth = _pseudo_words(n_own - len(real), rng, taken) if n_own > len(real) else []
            ids = add(real + synth)
            own_lv.append(ids)
            names_lv.append(name if name is not None else words[ids[0]])
        own.append(own_lv)
        names.append(names_lv)

    # Vocabulary = own words + words borrowed from siblings (same parent), so siblings overlap.
    vocab: list[np.ndarray] = []
    for lv in range(4):
        n_own = cfg.words_per_node[lv]
        n_borrow = int(round(cfg.sibling_borrow * n_own / max(1e-9, 1 - cfg.sibling_borrow)))
        rows = []
        for node in range(n_nodes[lv]):
            group = node // b[lv] if lv > 0 else 0
            sibs = [s for s in range(group * b[lv], (group + 1) * b[lv]) if s != node]
            pool = np.array([w for s in sibs for w in own[lv][s]], dtype=np.int64)
            borrowed = rng.choice(pool, size=min(n_borrow, len(pool)), replace=False) if n_borrow else pool[:0]
            rows.append(np.concatenate([np.array(own[lv][node], dtype=np.int64), borrowed]))
        vocab.append(np.stack(rows))  # (n_nodes, V_l)

    noise = np.array(noise_fixed + add(_pseudo_words(60, rng, taken)), dtype=np.int64)
    return Taxonomy(
        branching=tuple(b),
        n_nodes=n_nodes,
        parent=parent,
        ancestors=ancestors,
        vocab=vocab,
        names=names,
        words=np.array(words, dtype=object),
        generic=generic.astype(np.int64),
        noise=noise,
    )
