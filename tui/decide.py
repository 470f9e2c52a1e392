"""Decisions from the TUI: the in-force book over sculpt.plan.decisions and the small modal form."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from sculpt.lake.store import Lake
from sculpt.plan import decisions as log
from sculpt.plan.decisions import ACTIONS, GLYPHS, METHODS, Decision
from sculpt.tui.screen import TriageScreen
from sculpt.tui.text import one_line

WORDS = {"allow": "allowed", "suppress": "suppressed", "amplify": "amplified", "review": "review"}
METHOD_HELP = {
    "none": "no change to training: the decision is only logged (and shown in the report)",
    "reward_shaping": "offsets each pair's DPO margin by λ·(s̃⁺ − s̃⁻): suppress teaches the "
    "model the preference minus this concept, amplify plus it (λ = strength)",
    "filter": "drops the pairs with the largest concept gap (or the whole data cluster) from "
    "training",
    "relabel": "swaps chosen and rejected on the pairs where the concept drives the preference",
    "reweight": "scales each pair's loss by a weight from its concept gap (down to suppress)",
    "ablation": "projects the concept's SAE directions out of the policy's residual stream, "
    "during training only",
    "steering": "adds the concept's direction to the policy's residual stream on the flagged "
    "side during training, so the loss need not learn it",
    "inoculation": "appends an instruction naming the concept to the prompt the policy sees "
    "in training only",
}
"""One line per method: what it does to the training run (DESIGN §5)."""
DEFAULT_METHOD = {
    "allow": "none",
    "suppress": "reward_shaping",
    "amplify": "reward_shaping",
    "review": "none",
}


def badge(decision: Decision | None) -> str:
    """Glyph and word, never colour alone: `✗ suppressed`."""
    if decision is None:
        return "·"
    return f"{GLYPHS[decision.action]} {WORDS[decision.action]}"


@dataclass(frozen=True)
class Target:
    """What a decision is about: a concept, optionally one hypothesis in one data cluster."""

    concept_id: str
    label: str
    hypothesis_id: str | None = None
    data_cluster: int | None = None
    members: int = 0
    """A finding (`finding:<anchor>`): how many concepts the decision covers."""

    @classmethod
    def of_row(cls, row: dict) -> Target:
        """The target of a row: a finding (covering its members), a concept (a finding's member
        or a global hypothesis), or a conditional hypothesis, scoped to its data cluster."""
        if row["scope"] == "finding":
            return cls(
                row["concept_id"],
                row["label"] or row["concept_id"],
                None,
                None,
                int(row.get("n_members") or 0),
            )
        if row["scope"] == "member":
            return cls(row["concept_id"], row["label"] or row["concept_id"])
        return cls(
            row["concept_id"],
            row["label"] or row["concept_id"],
            row["hypothesis_id"],
            row["data_cluster"] if row["scope"] != "global" else None,
        )


class DecisionBook:
    """Decisions in force for one dataset, re-read from the lake's log after every write."""

    def __init__(self, lake: Lake, dataset: str, covers: dict[str, str] | None = None) -> None:
        self.lake, self.dataset = lake, dataset
        self.covers = dict(covers or {})
        """Member concept id → its finding: a decision on the finding governs the member too."""
        self.session: list[Decision] = []
        self.refresh()

    def refresh(self) -> None:
        self.in_force = log.current(self.lake, self.dataset)
        self._by_hypothesis = {d.hypothesis_id: d for d in self.in_force if d.hypothesis_id}
        self._by_concept = {
            (d.concept_id, d.scope): d for d in self.in_force if not d.hypothesis_id
        }

    def for_row(
        self, concept_id: str, hypothesis_id: str | None, data_cluster: int | None
    ) -> Decision | None:
        """The decision that governs a row: its own, else its concept's in its cluster, else all;
        a decision on the concept's finding covers it too (the newer of the two wins, as in
        `sculpt plan`)."""
        own = self._own(concept_id, hypothesis_id, data_cluster)
        finding = self.covers.get(concept_id)
        covering = self._by_concept.get((finding, "all")) if finding else None
        if own is None or (covering is not None and covering.ts > own.ts):
            return covering
        return own

    def _own(
        self, concept_id: str, hypothesis_id: str | None, data_cluster: int | None
    ) -> Decision | None:
        if hypothesis_id in self._by_hypothesis:
            return self._by_hypothesis[hypothesis_id]
        if data_cluster is not None and (concept_id, f"cluster:{data_cluster}") in self._by_concept:
            return self._by_concept[(concept_id, f"cluster:{data_cluster}")]
        return self._by_concept.get((concept_id, "all"))

    def record(self, decision: Decision) -> Decision:
        """Append to the lake; returns only once the row is on disk."""
        saved = log.record(self.lake, decision)
        self.session.append(saved)
        self.refresh()
        return saved

    def undo(self, decision: Decision) -> Decision:
        log.undo(self.lake, decision)
        self.refresh()
        return decision

    def undo_last(self) -> Decision | None:
        """Withdraw the latest decision made in this session that is still in force."""
        live = {d.ts for d in self.in_force}
        while self.session:
            last = self.session.pop()
            if last.ts in live:
                return self.undo(last)
        return None

    def pending(self) -> list[Decision]:
        """Interventions waiting for `sculpt plan`: decisions in force with a method."""
        return [d for d in self.in_force if d.method != "none"]


