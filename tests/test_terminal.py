"""Text from data reaches the terminal as text: escape sequences are shown, never obeyed."""

import pytest

from sculpt.terminal import visible

HOSTILE = [
    "\x1b]0;pwned\x07",  # OSC 0: retitle the window
    "\x1b[2J",  # CSI: clear the screen
    "\x1b[6n",  # CSI: make the terminal type a reply
    "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x9b31m",  # C1 CSI
    "a\x00b",  # NUL
    "abc\u202edcba",  # bidi override
    "x\u2066y\u2069",  # bidi isolate
    "\x7f",
    "\ud800",  # lone surrogate
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_control_character_survives(text: str) -> None:
    shown = visible(text)
    assert all(c.isprintable() or c in "\n\t" for c in shown), repr(shown)
    assert "\x1b" not in shown and "\x9b" not in shown and "\u202e" not in shown


def test_text_reads_the_same() -> None:
    assert visible("plain text, ünïcode 日本語 ✓") == "plain text, ünïcode 日本語 ✓"
    assert visible("two\nlines\tand tab") == "two\nlines\tand tab"
    assert visible("\x1b[2Jafter") == "␛[2Jafter"


def test_one_line_fields_show_newlines() -> None:
    assert visible("col\nname\t", newlines=False) == "col␊name␉"
