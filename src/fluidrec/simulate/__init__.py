"""Simulated online A/B tests against the synthetic world's ground-truth user model."""
