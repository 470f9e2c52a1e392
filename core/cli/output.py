"""What commands print: tables that fit the terminal, rounded numbers, rows as JSON or CSV.

Every cell that holds text from data goes through `sculpt.terminal.visible`: a table shows escape
sequences as stand-ins, JSON escapes them (lossless), CSV shows them when written to a terminal.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from sculpt.terminal import visible

_MIN_WIDTH = 8


def number(value: float) -> str:
    """A float for reading: three decimals, three significant digits when tiny, one when big."""
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def human_bytes(size: int) -> str:
    """1,536 → "1.5 KB"."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def cell(value: Any) -> str:
    """One table cell: rounded if a float, one line, control characters visible."""
    if value is None:
        return ""
    if isinstance(value, float):
        return number(value)
    return visible(value, newlines=False).replace("␊", "⏎")


def _fit(widths: list[int], numeric: list[bool], total: int) -> list[int]:
    """Shrink the widest text columns until the row fits `total` columns."""
    widths = list(widths)
    gaps = 2 * (len(widths) - 1)
    while sum(widths) + gaps > total:
        text_cols = [i for i, w in enumerate(widths) if not numeric[i] and w > _MIN_WIDTH]
        if not text_cols:
            break
        widest = max(text_cols, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None
) -> None:
    """Aligned columns, numbers right-aligned, as wide as the terminal allows."""
    out = out or sys.stdout
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    numeric = [
        all(
            isinstance(r[i], int | float) and not isinstance(r[i], bool)
            for r in rows
            if r[i] is not None
        )
        and any(r[i] is not None for r in rows)
        for i in range(len(headers))
    ]
    widths = _fit(widths, numeric, shutil.get_terminal_size((120, 24)).columns)

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            _clip(c, w).rjust(w) if num else _clip(c, w).ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()

    print(line(list(headers)), file=out)
    print("  ".join("─" * w for w in widths), file=out)
    for row in cells:
        print(line(row), file=out)


_UNSAFE_JSON = {c: f"\\u{c:04x}" for c in [*range(0x80, 0xA0), 0x061C, 0x200E, 0x200F]}
_UNSAFE_JSON.update({c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})
_UNSAFE_JSON.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def json_line(record: Any) -> str:
    """One JSON object, Unicode kept readable; C1 codes and bidi controls escaped (still valid
    JSON: the reader gets the same string back)."""
    text = json.dumps(record, ensure_ascii=False, default=str)
    return text.translate(_UNSAFE_JSON)


def print_rows(
    names: Sequence[str],
    records: Sequence[dict[str, Any]],
    fmt: str,
    out: TextIO | None = None,
) -> None:
    """Records as a table, JSON lines or CSV."""
    out = out or sys.stdout
    if fmt == "json":
        for rec in records:
            print(json_line(rec), file=out)
    elif fmt == "csv":
        shown = out.isatty()
        writer = csv.writer(out)
        writer.writerow([visible(n) if shown else n for n in names])
        for rec in records:
            writer.writerow(
                [visible(rec[n]) if shown and isinstance(rec[n], str) else rec[n] for n in names]
            )
    else:
        print_table(list(names), [[rec[n] for n in names] for rec in records], out)
