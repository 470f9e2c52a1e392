"""The command line: one module per command group, each exposing `register(add)` (see main.py)."""

GROUPS = (
    "lake",
    "ingest",
    "scan",
    "concepts",
    "analyze",
    "findings",
    "triage",
    "train",
    "report",
    "misc",
)
