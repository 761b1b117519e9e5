"""The main job (reproduce FLUID end to end) and its report."""
