"""The pair viewer: the pairs behind a hypothesis, largest gap first: those that support its lean,
the counter-examples, or those where both sides fire; the evidence marked in the text."""

from __future__ import annotations

from typing import Any

import duckdb
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, LoadingIndicator, Static

from sculpt.concepts import evidence
from sculpt.concepts.evidence import EVIDENCE, Evidence, PairView, highlight_pattern
from sculpt.tui.decide import DecidingScreen, Target, badge
from sculpt.tui.keys import bindings
from sculpt.tui.table import fmt, fmt_delta
from sculpt.tui.text import one_line, pattern_marked, plain, shaded_tokens

SIDE_BY_SIDE = 100
"""Narrower than this, chosen and rejected are stacked."""


EVIDENCE_WORDS = {"supporting": "supporting", "counter": "counter-examples", "both": "both fire"}
NOTHING = {
    "supporting": "no pair has a gap in this hypothesis's direction",
    "counter": "no counter-example: no pair's gap goes against this lean",
    "both": "no pair where the concept fires on both sides",
}


class EvidenceLoaded(Message):
    def __init__(
        self,
        which: Evidence,
        pairs: list[dict[str, Any]],
        counts: dict[str, int],
        concept: dict[str, Any],
        where: str,
    ) -> None:
        super().__init__()
        self.which, self.pairs, self.counts, self.concept, self.where = (
            which,
            pairs,
            counts,
            concept,
            where,
        )


class PairLoaded(Message):
    def __init__(self, which: Evidence, index: int, pair: PairView | None) -> None:
        super().__init__()
        self.which, self.index, self.pair = which, index, pair


def side_text(pair: PairView, side: str, concept: dict[str, Any]) -> Text:
    """One response with the current concept's evidence marked, the best way its kind allows."""
    concept_id = str(concept.get("concept_id", ""))
    if concept_id.startswith("sae:") and side in pair.tokens:
        return shaded_tokens(pair.tokens[side], pair.activations.get(side, {}))
    return pattern_marked(pair.texts[side], highlight_pattern(concept))


def legend(concept: dict[str, Any], pair: PairView) -> str:
    concept_id = str(concept.get("concept_id", ""))
    if concept_id.startswith("sae:"):
        if not pair.tokens:
            return "plain text (no decoded tokens: run `sculpt scan`)"
        return "tokens: ⟦≥⅔ of peak⟧ ⟨≥⅓⟩ ‹>0›"
    if highlight_pattern(concept) is not None:
        return "matches ⟦marked⟧"
    return "plain text (no token-level view)"


