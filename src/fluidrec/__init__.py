"""fluidrec: ID-free ranking for short-lived items.

Each short-lived item (a live room) is described by what it shows: a multimodal
encoder embeds every 2-minute slice, residual k-means turns the embedding into a
4-level semantic code (LUCID), and a token-based ranker uses slice and room codes
where the item ID used to be. See README.md and docs/.
"""

__version__ = "0.1.0"
