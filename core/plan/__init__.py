"""Decisions and plans: the decision log, plans compiled from it, per-pair shaping columns."""
