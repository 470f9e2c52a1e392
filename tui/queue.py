"""The queue: decisions in force, pending interventions (those with a method) first."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Static

from sculpt.plan.decisions import Decision
from sculpt.tui.decide import Target, badge
from sculpt.tui.keys import bindings
from sculpt.tui.screen import TriageScreen
from sculpt.tui.text import line, one_line


def ordered(decisions: list[Decision]) -> list[Decision]:
    """Interventions `sculpt plan` will turn into a run first, newest first within each group."""
    return sorted(decisions, key=lambda d: (d.method == "none", -d.ts))


class QueueScreen(TriageScreen):
    KEYS_SCREEN = "queue"
    BINDINGS = bindings("queue")

    def compose(self) -> ComposeResult:
        yield Static(id="queue-head")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="queue-table")
        yield Static("", id="message")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.book.refresh()
        self.draw()
        self.query_one(DataTable).focus()

    def draw(self) -> None:
        book = self.book
        self.decisions = ordered(book.in_force)
        pending = len(book.pending())
        self.query_one("#queue-head", Static).update(
            Text.assemble(
                ("queue", "bold"),
                f" · {one_line(book.dataset)} · {pending} pending intervention(s), "
                f"{len(self.decisions) - pending} other decision(s) · "
                f"`sculpt plan {one_line(book.dataset)}` "
                "reads this log",
            )
        )
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns("decision", "concept", "applies to", "method", "×", "note", "by", "when")
        for d in self.decisions:
            applies = f"hyp {d.hypothesis_id}" if d.hypothesis_id else "concept"
            when = time.strftime("%m-%d %H:%M", time.localtime(d.ts))
            method = "· none" if d.method == "none" else f"▶ {d.method}"
            # every cell a Text: a str cell would be read as markup, and these come from the log
            cells = (badge(d), d.concept_id, f"{applies} · {d.scope}", method, f"{d.strength:g}")
            table.add_row(
                *(line(c) for c in cells),
                line(d.note[:30]),
                line(d.author),
                line(when),
                key=str(d.ts),
            )
        message = self.query_one("#message", Static)
        message.display = not self.decisions
        table.display = bool(self.decisions)
        message.update("nothing decided yet — on the hypotheses screen press a ✓, x ✗, m ↑ or r ?")

    def selected(self) -> Decision | None:
        if not self.decisions:
            return None
        return self.decisions[min(self.query_one(DataTable).cursor_row, len(self.decisions) - 1)]

    def action_undo(self) -> None:
        decision = self.selected()
        if decision is None:
            return
        self.book.undo(decision)
        self.notify(
            one_line(f"undone: {badge(decision)} · {decision.concept_id} · {decision.scope}"),
            title="decision withdrawn",
            markup=False,
        )
        self.draw()

    @on(DataTable.RowSelected)
    def _open_selected(self) -> None:
        """Enter reaches the table first: it selects the row, and that opens the card."""
        self.action_open_card()

    def action_open_card(self) -> None:
        from sculpt.tui.card import ConceptCard

        decision = self.selected()
        if decision is None:
            return
        finding = self.data.finding(decision.concept_id)
        if finding is not None:  # a finding's card: its named member's evidence
            named = self.data.hypotheses_for(finding["label_concept"])
            rows = [r for r in named if r["scope"] == "global"]
            if rows:
                self.app.push_screen(ConceptCard(rows[0], target=Target.of_row(finding)))
                return
        rows = self.data.hypotheses_for(decision.concept_id)
        match = [r for r in rows if r["hypothesis_id"] == decision.hypothesis_id] or rows
        if not match:
            self.notify(
                one_line(f"{decision.concept_id}: no hypothesis in this analysis"),
                severity="warning",
                markup=False,
            )
            return
        self.app.push_screen(ConceptCard(match[0]))

    def action_back(self) -> None:
        self.app.pop_screen()
