"""The base of every triage screen: a typed handle on the app's data and decision book."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from sculpt.tui.app import TriageApp
    from sculpt.tui.data import TriageData
    from sculpt.tui.decide import DecisionBook


class TriageScreen(Screen):
    """A screen of `TriageApp`: `self.data` reads the lake, `self.book` holds the decisions."""

    @property
    def triage(self) -> TriageApp:
        return cast("TriageApp", self.app)

    @property
    def data(self) -> TriageData:
        return self.triage.data

    @property
    def book(self) -> DecisionBook:
        return self.triage.book
