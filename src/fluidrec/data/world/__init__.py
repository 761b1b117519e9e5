"""The synthetic livestream world: a generator with a ground-truth user model.

Example:
    >>> from fluidrec.data.world import WorldConfig, generate_world, World
    >>> out = generate_world(WorldConfig.for_scale("tiny", seed=0), "runs/tiny", progress=False)
    >>> world = World.load(out)
"""

from fluidrec.data.world.config import SCALES, WorldConfig
from fluidrec.data.world.generate import WorldSummary, generate_world, generate_world_summary
from fluidrec.data.world.truth import World

__all__ = ["SCALES", "World", "WorldConfig", "WorldSummary", "generate_world", "generate_world_summary"]
