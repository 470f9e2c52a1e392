"""CLI command groups; each module exposes `register(add)` (see core/cli.py)."""

GROUPS = ("lake", "ingest", "scan", "concepts", "analyze", "triage", "train", "report", "misc")
