"""The `?` screen: every key of the current screen and the app, from the keymap data."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sculpt.tui.keys import DEFAULT_KEYMAP_FILE, for_screen


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, screen_name: str, keymap: dict[str, str]) -> None:
        super().__init__()
        self.screen_name, self.keymap = screen_name, keymap

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=True, padding=(0, 1))
        table.add_column("key", justify="right", style="bold", no_wrap=True)
        table.add_column("does")
        table.add_column("id (for --keymap)", style="dim", no_wrap=True)
        for key in for_screen(self.screen_name):
            shown = self.keymap.get(key.id, key.key)
            keys = " ".join(
                self.app.get_key_display(Binding(k.strip(), "")) for k in shown.split(",")
            )
            table.add_row(keys, key.help or key.description, key.id)
        notes = Text(
            "\nctrl+p: command palette, every action by name. Decisions read ✓ allowed, "
            "✗ suppressed, ↑ amplified, ? review. Rebind with --keymap FILE (TOML or YAML, "
            f'id = "key"; default {DEFAULT_KEYMAP_FILE}). esc closes.',
            "italic",
        )
        with VerticalScroll(id="help"):
            yield Static(Text(f"keys on the {self.screen_name} screen", "bold"))
            yield Static(table)
            yield Static(notes)

    def action_close(self) -> None:
        self.dismiss(None)