class PairViewer(DecidingScreen):
    KEYS_SCREEN = "pairs"
    BINDINGS = bindings("pairs")

    LIMIT = 500
    """Pairs listed per kind of evidence (the count says how many there are in all)."""

    def __init__(
        self, row: dict[str, Any], which: Evidence = "supporting", target: Target | None = None
    ) -> None:
        super().__init__()
        self.row = row
        self.target = target or Target.of_row(row)
        """What a decision here acts on: the hypothesis, or the finding it is the anchor of."""
        self.which: Evidence = which
        self.pairs: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.where = ""
        self.index = 0
        self.concept: dict[str, Any] = {"concept_id": row["concept_id"]}
        self.pair: PairView | None = None

    def compose(self) -> ComposeResult:
        yield Static("finding the pairs behind this hypothesis…", id="pair-head")
        with VerticalScroll(id="pair-body"):
            yield Static(id="prompt")
            with Horizontal(id="sides"):
                yield Static(id="chosen", classes="side")
                yield Static(id="rejected", classes="side")
        yield LoadingIndicator(id="loading")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#pair-body").focus()
        self.set_class(self.size.width < SIDE_BY_SIDE, "narrow")
        self.load_pairs(self.which)

    def on_resize(self) -> None:
        self.set_class(self.size.width < SIDE_BY_SIDE, "narrow")

    @work(thread=True, exclusive=True, group="pairs")
    def load_pairs(self, which: Evidence) -> None:
        data, row = self.data, self.row
        cluster = row["data_cluster"] if row["scope"] != "global" else None
        concept_id, lean = row["concept_id"], row["lean"]
        try:
            concept = evidence.concept(data, concept_id)
            pairs = evidence.evidence_pairs(data, concept_id, lean, which, cluster, self.LIMIT)
            counts = evidence.evidence_counts(data, concept_id, lean, cluster)
            where = data.cluster_name(cluster)
        except duckdb.Error as exc:
            self.app.call_from_thread(
                self.notify, one_line(str(exc).splitlines()[0]), severity="error", markup=False
            )
            pairs, counts, concept, where = [], {}, self.concept, ""
        self.post_message(EvidenceLoaded(which, pairs, counts, concept, where))

    @work(thread=True, exclusive=True, group="pair")
    def load_pair(self, index: int) -> None:
        which, pair_id = self.which, self.pairs[index]["pair_id"]
        pair = evidence.pair(self.data, pair_id, self.row["concept_id"])
        self.post_message(PairLoaded(which, index, pair))

    def on_evidence_loaded(self, message: EvidenceLoaded) -> None:
        if message.which != self.which:
            return
        self.pairs, self.concept = message.pairs, message.concept
        self.counts, self.where, self.index, self.pair = message.counts, message.where, 0, None
        if not self.pairs:
            self.query_one("#loading").display = False
            head = self.head_text()
            head.append(f"\nnothing to show — {NOTHING[self.which]}", "bold")
            head.append("\n(e: the other kinds of evidence)", "dim")
            self.query_one("#pair-head", Static).update(head)
            for part in ("prompt", "chosen", "rejected"):
                self.query_one(f"#{part}", Static).update("")
            return
        self.load_pair(0)

    def on_pair_loaded(self, message: PairLoaded) -> None:
        self.query_one("#loading").display = False
        if message.which != self.which or message.index != self.index or message.pair is None:
            return
        self.pair = message.pair
        self.draw()

    def head_text(self) -> Text:
        """The hypothesis (lean, d, Δ, the decision in force) and which evidence is shown."""
        row = self.row
        if self.target.members:
            decision = self.book.for_row(self.target.concept_id, None, None)
        else:
            decision = self.book.for_row(
                row["concept_id"], row["hypothesis_id"], row["data_cluster"]
            )
        head = Text()
        if self.target.members:
            head.append(f"finding ({self.target.members} concepts) · ", "dim")
        head.append(one_line(row["label"] or row["concept_id"]), "bold")
        head.append("  [")
        head.append(badge(decision) if decision else "undecided", "bold")
        head.append(
            f"]\nleans {row['lean']} · d {fmt(row['d'], '+.2f')} · Δ {fmt_delta(row['delta'])} "
            f"[{fmt_delta(row['ci_lo'])}, {fmt_delta(row['ci_hi'])}]"
        )
        if self.where and row["scope"] != "global":
            head.append(f" · in {one_line(self.where)}")
        head.append("\n")
        for k in EVIDENCE:
            count = f"{EVIDENCE_WORDS[k]} {self.counts.get(k, 0):,}"
            if k == self.which:
                head.append(f"▶ {count}", "bold reverse")
            else:
                head.append(f"  {count}", "dim")
            head.append(" ")
        return head

    def draw(self) -> None:
        pair, info = self.pair, self.pairs[self.index]
        assert pair is not None
        head = self.head_text()
        shown = len(self.pairs)
        total = self.counts.get(self.which, shown)
        listed = f"{shown:,}" if shown >= total else f"first {shown:,} of {total:,}"
        head.append(
            f"\npair {self.index + 1}/{listed} · gap {fmt_delta(info['gap'])} (chosen "
            f"{info['chosen']:.3g} − rejected {info['rejected']:.3g}) · row {fmt(pair.row, ',')}"
        )
        if pair.data_cluster is not None and self.row["scope"] == "global":
            head.append(f" · k{pair.data_cluster}")
        head.append(
            f"\n{legend(self.concept, pair)} · n/b next · g/G first/last · e evidence",
            "dim",
        )
        self.query_one("#pair-head", Static).update(head)
        prompt = Text("prompt\n", "bold")
        for message in pair.prompt[-4:]:
            prompt.append(f"{one_line(message.get('role', '?'))}: ", "dim")
            prompt.append(plain(message.get("content", "")))
            prompt.append("\n")
        self.query_one("#prompt", Static).update(prompt)
        for side, mark in (("chosen", "✓ chosen"), ("rejected", "✗ rejected")):
            body = Text(f"{mark}\n", "bold")
            body.append(side_text(pair, side, self.concept))
            self.query_one(f"#{side}", Static).update(body)

    def action_step(self, delta: int) -> None:
        self.show(self.index + delta)

    def action_jump(self, index: int) -> None:
        """g/Home: the first pair; G/End (index -1): the last."""
        self.show(len(self.pairs) - 1 if index < 0 else index)

    def show(self, index: int) -> None:
        if not self.pairs:
            return
        index = max(0, min(len(self.pairs) - 1, index))
        if index != self.index or self.pair is None:
            self.index = index
            self.query_one("#loading").display = True
            self.load_pair(index)

    def action_cycle_evidence(self) -> None:
        """e: supporting pairs → counter-examples → pairs where both sides fire."""
        self.which = EVIDENCE[(EVIDENCE.index(self.which) + 1) % len(EVIDENCE)]
        self.query_one("#loading").display = True
        self.load_pairs(self.which)

    def decisions_changed(self) -> None:
        if self.pair is not None and self.pairs:
            self.draw()

    def decision_target(self) -> Target | None:
        return self.target

    def action_back(self) -> None:
        self.app.pop_screen()