def scope_choices(target: Target) -> list[tuple[str, str]]:
    """What a decision can apply to, only choices that differ: a global hypothesis is its
    concept everywhere; a conditional one is itself, its concept in that cluster, or everywhere."""
    if target.members:
        return [(f"the finding and its {target.members} concept(s), everywhere", "concept")]
    if target.data_cluster is None:
        return [("the concept, everywhere (all pairs)", "concept")]
    k = target.data_cluster
    return [
        (f"this hypothesis (cluster k{k})", "hypothesis"),
        (f"the concept, in cluster k{k} only", "cluster"),
        ("the concept, everywhere (all pairs)", "concept"),
    ]


class DecisionForm(ModalScreen[Decision | None]):
    """Action, what it applies to, method, strength, note. Enter saves, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form.cancel")]

    def __init__(self, dataset: str, target: Target, action: str) -> None:
        super().__init__()
        self.dataset, self.target, self.action_name = dataset, target, action

    def compose(self) -> ComposeResult:
        t = self.target
        scopes = scope_choices(t)
        with Vertical(id="form"):
            yield Static(
                Text.assemble(
                    "Decide on ", (one_line(t.label), "bold"), f"  ({one_line(t.concept_id)})"
                ),
                id="form-title",
            )
            with Grid(id="form-grid"):
                yield Label("action")
                yield Select(
                    [(f"{GLYPHS[a]} {a}", a) for a in ACTIONS],
                    value=self.action_name,
                    allow_blank=False,
                    compact=True,
                    id="action",
                )
                yield Label("applies to")
                yield Select(
                    scopes, value=scopes[0][1], allow_blank=False, compact=True, id="applies"
                )
                yield Label("method")
                yield Select(
                    [(m, m) for m in METHODS],
                    value=DEFAULT_METHOD[self.action_name],
                    allow_blank=False,
                    compact=True,
                    id="method",
                )
                yield Label("strength")
                yield Input("1.0", compact=True, id="strength")
                yield Label("note")
                yield Input(placeholder="why (optional)", compact=True, id="note")
            yield Static(
                Text("method: " + METHOD_HELP[DEFAULT_METHOD[self.action_name]], "italic"),
                id="method-help",
            )
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Save ⏎", variant="primary", compact=True, id="save")
                yield Button("Cancel esc", compact=True, id="cancel")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()

    @on(Select.Changed, "#action")
    def _default_method(self, event: Select.Changed) -> None:
        self.query_one("#method", Select).value = DEFAULT_METHOD[str(event.value)]

    @on(Select.Changed, "#method")
    def _explain_method(self, event: Select.Changed) -> None:
        explained = METHOD_HELP.get(str(event.value), "")
        self.query_one("#method-help", Static).update(Text(f"method: {explained}", "italic"))

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def save(self) -> None:
        try:
            self.dismiss(self.decision())
        except ValueError as exc:
            self.query_one("#form-error", Static).update(f"✗ {exc}")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def decision(self) -> Decision:
        t = self.target
        applies = self.query_one("#applies", Select).value
        text = self.query_one("#strength", Input).value.strip() or "1.0"
        try:
            strength = float(text)
        except ValueError:
            raise ValueError(f"strength {text!r}: type a number, e.g. 1.0") from None
        scope = "all"
        if applies in ("cluster", "hypothesis") and t.data_cluster is not None:
            scope = f"cluster:{t.data_cluster}"
        return Decision(
            dataset=self.dataset,
            concept_id=t.concept_id,
            action=str(self.query_one("#action", Select).value),
            method=str(self.query_one("#method", Select).value),
            strength=strength,
            scope=scope,
            note=self.query_one("#note", Input).value.strip(),
            hypothesis_id=t.hypothesis_id if applies == "hypothesis" else None,
        )


class DecidingScreen(TriageScreen):
    """A screen whose selection can be decided on (a/x/m/r) and undone (u)."""

    def decision_target(self) -> Target | None:
        raise NotImplementedError

    def decisions_changed(self) -> None:
        """Redraw whatever shows a decision badge."""

    def action_decide(self, action: str) -> None:
        target = self.decision_target()
        if target is None:
            self.notify("nothing selected to decide on", severity="warning")
            return
        self.app.push_screen(DecisionForm(self.triage.dataset, target, action), self._record)

    def _record(self, decision: Decision | None) -> None:
        if decision is None:
            return
        saved = self.book.record(decision)
        where = f"hypothesis {saved.hypothesis_id}" if saved.hypothesis_id else saved.concept_id
        method = "" if saved.method == "none" else f" · {saved.method} ×{saved.strength:g}"
        self.notify(
            one_line(f"{badge(saved)} · {where} · {saved.scope}{method} — saved"),
            title="decision saved",
            markup=False,
        )
        self.decisions_changed()

    def action_undo(self) -> None:
        undone = self.book.undo_last()
        if undone is None:
            self.notify("nothing to undo in this session", severity="warning")
            return
        self.notify(
            one_line(f"undone: {badge(undone)} · {undone.concept_id} · {undone.scope}"),
            title="decision withdrawn",
            markup=False,
        )
        self.decisions_changed()
