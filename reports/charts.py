"""Inline SVG charts drawn in Python: no JS charting, no network. Every label is escaped here.

Charts take a `viewBox` and scale to their container's width (`width="100%"`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

CHOSEN = "#0072B2"
REJECTED = "#D55E00"
NEUTRAL = "#6b7280"
PALETTE = (CHOSEN, REJECTED, "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe–Ito: readable by colour-blind readers; legends always carry words too."""
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: int, title: str, body: list[str], wide: bool = False) -> Markup:
    """`wide` charts keep a legible minimum width and scroll sideways on a phone."""
    head = (
        f'<svg class="chart{" wide" if wide else ""}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'preserveAspectRatio="xMinYMin meet" '
        f'aria-label="{escape(title)}" style="max-width:{width}px">'
        f"<title>{escape(title)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(text)}</text>'
    )


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def fmt_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:.3g}"


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for name, color in items:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"/>')
        out.append(_text(x + 14, y, name))
        x += 22 + 7 * len(name)
    return out


def histogram(
    edges: Sequence[float],
    series: Sequence[tuple[str, Sequence[int], str]],
    xlabel: str,
    title: str,
) -> Markup:
    """Overlaid histograms on shared bins (e.g. chosen vs rejected length)."""
    width, height, left, right, top, bottom = 640, 240, 48, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((max(c) for _, c, _ in series if c), default=1) or 1
    nbins = len(edges) - 1
    body = _legend(left, 16, [(name, color) for name, _, color in series])
    for tick in nice_ticks(0, peak, 4):
        y = top + plot_h - tick / peak * plot_h
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        )
        body.append(_text(left - 6, y + 4, fmt_tick(tick), "end"))
    bar_w = plot_w / nbins
    for name, counts, color in series:
        for i, count in enumerate(counts):
            h = count / peak * plot_h
            body.append(
                f'<rect x="{left + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{color}" fill-opacity="0.45"><title>{escape(name)}: '
                f"{count} in [{edges[i]:g}, {edges[i + 1]:g})</title></rect>"
            )
    for tick in nice_ticks(edges[0], edges[-1], 6):
        x = left + (tick - edges[0]) / (edges[-1] - edges[0] or 1) * plot_w
        body.append(_text(x, top + plot_h + 16, fmt_tick(tick), "middle"))
    body.append(_text(left + plot_w / 2, height - 6, xlabel, "middle"))
    return _svg(width, height, title, body, wide=True)


def forest_plot(
    rows: Sequence[dict[str, Any]], xlabel: str, title: str, narrow: bool = False
) -> Markup:
    """Point estimates with 95% intervals, one row per concept; a zero line; lean by colour + word.
    `narrow` (for a phone) puts each label above its interval, so the points keep the width."""
    label_w, width, row_h, top, bottom = 260, 700, 22, 24, 40
    if narrow:
        label_w, width, row_h, top = 0, 380, 36, 30
    plot_l, plot_r = (12, width - 12) if narrow else (label_w + 10, width - 16)
    height = top + bottom + row_h * max(len(rows), 1)
    values = [v for r in rows for v in (r["lo"], r["hi"], r["est"]) if math.isfinite(v)] + [0.0]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad

    def x_of(v: float) -> float:
        return plot_l + (v - lo) / (hi - lo) * (plot_r - plot_l)

    body = _legend(plot_l, 14, [("leans chosen", CHOSEN), ("leans rejected", REJECTED)])
    if narrow:
        body = _legend(4, 14, [("leans chosen", CHOSEN), ("leans rejected", REJECTED)])
    for tick in nice_ticks(lo, hi, 6):
        x = x_of(tick)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#e5e7eb"/>'
        )
        body.append(_text(x, height - bottom + 16, fmt_tick(tick), "middle"))
    zero = x_of(0.0)
    body.append(
        f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top}" y2="{height - bottom}" stroke="#111"/>'
    )
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = REJECTED if r.get("lean") == "rejected" else CHOSEN
        limit = 52 if narrow else 38
        label = r["label"] if len(r["label"]) <= limit else r["label"][: limit - 1] + "…"
        label += " (length)" if r.get("length_only") else ""
        if narrow:
            y += 6
            body.append(_text(plot_l, y - 9, label, "start"))
        else:
            body.append(_text(label_w, y + 4, label, "end"))
        if math.isfinite(r["lo"]) and math.isfinite(r["hi"]):
            body.append(
                f'<line x1="{x_of(r["lo"]):.1f}" x2="{x_of(r["hi"]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{color}" stroke-width="2"/>'
            )
        marker = "rect" if not r.get("length_only") else "circle"
        shape = (
            f'<rect x="{x_of(r["est"]) - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}">'
            if marker == "rect"
            else f'<circle cx="{x_of(r["est"]):.1f}" cy="{y:.1f}" r="4" fill="white" stroke="{color}" stroke-width="2">'
        )
        tip = f"{r['label']}: {r['est']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}]"
        body.append(f"{shape}<title>{escape(tip)}</title></{marker}>")
    body.append(_text((plot_l + plot_r) / 2, height - 6, xlabel, "middle"))
    return _svg(width, height, title, body, wide=not narrow)


