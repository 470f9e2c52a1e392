"""Render an audit report: one offline HTML file (Jinja2 autoescaped, inline SVG, JS and CSS)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from sculpt.lake.store import Lake, slug
from sculpt.report.data import collect
from sculpt.reports import charts

TEMPLATES = Path(__file__).parent / "templates"
FOREST_ROWS = 24


def default_path(lake: Lake, dataset: str) -> Path:
    """Where a report goes unless `-o` says otherwise: <lake>/reports/<dataset>.html."""
    return lake.root / "reports" / f"{slug(dataset)}.html"


def write_report(
    lake: Lake,
    dataset: str,
    out: Path | None = None,
    runs: Sequence[str] | None = None,
    analysis: str | None = None,
    top: int = 15,
    cards: int = 10,
) -> Path:
    """Collect the lake's view of `dataset`, render it, write it atomically; returns the path."""
    data = collect(lake, dataset, runs=runs, analysis=analysis, top=top, cards=cards)
    html = render_html(data, machine_paths=_machine_paths(lake))
    path = out or default_path(lake, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_html(data: dict[str, Any], machine_paths: Sequence[str] = ()) -> str:
    """The report for data from `sculpt.report.data.collect` (paths of this machine scrubbed)."""
    data = scrub(data, sorted(set(machine_paths), key=len, reverse=True))
    env = _environment()
    template = env.get_template("report.html")
    return template.render(
        d=data,
        charts=build_charts(data),
        data_json=script_json(data),
        css=Markup((TEMPLATES / "report.css").read_text()),
        js=Markup((TEMPLATES / "report.js").read_text()),
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=fmt_num, pct=fmt_pct, fixed=fmt_fixed, tojson_attr=lambda v: json.dumps(v)
    )
    return env


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separators for big counts."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10**-(digits):
            return f"{value:.1e}"
        return f"{value:,.{digits}g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def fmt_fixed(value: Any, digits: int = 3) -> str:
    """A bounded statistic (R², ρ) at fixed decimals, so 0.000 reads as nothing, not 2.7e-04."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def fmt_pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * float(value):.1f}%"


def script_json(data: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no `</`, `<!--` or `]]>` can appear."""
    text = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    for raw, safe in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, safe)
    return Markup(text)


def _machine_paths(lake: Lake) -> list[str]:
    paths = {str(lake.root.resolve()), str(Path.cwd().resolve()), str(Path.home())}
    if lake.root.is_absolute():
        paths.add(str(lake.root))
    return [p for p in paths if len(p) > 1]


def scrub(value: Any, paths: Sequence[str]) -> Any:
    """A copy with this machine's absolute paths replaced and NaN/inf turned into null."""
    if isinstance(value, dict):
        return {k: scrub(v, paths) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, paths) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        for path in paths:
            if path in value:
                value = value.replace(path, "…")
    return value


# ---- charts ------------------------------------------------------------------------------------
def build_charts(data: dict[str, Any]) -> dict[str, Any]:
    """Inline SVG for every section that has data (markup; labels escaped in sculpt.reports.charts)."""
    out: dict[str, Any] = {
        "lengths": None,
        "forest": None,
        "forest_narrow": None,
        "predictive": None,
        "runs": {},
    }
    summary = data.get("summary")
    if summary:
        lengths = summary["lengths"]
        out["lengths"] = charts.histogram(
            lengths["edges"],
            [
                ("chosen", lengths["chosen"], charts.CHOSEN),
                ("rejected", lengths["rejected"], charts.REJECTED),
            ],
            "response length (words)",
            "Response length: chosen vs rejected",
        )
    hyps = data.get("hypotheses")
    if hyps and hyps["all"]:
        rows = forest_rows(hyps["all"])
        xlabel, title = (
            "paired effect size d (95% CI)",
            "Top concepts: effect size with 95% interval",
        )
        out["forest"] = charts.forest_plot(rows, xlabel, title)
        out["forest_narrow"] = charts.forest_plot(rows, xlabel, title, narrow=True)
    if data.get("predictive"):
        bars = [
            {"label": f"{r['model']} model", "value": r["auc"] or 0.5, "sd": r.get("auc_sd")}
            for r in data["predictive"]
        ]
        out["predictive"] = charts.interval_bars(
            bars, "cross-validated AUC (0.5 = chance)", "Predictive power: AUC"
        )
    for run in data.get("runs") or []:
        out["runs"][run["run_id"]] = _run_charts(run)
    return out


def forest_rows(hypotheses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top concepts on one scale: d_z, its interval scaled from Δ's bootstrap CI (d = Δ/sd)."""
    rows = []
    for h in sorted(hypotheses, key=lambda r: r.get("rank") or 1 << 30)[:FOREST_ROWS]:
        delta, d = h.get("delta"), h.get("d")
        if delta is None or d is None or h.get("ci_lo") is None or h.get("ci_hi") is None:
            continue
        scale = d / delta if delta else 0.0
        lo, hi = sorted((h["ci_lo"] * scale, h["ci_hi"] * scale))
        rows.append(
            {
                "label": h["label"],
                "est": d,
                "lo": lo,
                "hi": hi,
                "lean": h["lean"],
                "length_only": h.get("length_only"),
            }
        )
    return rows


def _run_charts(run: dict[str, Any]) -> dict[str, Any]:
    curves = [charts.line_chart(points, "step", name) for name, points in run["curves"].items()]
    evals = []
    table = run.get("evals")
    if table:
        by_metric: dict[str, list[dict[str, Any]]] = {}
        for row in table["rows"]:
            bars = [
                {"name": c, **row["cells"][c]}
                for c in table["checkpoints"]
                if c in row["cells"] and row["cells"][c]["value"] is not None
            ]
            if bars:
                by_metric.setdefault(row["metric"], []).append(
                    {"label": row["concept_id"] or row["metric"], "bars": bars}
                )
        for metric, groups in list(by_metric.items())[:8]:
            evals.append(
                charts.grouped_bars(
                    groups[:10], table["checkpoints"], f"{metric}: base → DPO → shaped"
                )
            )
    return {"curves": curves, "evals": evals, "validity": _validity_charts(run)}


def _validity_charts(run: dict[str, Any]) -> dict[str, Markup]:
    """Per evaluated checkpoint: the audit's predicted Δ against the observed change."""
    out = {}
    for view in run.get("validity") or []:
        if not view["points"]:
            continue
        points = [
            {
                "x": p["predicted"],
                "y": p["observed"],
                "label": p["label"],
                "strong": p["significant"],
                "note": f", q {fmt_num(p['q'])}" if p.get("q") is not None else "",
            }
            for p in view["points"]
        ]
        out[view["checkpoint"]] = charts.scatter(
            points,
            "predicted Δ (audit, sd units)",
            "observed change, trained − base (sd units)",
            f"Predicted vs observed change per concept: {view['checkpoint']}",
        )
    return out
