"""Small shared helpers: atomic writes, seeding, run directories, hardware probes."""
