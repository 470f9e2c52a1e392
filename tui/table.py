"""The hypotheses table's text: one pre-formatted line per row.

A single DataTable column holding a whole line renders several times faster than a dozen cells
(the per-cell Rich rendering dominated a sort), and keeps the columns aligned to the character.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from sculpt.tui.keys import bindings
from sculpt.tui.text import one_line

COLUMNS_NARROW = (
    ("decision", 12, "<"),
    ("scope", 6, "<"),
    ("concept", 0, "<"),
    ("d", 5, ">"),
    ("fires c/r", 9, ">"),
    ("q", 5, ">"),
    ("½", 1, "<"),
    ("lean", 8, "<"),
)
COLUMNS_WIDE = (
    ("decision", 12, "<"),
    ("scope", 6, "<"),
    ("kind", 5, "<"),
    ("concept", 0, "<"),
    ("d", 5, ">"),
    ("fires c/r", 9, ">"),
    ("q", 5, ">"),
    ("½", 1, "<"),
    ("lean", 12, "<"),
    ("Δ [95% CI], own units", 22, ">"),
    ("Δmin", 5, ">"),
    ("n_in", 7, ">"),
)
"""(header, width, alignment); the concept column (width 0) takes what the others leave. d and
the share of pairs it fires in (chosen/rejected) read on one scale for every kind; Δ does not."""
KIND_SHORT = {
    "sae_feature": "sae",
    "feature_cluster": "fc",
    "lexical": "lex",
    "ngram": "ngram",
    "vector": "vec",
}
Columns = list[tuple[str, int, str]]


def fmt_q(q: float | None) -> str:
    if q is None:
        return "–"
    if q < 1e-4:
        return "<1e-4"
    if q < 0.001:
        return f"{q:.0e}"
    return f"{q:.3f}" if q < 0.1 else f"{q:.2f}"


def fmt(x: float | int | None, spec: str) -> str:
    """`format(x, spec)`, or `–` when a producer left the value out (None or NaN)."""
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return format(x, spec)


def fmt_delta(x: float | None) -> str:
    """Signed, in at most 6 characters, without rounding small effects to +0.00."""
    if x is None or x != x:
        return "–"
    if x == 0 or abs(x) >= 0.095:
        return f"{x:+.2f}"
    return f"{x:+.3f}" if abs(x) >= 0.00095 else f"{x:+.0e}"


def scope_cell(row: dict[str, Any], expanded: bool = False) -> str:
    """`global`, `k3` (a data cluster), `p2` (a prompt cluster); a finding `▸ 4` (its members,
    `▾` when shown), a member `└`."""
    if row["scope"] == "finding":
        return f"{'▾' if expanded else '▸'} {row.get('n_members') or 1}"
    if row["scope"] == "member":
        return "  └"
    if row["scope"] == "global":
        return "global"
    prefix = "p" if row["scope"] == "prompt" else "k"
    return f"{prefix}{row['data_cluster']}" if row["data_cluster"] is not None else row["scope"]


def layout(wide: bool, total_width: int) -> Columns:
    columns = COLUMNS_WIDE if wide else COLUMNS_NARROW
    fixed = sum(w + 1 for _, w, _ in columns) + 4  # one space between columns, scrollbar
    flex = max(12, min(48, total_width - fixed))
    return [(name, width or flex, align) for name, width, align in columns]


def _fit(text: str, width: int, align: str) -> str:
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.rjust(width) if align == ">" else text.ljust(width)


def header(columns: Columns) -> str:
    return " ".join(_fit(name, width, align) for name, width, align in columns)


def _values(row: dict[str, Any], decision: str, wide: bool, expanded: bool) -> list[str]:
    label = one_line(row["label"] or row["concept_id"])
    if row["scope"] == "member":
        label = f"  {label} ({row.get('role') or 'member'})"
    split = "✓" if row["split_half_ok"] else "✗"
    lean = str(row["lean"]) + (" len" if row.get("length_only") else "")
    delta = fmt_delta(row["delta"])
    share = share_cell(row)
    if not wide:
        return [
            decision,
            scope_cell(row, expanded),
            label,
            fmt(row["d"], "+.2f"),
            share,
            fmt_q(row["q"]),
            split,
            lean,
        ]
    delta_min = "–" if row["delta_min"] is None else fmt_delta(row["delta_min"]).lstrip("+")
    return [
        decision,
        scope_cell(row, expanded),
        _kind(row["kind"]),
        label,
        fmt(row["d"], "+.2f"),
        share,
        fmt_q(row["q"]),
        split,
        lean,
        f"{delta} [{fmt_delta(row['ci_lo'])}, {fmt_delta(row['ci_hi'])}]",
        delta_min,
        fmt(row["n_in"], ","),
    ]


def _kind(kind: str | None) -> str:
    """A kind in 5 columns; a finding whose members are of several kinds is `mixed`."""
    kind = kind or ""
    return KIND_SHORT.get(kind, "mixed" if "," in kind else kind)


def share_cell(row: dict[str, Any]) -> str:
    """Share of chosen / rejected responses where the concept fires: `55/15%`."""
    chosen, rejected = row.get("chosen_rate"), row.get("rejected_rate")
    if chosen is None or rejected is None:
        return "–"
    return f"{100 * chosen:.0f}/{100 * rejected:.0f}%"


def row_line(row: dict[str, Any], decision: str, columns: Columns, expanded: bool = False) -> Text:
    """One row as plain text (a Text, so dataset labels are never read as markup)."""
    wide = len(columns) == len(COLUMNS_WIDE)
    values = _values(row, decision, wide, expanded)
    return Text(
        " ".join(_fit(v, w, a) for v, (_, w, a) in zip(values, columns, strict=True)), no_wrap=True
    )


class RowTable(DataTable):
    """A row table with the keys a terminal user expects: j/k move, Home/End go to the first and
    last row. A paged screen hears `Edge` and fetches the rows not loaded yet."""

    BINDINGS = bindings("table")

    class Edge(Message):
        def __init__(self, last: bool) -> None:
            super().__init__()
            self.last = last

    def action_first_row(self) -> None:
        self.move_cursor(row=0)
        self.post_message(self.Edge(last=False))

    def action_last_row(self) -> None:
        self.move_cursor(row=max(0, self.row_count - 1))
        self.post_message(self.Edge(last=True))
