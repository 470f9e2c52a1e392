"""Preference data in: ingest, record formats, file sources, the demo dataset."""
