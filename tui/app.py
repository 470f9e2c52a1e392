"""`sculpt triage`: browse flagged concepts, read the evidence, decide, queue interventions."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from textual.app import App, SystemCommand
from textual.screen import Screen

from sculpt.lake.store import Lake
from sculpt.tui.data import TriageData
from sculpt.tui.decide import DecisionBook
from sculpt.tui.keys import bindings, for_screen


class TriageApp(App[None]):
    CSS_PATH = "triage.tcss"
    TITLE = "sculpt triage"
    BINDINGS = bindings("app")

    def __init__(
        self,
        lake: Lake,
        dataset: str,
        analysis: str | None = None,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.lake, self.dataset, self.analysis = lake, dataset, analysis
        self.data: TriageData
        self.book: DecisionBook
        self.opened = False
        self.keymap = dict(keymap or {})
        if self.keymap:
            self.set_keymap(self.keymap)

    def on_mount(self) -> None:
        from sculpt.tui.hypotheses import HypothesesScreen

        if self.console.color_system in ("standard", "windows"):
            # a 16-colour terminal: use its own palette; state never rests on colour alone
            self.theme = "ansi-dark"
        self.push_screen(HypothesesScreen())

    def open_lake(self) -> None:
        """Connect DuckDB and read the decision log (slow-ish: called from a worker thread)."""
        self.data = TriageData(self.lake, self.dataset, self.analysis)
        self.book = DecisionBook(self.lake, self.dataset, self.data.finding_covers())
        self.opened = True

    def on_unmount(self) -> None:
        if self.opened:
            self.data.interrupt()
            self.data.close()

    @property
    def screen_name(self) -> str:
        return str(getattr(self.screen, "KEYS_SCREEN", "hypotheses"))

    def action_help(self) -> None:
        from sculpt.tui.help import HelpScreen

        self.push_screen(HelpScreen(self.screen_name, self.keymap))

    def action_queue(self) -> None:
        from sculpt.tui.queue import QueueScreen

        if not self.opened:
            self.notify("the lake is still opening", severity="warning")
        elif not isinstance(self.screen, QueueScreen):
            self.push_screen(QueueScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette lists the same actions as the keys, from the same data."""
        yield from super().get_system_commands(screen)
        name = str(getattr(screen, "KEYS_SCREEN", ""))
        for key in for_screen(name):
            if key.id in ("app.quit", "back"):
                continue
            shown = self.keymap.get(key.id, key.key).split(",")[0]
            target = self if key.action.startswith("app.") else screen
            action = key.action.removeprefix("app.")
            yield SystemCommand(
                key.help or key.description,
                f"key {self.get_key_display_name(shown)} · {key.id}",
                partial(self.run_action, action, target),
            )

    def get_key_display_name(self, key: str) -> str:
        from textual.binding import Binding

        return self.get_key_display(Binding(key, ""))
