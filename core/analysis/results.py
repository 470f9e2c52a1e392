"""An analysis's results as rows: ranked, filtered hypotheses of one analysis (the latest by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sculpt.analysis.config import latest_analysis
from sculpt.errors import UserError

if TYPE_CHECKING:
    from sculpt.lake.remote import RemoteLake
    from sculpt.lake.store import Lake


def read_hypotheses(
    lake: Lake | RemoteLake,
    dataset: str,
    analysis: str | None = None,
    scope: str = "global",
    lean: str | None = None,
    kind: str | None = None,
    top: int = 0,
) -> list[dict[str, Any]]:
    """Ranked hypotheses of one analysis (the latest when None), filtered."""
    key = analysis or latest_analysis(lake, dataset)
    if key is None or not lake.files("hypotheses", {"dataset": dataset, "analysis": key}):
        raise UserError(f"hypotheses[{dataset}]: no analysis found; run `sculpt analyze {dataset}`")
    rows = lake.read("hypotheses", {"dataset": dataset, "analysis": key}).to_pylist()
    rows = [
        r
        for r in rows
        if r["scope"] == scope
        and (lean is None or r["lean"] == lean)
        and (kind is None or r["kind"] == kind)
    ]
    rows.sort(key=lambda r: r["rank"])
    return rows[:top] if top > 0 else rows
