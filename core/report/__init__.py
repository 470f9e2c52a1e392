"""What the audit report collects from the lake, as plain dicts (rendered by sculpt.reports)."""
