"""Text from data, made safe to show in a terminal: every control character visible, none obeyed.

Dataset text (responses, prompts, labels, column and file names) can hold escape sequences that
retitle the window (OSC 0), clear the screen (CSI 2J), make the terminal type a reply (CSI 6n),
plant hyperlinks (OSC 8), or reorder what a reader sees (bidi overrides). `visible` turns each such
character into a printable stand-in, so the text reads the same and the terminal does nothing.
"""

from __future__ import annotations

import unicodedata

# Bidi embeddings, overrides and isolates, and the marks that steer them (Trojan Source).
_BIDI = {
    "\u061c",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
}
_KEEP = {"\n", "\t"}


def _stand_in(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400 block: ␀ ␁ … ␛ …
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"


def _needs_stand_in(char: str) -> bool:
    if char in _KEEP:
        return False
    if char in _BIDI:
        return True
    category = unicodedata.category(char)
    # Cc: C0, DEL and C1 controls; Cs: lone surrogates; Zl/Zp: line/paragraph separators.
    return category in ("Cc", "Cs", "Zl", "Zp")


def visible(text: object, *, newlines: bool = True) -> str:
    """`text` with every control character, C1 code and bidi control shown as a printable
    stand-in (ESC as ␛, U+202E as <U+202E>). With `newlines=False` newlines and tabs are shown
    too (␊, ␉), for one-line fields such as names and table cells."""
    text = str(text)
    if text.isprintable() and (newlines or ("\n" not in text and "\t" not in text)):
        return text
    out = []
    for char in text:
        if char in _KEEP and not newlines:
            out.append(_stand_in(char))
        elif _needs_stand_in(char):
            out.append(_stand_in(char))
        else:
            out.append(char)
    return "".join(out)
