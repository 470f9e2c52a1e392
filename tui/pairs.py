"""The pair viewer: the pairs that drive a hypothesis, largest gap first, tokens shaded."""

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
from sculpt.concepts.evidence import PairView, highlight_pattern
from sculpt.tui.decide import DecidingScreen, Target
from sculpt.tui.keys import bindings
from sculpt.tui.table import fmt_delta
from sculpt.tui.text import one_line, pattern_marked, plain, shaded_tokens

SIDE_BY_SIDE = 100
"""Narrower than this, chosen and rejected are stacked."""


class DrivingPairsLoaded(Message):
    def __init__(self, pairs: list[dict[str, Any]], concept: dict[str, Any]) -> None:
        super().__init__()
        self.pairs, self.concept = pairs, concept


class PairLoaded(Message):
    def __init__(self, index: int, pair: PairView | None) -> None:
        super().__init__()
        self.index, self.pair = index, pair


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
            return "no decoded tokens in the lake (run `sculpt scan`): plain text"
        return "tokens by activation: ⟦≥⅔ of peak⟧ ⟨≥⅓⟩ ‹>0›"
    if highlight_pattern(concept) is not None:
        return "matches marked ⟦like this⟧"
    return "no token-level view for this kind of concept: plain text"


class PairViewer(DecidingScreen):
    KEYS_SCREEN = "pairs"
    BINDINGS = bindings("pairs")

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row
        self.pairs: list[dict[str, Any]] = []
        self.index = 0
        self.concept: dict[str, Any] = {"concept_id": row["concept_id"]}
        self.pair: PairView | None = None

    def compose(self) -> ComposeResult:
        yield Static("finding the pairs that drive this hypothesis…", id="pair-head")
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
        self.load_pairs()

    def on_resize(self) -> None:
        self.set_class(self.size.width < SIDE_BY_SIDE, "narrow")

    @work(thread=True, exclusive=True, group="pairs")
    def load_pairs(self) -> None:
        data = self.data
        row = self.row
        cluster = row["data_cluster"] if row["scope"] != "global" else None
        try:
            concept = evidence.concept(data, row["concept_id"])
            pairs = evidence.evidence_pairs(
                data, row["concept_id"], row["lean"], "supporting", cluster
            )
        except duckdb.Error as exc:
            self.app.call_from_thread(
                self.notify, one_line(str(exc).splitlines()[0]), severity="error", markup=False
            )
            pairs, concept = [], self.concept
        self.post_message(DrivingPairsLoaded(pairs, concept))

    @work(thread=True, exclusive=True, group="pair")
    def load_pair(self, index: int) -> None:
        pair_id = self.pairs[index]["pair_id"]
        pair = evidence.pair(self.data, pair_id, self.row["concept_id"])
        self.post_message(PairLoaded(index, pair))

    def on_driving_pairs_loaded(self, message: DrivingPairsLoaded) -> None:
        self.pairs, self.concept = message.pairs, message.concept
        if not self.pairs:
            self.query_one("#loading").display = False
            self.query_one("#pair-head", Static).update(
                "nothing matches — no pair has a gap in this hypothesis's direction "
                "(or the lake has no per-pair scores for this concept)"
            )
            return
        self.load_pair(0)

    def on_pair_loaded(self, message: PairLoaded) -> None:
        self.query_one("#loading").display = False
        if message.index != self.index or message.pair is None:
            return
        self.pair = message.pair
        self.draw()

    def draw(self) -> None:
        pair, info, row = self.pair, self.pairs[self.index], self.row
        assert pair is not None
        head = Text()
        head.append(one_line(row["label"] or row["concept_id"]), "bold")
        head.append(
            f" leans {row['lean']} · pair {self.index + 1}/{len(self.pairs)} · gap "
            f"{fmt_delta(info['gap'])} (chosen {info['chosen']:.3g} − rejected "
            f"{info['rejected']:.3g}) · {one_line(pair.pair_id)}"
        )
        if pair.data_cluster is not None:
            head.append(f" · cluster {pair.data_cluster}")
        head.append(f"\n{legend(self.concept, pair)}", "dim")
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
        if not self.pairs:
            return
        index = max(0, min(len(self.pairs) - 1, self.index + delta))
        if index != self.index:
            self.index = index
            self.query_one("#loading").display = True
            self.load_pair(index)

    def decision_target(self) -> Target | None:
        return Target.of_row(self.row)

    def action_back(self) -> None:
        self.app.pop_screen()
