"""Every key of the triage app, declared once as data: stable ids, footer, help, palette, keymap."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml
from textual.binding import Binding, BindingType

from sculpt.errors import UserError


@dataclass(frozen=True)
class Key:
    id: str
    """Stable binding id: what a keymap file names to rebind it."""
    key: str
    """Default key(s), Textual names, comma-separated."""
    action: str
    description: str
    screens: tuple[str, ...]
    """Screens that offer it (`app` = everywhere)."""
    help: str = ""
    """The longer line shown by `?` and the command palette."""
    show: bool = True
    """Shown in the footer (everything is in the `?` help)."""
    hidden_on: tuple[str, ...] = ()
    """Screens whose footer leaves it out, so the footer fits 80 columns."""


_DECIDE = ("hypotheses", "card", "pairs")
_ALL = ("hypotheses", "card", "pairs", "queue")
KEYS: tuple[Key, ...] = (
    Key("app.help", "question_mark", "app.help", "help", _ALL, "Every key of this screen"),
    Key("app.quit", "ctrl+q", "app.quit", "quit", ("app",), "Quit sculpt triage", show=False),
    Key("hypotheses.quit", "q", "app.quit", "quit", ("hypotheses",), "Quit sculpt triage"),
    Key("table.down", "j", "cursor_down", "down", ("table",), "Next row", show=False),
    Key("table.up", "k", "cursor_up", "up", ("table",), "Previous row", show=False),
    Key("table.first", "home", "first_row", "first", ("table",), "First row", show=False),
    Key(
        "table.last",
        "end",
        "last_row",
        "last",
        ("table",),
        "Last row (of every row that matches, not only those loaded)",
        show=False,
    ),
    Key(
        "pairs.next",
        "n,right,j",
        "step(1)",
        "next",
        ("pairs",),
        "Next pair (smaller gap)",
        show=False,
    ),
    Key("pairs.previous", "b,left,k", "step(-1)", "prev", ("pairs",), "Previous pair", show=False),
    Key("pairs.first", "home,g", "jump(0)", "first", ("pairs",), "First pair", show=False),
    Key("pairs.last", "end,G", "jump(-1)", "last", ("pairs",), "Last pair", show=False),
    Key(
        "pairs.evidence",
        "e",
        "cycle_evidence",
        "evidence",
        ("pairs",),
        "Switch: supporting pairs, counter-examples, pairs where both sides fire",
    ),
    Key("hypotheses.open", "enter", "open_card", "card", ("hypotheses",), "Open the concept card"),
    Key(
        "hypotheses.members",
        "space",
        "toggle_members",
        "members",
        ("hypotheses",),
        "Findings: show or hide the concepts that carry the selected finding",
    ),
    Key(
        "hypotheses.view",
        "v",
        "toggle_view",
        "view",
        ("hypotheses",),
        "Switch the list: findings (one row per signal) or every hypothesis",
        show=False,
    ),
    Key(
        "hypotheses.pairs",
        "p",
        "open_pairs",
        "pairs",
        ("hypotheses", "card"),
        "Step through the pairs that drive the hypothesis",
        hidden_on=("hypotheses",),
    ),
    Key(
        "hypotheses.search",
        "slash",
        "search",
        "search",
        ("hypotheses",),
        "Search labels, concept ids and feature tokens",
        show=False,
    ),
    Key(
        "hypotheses.filters",
        "f",
        "filters",
        "filter",
        ("hypotheses",),
        "Filter by scope, lean, kind, q, split-half, text",
        show=False,
    ),
    Key(
        "hypotheses.scope",
        "g",
        "cycle_scope",
        "scope",
        ("hypotheses",),
        "Cycle the scope filter: any, global, conditional, prompt",
        show=False,
    ),
    Key(
        "hypotheses.lean",
        "l",
        "cycle_lean",
        "lean",
        ("hypotheses",),
        "Cycle the lean filter: any, chosen, rejected",
        show=False,
    ),
    Key(
        "hypotheses.split_half",
        "h",
        "toggle_split_half",
        "split-half",
        ("hypotheses",),
        "Show only split-half consistent hypotheses (toggle)",
        show=False,
    ),
    Key(
        "hypotheses.clear",
        "c",
        "clear_filters",
        "clear",
        ("hypotheses",),
        "Clear every filter",
        show=False,
    ),
    Key(
        "hypotheses.sort",
        "s",
        "next_sort",
        "sort",
        ("hypotheses",),
        "Sort by the next column: |d|, share of pairs, q, rank, Δmin, n_in, split-half, "
        "name, |Δ| (the status line says which)",
        hidden_on=("hypotheses",),
    ),
    Key(
        "hypotheses.reverse",
        "S",
        "reverse_sort",
        "reverse",
        ("hypotheses",),
        "Reverse the sort order",
        show=False,
    ),
    Key(
        "hypotheses.more",
        "right_square_bracket",
        "more",
        "more",
        ("hypotheses",),
        "Load the next page of rows (also happens at the last row)",
        show=False,
    ),
    Key(
        "decide.allow",
        "a",
        "decide('allow')",
        "✓allow",
        _DECIDE,
        "✓ Allow: the model may learn this concept",
    ),
    Key(
        "decide.suppress",
        "x",
        "decide('suppress')",
        "✗suppress",
        _DECIDE,
        "✗ Suppress: explain the concept away in training",
    ),
    Key(
        "decide.amplify",
        "m",
        "decide('amplify')",
        "↑amplify",
        _DECIDE,
        "↑ Amplify: push the model towards this concept",
    ),
    Key(
        "decide.review",
        "r",
        "decide('review')",
        "?review",
        _DECIDE,
        "? Review: flag for a second look",
    ),
    Key(
        "decide.undo",
        "u",
        "undo",
        "undo",
        (*_DECIDE, "queue"),
        "Undo the last decision (on the queue: the selected one)",
        hidden_on=_DECIDE,
    ),
    Key("app.queue", "i", "app.queue", "queue", _ALL, "The queue of pending interventions"),
    Key("queue.open", "enter", "open_card", "card", ("queue",), "Open the decision's concept card"),
    Key(
        "back",
        "escape",
        "back",
        "back",
        _ALL,
        "Back; leave the search box; cancel a query",
        hidden_on=("hypotheses",),
    ),
)
"""The whole keymap; screens build their BINDINGS from it, so footer, help and palette agree."""

KEY_IDS = frozenset(k.id for k in KEYS)
DEFAULT_KEYMAP_FILE = Path("~/.config/sculpt/keymap.toml")


def bindings(screen: str) -> list[BindingType]:
    """Textual bindings for one screen (`app` for the app-wide ones)."""
    return [
        Binding(
            k.key,
            k.action.removeprefix("app.") if screen == "app" else k.action,
            k.description,
            show=k.show and screen not in k.hidden_on,
            id=k.id,
            tooltip=k.help,
        )
        for k in KEYS
        if screen in k.screens
    ]


TABLE_SCREENS = ("hypotheses", "queue")
"""Screens built around a row table: they offer its keys too (j/k, Home/End)."""


def for_screen(screen: str) -> list[Key]:
    def offered(k: Key) -> bool:
        return screen in k.screens or "app" in k.screens

    return [k for k in KEYS if offered(k) or ("table" in k.screens and screen in TABLE_SCREENS)]


def load_keymap(path: str | Path) -> dict[str, str]:
    """Read `id = "key"` pairs from a TOML or YAML file; unknown ids are an error."""
    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f'--keymap {file}: no such file; write lines like `decide.allow = "A"`')
    try:
        text = file.read_text()
        raw = yaml.safe_load(text) if file.suffix in (".yaml", ".yml") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"--keymap {file}: not valid {file.suffix or 'TOML'}: {exc}") from None
    raw = raw or {}
    if isinstance(raw.get("keys"), dict):
        raw = raw["keys"]
    flat = _flatten(raw)
    unknown = sorted(set(flat) - KEY_IDS)
    if unknown:
        raise UserError(
            f"--keymap {file}: unknown binding id(s) {', '.join(unknown)}; "
            f"valid ids: {', '.join(sorted(KEY_IDS))}"
        )
    bad = [k for k, v in flat.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise UserError(f"--keymap {file}: {', '.join(bad)}: the key must be a non-empty string")
    return flat


def _flatten(raw: dict, prefix: str = "") -> dict[str, str]:
    """TOML tables (`[decide] allow = "A"`) and dotted keys both mean `decide.allow`."""
    out: dict[str, str] = {}
    for name, value in raw.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out
