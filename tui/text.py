"""Text from data as the TUI shows it: every control character made visible, never read as markup,
and the evidence marked by a glyph as well as a style (it survives a copy or a plain capture)."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text

from sculpt.concepts.evidence import matches
from sculpt.terminal import visible

MARK = ("⟦", "⟧", "reverse underline")
"""A marked match or token: brackets for plain captures and copies, reverse+underline on screen."""
SHADES = (
    (0.66, "⟦", "⟧", "reverse underline"),
    (0.33, "⟨", "⟩", "underline"),
    (0.0, "‹", "›", "dim underline"),
)
"""Activation relative to the span's peak → brackets and style; none of them is bold, because
chosen text may be bold already."""


def one_line(value: object) -> str:
    """A name, label or cell: control characters, newlines and tabs shown as stand-ins."""
    return visible("" if value is None else value, newlines=False)


def plain(value: object, style: str = "") -> Text:
    """Multi-line text from data as a Text (never markup), control characters visible."""
    return Text(visible("" if value is None else value), style)


def line(value: object, style: str = "") -> Text:
    return Text(one_line(value), style)


def marked(text: Text, body: str, mark: tuple[str, str, str] = MARK) -> None:
    """Append `body` (data) to `text` as a marked stretch: brackets and style."""
    opening, closing, style = mark
    text.append(opening, "dim")
    text.append(visible(body), style)
    text.append(closing, "dim")


def segments_text(segments: list[list[Any]], newlines: bool = True) -> Text:
    """Segments `[text, highlighted]` from sculpt.concepts.evidence, the highlights marked."""
    out = Text()
    for body, hot in segments:
        if hot:
            marked(out, str(body))
        else:
            out.append(visible(str(body), newlines=newlines))
    return out


def pattern_marked(body: str, pattern: re.Pattern[str] | None) -> Text:
    """`body` with every match of `pattern` marked."""
    out, cursor = Text(), 0
    for lo, hi in matches(pattern, body):
        if lo < cursor:
            continue
        out.append(visible(body[cursor:lo]))
        marked(out, body[lo:hi])
        cursor = hi
    out.append(visible(body[cursor:]))
    return out


def shade(act: float, peak: float) -> tuple[str, str, str]:
    ratio = act / peak if peak > 0 else 0.0
    return next((o, c, s) for floor, o, c, s in SHADES if ratio >= floor)


def shaded_tokens(tokens: list[str], acts: dict[int, float]) -> Text:
    """Decoded tokens, each active one bracketed and styled by its share of the span's peak."""
    peak = max(acts.values(), default=0.0)
    out = Text()
    for pos, token in enumerate(tokens):
        act = acts.get(pos)
        if act and act > 0:
            marked(out, token, shade(act, peak))
        else:
            out.append(visible(token))
    return out