def interval_bars(
    rows: Sequence[dict[str, Any]], xlabel: str, title: str, lo: float = 0.5, hi: float = 1.0
) -> Markup:
    """Horizontal bars with ± error whiskers on a fixed scale (AUC from chance 0.5 to 1); each bar
    starts at chance, so a model worse than chance draws to the left of it."""
    label_w, width, row_h, top, bottom = 170, 640, 30, 12, 40
    plot_l, plot_r = label_w + 10, width - 16
    height = top + bottom + row_h * max(len(rows), 1)
    lowest = min((r["value"] - (r.get("sd") or 0) for r in rows), default=lo)
    if lowest < lo:  # worse than chance happens on small data: show it, don't clip it
        lo = math.floor(lowest * 10) / 10

    def x_of(v: float) -> float:
        return plot_l + (min(max(v, lo), hi) - lo) / (hi - lo) * (plot_r - plot_l)

    body = []
    for tick in nice_ticks(lo, hi, 5):
        x = x_of(tick)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#e5e7eb"/>'
        )
        body.append(_text(x, height - bottom + 16, fmt_tick(tick), "middle"))
    for i, r in enumerate(rows):
        y = top + row_h * i + 5
        color = PALETTE[i % len(PALETTE)]
        body.append(_text(label_w, y + 14, r["label"], "end"))
        chance, end = x_of(0.5), x_of(r["value"])
        body.append(
            f'<rect x="{min(chance, end):.1f}" y="{y:.1f}" width="{max(abs(end - chance), 1):.1f}" '
            f'height="18" fill="{color}" fill-opacity="0.8">'
            f"<title>{escape(r['label'])}: {r['value']:.3f}</title></rect>"
        )
        if r.get("sd"):
            a, b = x_of(r["value"] - r["sd"]), x_of(r["value"] + r["sd"])
            body.append(
                f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y + 9:.1f}" y2="{y + 9:.1f}" stroke="#111"/>'
            )
        label_x = x_of(r["value"] + (r.get("sd") or 0)) + 4
        body.append(_text(label_x, y + 14, f"{r['value']:.3f}", extra='font-weight="600"'))
    if lo < 0.5 < hi:
        x = x_of(0.5)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#111" stroke-dasharray="3 3"/>'
        )
    body.append(_text((plot_l + plot_r) / 2, height - 6, xlabel, "middle"))
    return _svg(width, height, title, body, wide=True)


def line_chart(points: Sequence[Sequence[float]], xlabel: str, title: str) -> Markup:
    """One series over steps (a training curve)."""
    width, height, left, right, top, bottom = 320, 180, 46, 10, 24, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def xy(x: float, y: float) -> str:
        return f"{left + (x - x0) / (x1 - x0) * plot_w:.1f},{top + plot_h - (y - y0) / (y1 - y0) * plot_h:.1f}"

    body = [_text(left, 14, title, extra='font-weight="600"')]
    for tick in nice_ticks(y0, y1, 4):
        y = top + plot_h - (tick - y0) / (y1 - y0) * plot_h
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        )
        body.append(_text(left - 4, y + 4, fmt_tick(tick), "end"))
    for tick in nice_ticks(x0, x1, 4):
        x = left + (tick - x0) / (x1 - x0) * plot_w
        body.append(_text(x, top + plot_h + 14, fmt_tick(tick), "middle"))
    path = " ".join(xy(x, y) for x, y in zip(xs, ys, strict=True))
    body.append(f'<polyline points="{path}" fill="none" stroke="{CHOSEN}" stroke-width="1.5"/>')
    body.append(_text(left + plot_w / 2, height - 4, xlabel, "middle"))
    return _svg(width, height, title, body)


def grouped_bars(groups: Sequence[dict[str, Any]], series: Sequence[str], title: str) -> Markup:
    """One group per concept/metric, one bar per checkpoint, with 95% interval whiskers."""
    width, height, left, right, top, bottom = 640, 236, 50, 10, 44, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [
        v
        for g in groups
        for b in g["bars"]
        for v in (b["value"], b.get("ci_lo"), b.get("ci_hi"))
        if v is not None and math.isfinite(v)
    ] + [0.0]
    y0, y1 = min(values), max(values)
    if y1 <= y0:
        y1 = y0 + 1

    def y_of(v: float) -> float:
        return top + plot_h - (v - y0) / (y1 - y0) * plot_h

    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    body = [_text(left, 14, title, extra='font-weight="600"')]
    body += _legend(left, 32, [(name, colors[name]) for name in series])
    for tick in nice_ticks(y0, y1, 4):
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y_of(tick):.1f}" y2="{y_of(tick):.1f}" stroke="#e5e7eb"/>'
        )
        body.append(_text(left - 4, y_of(tick) + 4, fmt_tick(tick), "end"))
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for gi, group in enumerate(groups):
        gx = left + gi * group_w + group_w * 0.1
        for bar in group["bars"]:
            x = gx + series.index(bar["name"]) * bar_w
            ya, yb = sorted((y_of(0.0), y_of(bar["value"])))
            tip = f"{group['label']} · {bar['name']}: {bar['value']:.3g}"
            body.append(
                f'<rect x="{x:.1f}" y="{ya:.1f}" width="{bar_w * 0.9:.1f}" height="{yb - ya:.1f}" '
                f'fill="{colors[bar["name"]]}"><title>{escape(tip)}</title></rect>'
            )
            if bar.get("ci_lo") is not None and bar.get("ci_hi") is not None:
                cx = x + bar_w * 0.45
                body.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y_of(bar["ci_lo"]):.1f}" y2="{y_of(bar["ci_hi"]):.1f}" stroke="#111"/>'
                )
        label = group["label"] if len(group["label"]) <= 24 else group["label"][:23] + "…"
        body.append(_text(gx + group_w * 0.4, height - bottom + 16, label, "middle"))
    return _svg(width, height, title, body)


