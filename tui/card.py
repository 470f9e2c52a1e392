"""The concept card: what a concept is, how strongly it leans, and the evidence behind it."""

from __future__ import annotations

import json
from typing import Any

import duckdb
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, LoadingIndicator, Static

from sculpt.concepts import evidence
from sculpt.tui.decide import DecidingScreen, Target, badge
from sculpt.tui.keys import bindings
from sculpt.tui.table import fmt, fmt_delta, fmt_q, scope_cell
from sculpt.tui.text import MARK, marked, one_line

HIGHLIGHT = MARK[2]
"""The style of a marked token or match (it is bracketed as well: ⟦token⟧)."""


class CardLoaded(Message):
    def __init__(
        self,
        concept: dict[str, Any],
        related: list[dict[str, Any]],
        histogram: list[tuple[float, float, int]],
        contexts: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        self.concept, self.related, self.histogram, self.contexts = (
            concept,
            related,
            histogram,
            contexts,
        )


class CorrelatedLoaded(Message):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows


def describe_source(concept: dict[str, Any]) -> str:
    try:
        source = json.loads(concept.get("source") or "{}")
    except (TypeError, ValueError):
        source = {}
    if not isinstance(source, dict) or not source:
        return "source unknown"
    return " · ".join(f"{one_line(k)} {_short(v)}" for k, v in source.items() if v is not None)


def _short(value: Any, width: int = 48) -> str:
    """One line of a source field: a long regex is evidence of where, not something to read."""
    text = one_line(" ".join(str(value).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def stats_line(row: dict[str, Any]) -> Text:
    split = "✓ split-half" if row["split_half_ok"] else "✗ split-half"
    text = Text()
    text.append(
        f"Δ {fmt(row['delta'], '+.3g')} [{fmt(row['ci_lo'], '+.3g')}, {fmt(row['ci_hi'], '+.3g')}]",
        "bold",
    )
    text.append(f" · d {fmt(row['d'], '+.2f')} · q {fmt_q(row['q'])} · {split}")
    if row.get("delta_min") is not None:
        text.append(f" (Δmin {fmt(row['delta_min'], '.3g')})")
    if row.get("delta_len") is not None:
        text.append(f" · length-controlled Δ {fmt(row['delta_len'], '+.3g')}")
    if row.get("length_only"):
        text.append(" · ⚠ only longer text", "bold")
    return text


def rate_bar(name: str, rate: float | None, width: int = 20) -> Text:
    rate = rate or 0.0
    filled = round(rate * width)
    return Text(f"  {name:<9} {'█' * filled}{'░' * (width - filled)} {rate:6.1%}\n")


def histogram_text(bins: list[tuple[float, float, int]], width: int = 30) -> Text:
    if not bins:
        return Text("  no per-pair scores for this concept in the lake\n", "italic")
    peak = max(n for _, _, n in bins) or 1
    text = Text()
    for lo, hi, n in bins:
        bar = "█" * max(1 if n else 0, round(n / peak * width))
        text.append(f"  {lo:+9.3g} … {hi:+9.3g} │{bar:<{width}} {n:,}\n")
    return text


def context_text(ctx: dict[str, Any], radius: int = 40) -> Text:
    """One context line: side, activation, the text around the marked match or token."""
    text = Text("  ")
    text.append(f"{ctx.get('side', '?'):<8}", "dim")
    act = ctx.get("act")
    text.append(f" {float(act):5.2f}  " if act is not None else "        ")
    segments = ctx.get("segments") or []
    first = next((i for i, (_, hot) in enumerate(segments) if hot), None)
    for i, (part, hot) in enumerate(segments):
        part = str(part)
        if first is not None and i < first:
            part = part[-radius:]
        elif first is not None and i > first and not hot:
            part = part[:radius]
        if hot:
            marked(text, part)
        else:
            text.append(one_line(part))
    text.append("\n")
    return text


class ConceptCard(DecidingScreen):
    KEYS_SCREEN = "card"
    BINDINGS = bindings("card")

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row
        self.concept: dict[str, Any] = {"concept_id": row["concept_id"]}

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="card"):
            yield Static(self.header_text(), id="card-head")
            yield Static(id="card-stats")
            yield Static(id="card-histogram")
            yield Static(id="card-contexts")
            yield Static(id="card-clusters")
            yield Static(Text("correlated concepts: computing…", "italic"), id="card-correlated")
        yield LoadingIndicator(id="loading")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#card").focus()
        self.load()
        self.load_correlated()

    @work(thread=True, exclusive=True, group="card")
    def load(self) -> None:
        data = self.data
        concept_id = self.row["concept_id"]
        try:
            concept = evidence.concept(data, concept_id)
            related = data.hypotheses_for(concept_id)
            histogram = evidence.gap_histogram(data, concept_id)
            contexts = evidence.contexts(data, concept, self.row["lean"])
        except duckdb.Error as exc:
            self.app.call_from_thread(
                self.notify, one_line(str(exc).splitlines()[0]), severity="error", markup=False
            )
            return
        self.post_message(CardLoaded(concept, related, histogram, contexts))

    @work(thread=True, exclusive=True, group="correlated")
    def load_correlated(self) -> None:
        try:
            data = self.data
            candidates = data.correlation_candidates()
            rows = evidence.correlated(data, self.row["concept_id"], candidates)
        except duckdb.Error:
            rows = []
        self.post_message(CorrelatedLoaded(rows))

    def header_text(self) -> Text:
        row = self.row
        decision = self.book.for_row(row["concept_id"], row["hypothesis_id"], row["data_cluster"])
        text = Text()
        text.append(one_line(row["label"] or row["concept_id"]), "bold")
        text.append(f"  [{badge(decision) if decision else 'undecided'}]\n")
        kind = one_line(row["kind"] or self.concept.get("kind", "?"))
        text.append(f"{one_line(row['concept_id'])} · {kind}")
        if "source" in self.concept:
            text.append(f" · {describe_source(self.concept)}")
        where = "all pairs" if row["scope"] == "global" else f"data cluster {row['data_cluster']}"
        text.append(
            f"\nhypothesis {row['hypothesis_id']} · {row['scope']} · {where} · "
            f"leans {row['lean']} · n {fmt(row['n'], ',')} (in {fmt(row['n_in'], ',')})"
        )
        return text

    def on_card_loaded(self, message: CardLoaded) -> None:
        self.query_one("#loading").display = False
        self.concept = message.concept
        self.query_one("#card-head", Static).update(self.header_text())
        stats = Text("\n")
        stats.append(stats_line(self.row))
        stats.append("\n  fires in (score > 0):\n")
        stats.append(rate_bar("chosen", self.row.get("chosen_rate")))
        stats.append(rate_bar("rejected", self.row.get("rejected_rate")))
        self.query_one("#card-stats", Static).update(stats)
        histogram = Text("\nper-pair gap, chosen − rejected score (pairs)\n", "bold")
        histogram.append(histogram_text(message.histogram))
        self.query_one("#card-histogram", Static).update(histogram)
        contexts = Text("\ntop-activating contexts (token highlighted)\n", "bold")
        if not message.contexts:
            contexts.append("  none recorded for this concept\n", "italic")
        for ctx in message.contexts:
            contexts.append(context_text(ctx))
        self.query_one("#card-contexts", Static).update(contexts)
        self.query_one("#card-clusters", Static).update(self.clusters_text(message.related))

    def clusters_text(self, related: list[dict[str, Any]]) -> Text:
        text = Text("\ndata clusters where it leans most\n", "bold")
        conditional = [r for r in related if r["scope"] != "global"][:6]
        if not conditional:
            text.append("  no conditional hypotheses for this concept\n", "italic")
        for r in conditional:
            split = "✓" if r["split_half_ok"] else "✗"
            text.append(
                f"  {scope_cell(r):<7} Δ {fmt_delta(r['delta'])} [{fmt_delta(r['ci_lo'])}, "
                f"{fmt_delta(r['ci_hi'])}] d {fmt(r['d'], '+.2f')} q {fmt_q(r['q'])} {split} "
                f"n_in {fmt(r['n_in'], ',')}\n"
            )
        return text

    def on_correlated_loaded(self, message: CorrelatedLoaded) -> None:
        text = Text("\ncorrelated concepts (per-pair gap, r on ≤2,000 pairs)\n", "bold")
        if not message.rows:
            text.append("  none found\n", "italic")
        for r in message.rows:
            text.append(f"  r {r['r']:+.2f}  {one_line(r['label'] or '')} ")
            text.append(f"({one_line(r['concept_id'])})\n")
        self.query_one("#card-correlated", Static).update(text)

    def decision_target(self) -> Target | None:
        return Target.of_row(self.row)

    def decisions_changed(self) -> None:
        self.query_one("#card-head", Static).update(self.header_text())

    def on_screen_resume(self) -> None:
        self.decisions_changed()

    def action_open_pairs(self) -> None:
        from sculpt.tui.pairs import PairViewer

        self.app.push_screen(PairViewer(self.row))

    def action_back(self) -> None:
        self.app.pop_screen()
