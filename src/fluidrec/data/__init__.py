"""Canonical dataset: schema, reading/writing, validation, stats, the synthetic world, importers."""