def scatter(points: Sequence[dict[str, Any]], xlabel: str, ylabel: str, title: str) -> Markup:
    """Predicted against observed, one point per concept: `strong` points (q < 0.05) are filled
    squares, the rest hollow circles, so shape alone tells them apart; a dashed least-squares
    line and the zero axes. Strong points are drawn last, on top of the crowd."""
    width, height, left, right, top, bottom = 420, 380, 48, 12, 30, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [p["x"] for p in points] + [0.0]
    ys = [p["y"] for p in points] + [0.0]
    x0, x1 = _padded(min(xs), max(xs))
    y0, y1 = _padded(min(ys), max(ys))

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * plot_w

    def py(v: float) -> float:
        return top + plot_h - (v - y0) / (y1 - y0) * plot_h

    strong = sum(1 for p in points if p.get("strong"))
    body = _scatter_legend(left, 16, strong, len(points) - strong)
    for tick in nice_ticks(x0, x1, 5):
        body.append(
            f'<line x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#e5e7eb"/>'
        )
        body.append(_text(px(tick), top + plot_h + 14, fmt_tick(tick), "middle"))
    for tick in nice_ticks(y0, y1, 5):
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#e5e7eb"/>'
        )
        body.append(_text(left - 4, py(tick) + 4, fmt_tick(tick), "end"))
    body.append(
        f'<line x1="{px(0):.1f}" x2="{px(0):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#9ca3af"/>'
        f'<line x1="{left}" x2="{left + plot_w}" y1="{py(0):.1f}" y2="{py(0):.1f}" stroke="#9ca3af"/>'
    )
    line = _least_squares([p["x"] for p in points], [p["y"] for p in points])
    if line is not None:
        slope, intercept = line
        lo_x, hi_x = x0, x1
        if slope:  # keep a steep line inside the plot box
            a, b = sorted(((y0 - intercept) / slope, (y1 - intercept) / slope))
            lo_x, hi_x = max(lo_x, a), min(hi_x, b)
        ends = [(x, slope * x + intercept) for x in (lo_x, hi_x)]
        (ax, ay), (bx, by) = ends
        body.append(
            f'<line class="fit" x1="{px(ax):.1f}" y1="{py(ay):.1f}" x2="{px(bx):.1f}" '
            f'y2="{py(by):.1f}" stroke="#111" stroke-dasharray="5 4">'
            f"<title>least-squares line: slope {slope:.3g}</title></line>"
        )
    for p in sorted(points, key=lambda p: bool(p.get("strong"))):
        tip = escape(
            f"{p['label']}: predicted {p['x']:.3g}, observed {p['y']:.3g}{p.get('note', '')}"
        )
        x, y = px(p["x"]), py(p["y"])
        if p.get("strong"):
            body.append(
                f'<rect class="pt strong" x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" '
                f'fill="{CHOSEN}"><title>{tip}</title></rect>'
            )
        else:
            body.append(
                f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="none" '
                f'stroke="{NEUTRAL}" stroke-opacity="0.7"><title>{tip}</title></circle>'
            )
    body.append(_text(left + plot_w / 2, height - 8, xlabel, "middle"))
    body.append(
        _text(
            12,
            top + plot_h / 2,
            ylabel,
            "middle",
            f'transform="rotate(-90 12 {top + plot_h / 2:.1f})"',
        )
    )
    return _svg(width, height, title, body)


def _padded(lo: float, hi: float) -> tuple[float, float]:
    pad = (hi - lo) * 0.06 or 1.0
    return lo - pad, hi + pad


def _least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def _scatter_legend(x: float, y: float, strong: int, weak: int) -> list[str]:
    first = f"q < 0.05 ({strong:,})"
    return [
        f'<rect x="{x:.1f}" y="{y - 8:.1f}" width="7" height="7" fill="{CHOSEN}"/>',
        _text(x + 12, y, first),
        f'<circle cx="{x + 24 + 7 * len(first):.1f}" cy="{y - 4.5:.1f}" r="3" fill="none" stroke="{NEUTRAL}"/>',
        _text(x + 32 + 7 * len(first), y, f"q ≥ 0.05 ({weak:,})"),
    ]
