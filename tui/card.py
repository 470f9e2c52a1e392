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
from sculpt.concepts.contexts import contexts as where_it_fires
from sculpt.plan.decisions import Decision
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
        histogram: list[tuple[float, float, int, int]],
        contexts: list[dict[str, Any]],
        names: dict[int | None, str],
    ) -> None:
        super().__init__()
        self.concept, self.related, self.histogram, self.contexts, self.names = (
            concept,
            related,
            histogram,
            contexts,
            names,
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
    """d first (one scale for every kind), then Δ in the concept's own units."""
    split = "✓ split-half" if row["split_half_ok"] else "✗ split-half"
    text = Text()
    text.append(f"d {fmt(row['d'], '+.2f')}", "bold")
    text.append(
        f" · Δ {fmt(row['delta'], '+.3g')} [{fmt(row['ci_lo'], '+.3g')}, "
        f"{fmt(row['ci_hi'], '+.3g')}] · q {fmt_q(row['q'])} · {split}"
    )
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


def _bar(value: float, peak: float, width: int, glyph: str) -> str:
    return glyph * max(1 if value else 0, round(value / peak * width)) if peak else ""


def histogram_text(bins: list[tuple[float, float, int, int]], width: int = 30) -> Text:
    """Pairs per gap bin; with a data cluster, its pairs (█) beside the rest (░), each bar a
    share of its own group so a small cluster reads against a large rest."""
    if not bins:
        return Text("  no per-pair scores for this concept in the lake\n", "italic")
    text = Text()
    if not any(rest for *_, rest in bins):
        peak: float = max(n for _, _, n, _ in bins)
        for lo, hi, n, _ in bins:
            text.append(f"  {lo:+9.3g} … {hi:+9.3g} │{_bar(n, peak, width, '█'):<{width}} {n:,}\n")
        return text
    half = width // 2 - 1
    total_in = sum(n for _, _, n, _ in bins) or 1
    total_rest = sum(r for *_, r in bins) or 1
    peak = max(max(n / total_in, r / total_rest) for _, _, n, r in bins)
    text.append(
        f"  {'gap':>21} │{'in the cluster':<{half}}│{'the rest':<{half}} in / rest\n", "dim"
    )
    for lo, hi, n, rest in bins:
        inside = _bar(n / total_in, peak, half, "█")
        other = _bar(rest / total_rest, peak, half, "░")
        text.append(
            f"  {lo:+9.3g} … {hi:+9.3g} │{inside:<{half}}│{other:<{half}} {n:,} / {rest:,}\n"
        )
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

    def __init__(self, row: dict[str, Any], target: Target | None = None) -> None:
        super().__init__()
        self.row = row
        self.target = target or Target.of_row(row)
        """What a decision here acts on: the hypothesis, or the finding it is the anchor of."""
        self.concept: dict[str, Any] = {"concept_id": row["concept_id"]}
        self.names: dict[int | None, str] = {}

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
        cluster = self.row["data_cluster"] if self.row["scope"] != "global" else None
        try:
            concept = evidence.concept(data, concept_id)
            related = data.hypotheses_for(concept_id)
            histogram = evidence.gap_histogram(data, concept_id, data_cluster=cluster)
            contexts = where_it_fires(data, concept, self.row["lean"])
            names = {r["data_cluster"]: data.cluster_name(r["data_cluster"]) for r in related}
            names[cluster] = data.cluster_name(cluster)
        except duckdb.Error as exc:
            self.app.call_from_thread(
                self.notify, one_line(str(exc).splitlines()[0]), severity="error", markup=False
            )
            return
        self.post_message(CardLoaded(concept, related, histogram, contexts, names))

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
        decision = self.decision_in_force()
        text = Text()
        if self.target.members:
            text.append("finding ", "dim")
            text.append(one_line(self.target.label), "bold")
            text.append(
                f" · {self.target.members} concept(s) carry it; a decision here covers them "
                "all · the evidence of the member it is named after:\n",
                "dim",
            )
        text.append(one_line(row["label"] or row["concept_id"]), "bold")
        text.append(f"  [{badge(decision) if decision else 'undecided'}]\n")
        kind = one_line(row["kind"] or self.concept.get("kind", "?"))
        text.append(f"{one_line(row['concept_id'])} · {kind}")
        if "source" in self.concept:
            text.append(f" · {describe_source(self.concept)}")
        text.append(f"\nhypothesis {one_line(row['hypothesis_id'])} · {row['scope']} · ")
        text.append(f"leans {row['lean']} · ")
        if row["scope"] == "global":
            text.append(f"all {fmt(row['n'], ',')} pairs")
            return text
        cluster = row["data_cluster"]
        where = one_line(self.names.get(cluster, f"k{cluster}"))
        rest = None if row["n"] is None or row["n_in"] is None else row["n"] - row["n_in"]
        text.append(
            f"\nin data cluster {where}: n_in {fmt(row['n_in'], ',')} pairs in the cluster, "
            f"compared with the rest of the active pairs (~{fmt(rest, ',')})"
        )
        return text

    def on_card_loaded(self, message: CardLoaded) -> None:
        self.query_one("#loading").display = False
        self.concept, self.names = message.concept, message.names
        self.query_one("#card-head", Static).update(self.header_text())
        stats = Text("\n")
        stats.append(stats_line(self.row))
        stats.append("\n  fires in (score > 0):\n")
        stats.append(rate_bar("chosen", self.row.get("chosen_rate")))
        stats.append(rate_bar("rejected", self.row.get("rejected_rate")))
        self.query_one("#card-stats", Static).update(stats)
        title = "per-pair gap, chosen − rejected score (pairs)"
        if self.row["scope"] != "global":
            title += ": the cluster's pairs against the rest"
        histogram = Text(f"\n{title}\n", "bold")
        histogram.append(histogram_text(message.histogram))
        self.query_one("#card-histogram", Static).update(histogram)
        contexts = Text("\ntop-activating contexts (marked ⟦like this⟧)\n", "bold")
        if not message.contexts:
            contexts.append("  none recorded for this concept\n", "italic")
        for ctx in message.contexts:
            contexts.append(context_text(ctx))
        self.query_one("#card-contexts", Static).update(contexts)
        self.query_one("#card-clusters", Static).update(self.clusters_text(message.related))

    def clusters_text(self, related: list[dict[str, Any]]) -> Text:
        text = Text("\ndata clusters where it leans most\n", "bold")
        text.append("  n_in: the cluster's pairs, compared with the rest of the active pairs; ")
        text.append("✓/✗ split-half\n", "")
        conditional = [r for r in related if r["scope"] != "global"][:6]
        if not conditional:
            text.append("  no conditional hypotheses for this concept\n", "italic")
        for r in conditional:
            split = "✓" if r["split_half_ok"] else "✗"
            name = one_line(self.names.get(r["data_cluster"], scope_cell(r)))
            text.append(f"  {name}\n", "bold")
            text.append(
                f"    d {fmt(r['d'], '+.2f')} · Δ {fmt_delta(r['delta'])} [{fmt_delta(r['ci_lo'])}, "
                f"{fmt_delta(r['ci_hi'])}] · q {fmt_q(r['q'])} · {split} · "
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

    def decision_in_force(self) -> Decision | None:
        if self.target.members:
            return self.book.for_row(self.target.concept_id, None, None)
        row = self.row
        return self.book.for_row(row["concept_id"], row["hypothesis_id"], row["data_cluster"])

    def decision_target(self) -> Target | None:
        return self.target

    def decisions_changed(self) -> None:
        self.query_one("#card-head", Static).update(self.header_text())

    def on_screen_resume(self) -> None:
        self.decisions_changed()

    def action_open_pairs(self) -> None:
        from sculpt.tui.pairs import PairViewer

        self.app.push_screen(PairViewer(self.row, target=self.target))

    def action_back(self) -> None:
        self.app.pop_screen()
