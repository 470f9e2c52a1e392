"""The filter form: every narrowing of the hypotheses table in one small modal."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from sculpt.tui.data import KINDS, LEANS, SCOPES, Filters


def _options(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [("any", "")] + [(v, v) for v in values]


class FilterForm(ModalScreen[Filters | None]):
    """Scope, lean, concept kind, q at most, split-half only, text. Enter applies, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form.cancel")]

    def __init__(self, filters: Filters) -> None:
        super().__init__()
        self.filters = filters

    def compose(self) -> ComposeResult:
        f = self.filters
        with Vertical(id="form"):
            yield Static("[b]Filter hypotheses[/b]", id="form-title")
            with Grid(id="form-grid"):
                yield Label("scope")
                yield Select(
                    _options(SCOPES),
                    value=f.scope or "",
                    allow_blank=False,
                    compact=True,
                    id="scope",
                )
                yield Label("lean")
                yield Select(
                    _options(LEANS), value=f.lean or "", allow_blank=False, compact=True, id="lean"
                )
                yield Label("kind")
                yield Select(
                    _options(KINDS), value=f.kind or "", allow_blank=False, compact=True, id="kind"
                )
                yield Label("q at most")
                yield Input(
                    "" if f.q_max is None else f"{f.q_max:g}",
                    placeholder="e.g. 0.05",
                    compact=True,
                    id="q",
                )
                yield Label("split-half")
                # a Select, not a Checkbox: its on and off states differ only by colour
                yield Select(
                    [("any", ""), ("✓ consistent only", "yes")],
                    value="yes" if f.split_half_only else "",
                    allow_blank=False,
                    compact=True,
                    id="split",
                )
                yield Label("text")
                yield Input(
                    f.text, placeholder="label, concept id or token", compact=True, id="text"
                )
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Apply ⏎", variant="primary", compact=True, id="apply")
                yield Button("Cancel esc", compact=True, id="cancel")

    def on_mount(self) -> None:
        self.query_one("#scope", Select).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def apply(self) -> None:
        q_text = self.query_one("#q", Input).value.strip()
        try:
            q_max = float(q_text) if q_text else None
        except ValueError:
            self.query_one("#form-error", Static).update(f"✗ q {q_text!r}: type a number like 0.05")
            return
        self.dismiss(
            Filters(
                scope=str(self.query_one("#scope", Select).value) or None,
                lean=str(self.query_one("#lean", Select).value) or None,
                kind=str(self.query_one("#kind", Select).value) or None,
                q_max=q_max,
                split_half_only=self.query_one("#split", Select).value == "yes",
                text=self.query_one("#text", Input).value,
            )
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
