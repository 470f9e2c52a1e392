"""Training runs for the report: plan, config, training curves (metrics.jsonl), eval tables."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from sculpt.analysis.config import latest_analysis
from sculpt.errors import UserError
from sculpt.lake.store import Lake, slug
from sculpt.lake.store import fetch_dicts as _rows
from sculpt.train.metrics import PER_CONCEPT

CHECKPOINT_ORDER = ("base", "baseline", "shaped")
"""base → plain DPO → shaped DPO, then any other checkpoint by name."""
CURVE_POINTS = 200
MAX_CURVES = 6
CURVE_PREFERENCE = (
    "loss",
    "shaping/offset",
    "rewards/margins",
    "rewards/accuracies",
    "shaping/weight",
    "eval_loss",
    "grad_norm",
)
"""Curves drawn first: the loss, then what the plan did to it (the mean margin offset λ·(s̃⁺ − s̃⁻)
and pair weight that sculpt's trainer logs), then TRL's reward curves."""
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])(?:/|~/|[A-Za-z]:\\)[^\s'\"()\[\]{},;:]+")
"""An absolute path inside a value (`runs_dir: /mnt/runs`, an error naming a file)."""
FITS = (
    ("predicted_observed", "every tested concept"),
    ("predicted_observed_significant", "tested, q < 0.05"),
    ("conditional_predicted_observed", "feature-conditioned (B_k × T_m)"),
    ("findings_predicted_observed", "findings"),
)
"""The fits `sculpt eval` records (r2_<name>, spearman_<name>), in the order the report lists
them; the scatter draws the points of the first."""
SIGNIFICANT = 0.05


def collect_runs(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    dataset: str,
    wanted: Sequence[str] | None,
) -> list[dict[str, Any]] | None:
    """The latest row of each run of `dataset` (or the runs named), with its curves and evals."""
    if "runs" not in tables:
        if wanted:
            raise UserError(
                f"--run {wanted[0]}: the lake has no runs yet; train one with `sculpt train`"
            )
        return None
    latest = _rows(
        con,
        "select * exclude (schema_version) from runs "
        "qualify row_number() over (partition by run_id order by ts desc) = 1 order by ts",
        [],
    )
    if wanted:
        known = {r["run_id"] for r in latest}
        for run_id in wanted:
            if run_id not in known:
                raise UserError(
                    f"--run {run_id}: not in the runs log; list them with "
                    '`sculpt lake sql "select run_id, dataset, status from runs"`'
                )
        chosen = [r for r in latest if r["run_id"] in set(wanted)]
    else:
        chosen = [r for r in latest if r.get("dataset") in (None, dataset)]
    if not chosen:
        return None
    return [_run(lake, con, tables, r) for r in chosen]


def _run(
    lake: Lake, con: duckdb.DuckDBPyConnection, tables: set[str], row: dict[str, Any]
) -> dict[str, Any]:
    run_dir = _resolve_dir(lake, row.get("dir"))
    return {
        "run_id": row["run_id"],
        "status": row.get("status"),
        "dir": _display_dir(lake, row.get("dir")),
        "config": _pretty(lake, row.get("config")),
        "plan": _pretty(lake, row.get("plan")),
        "metrics": _no_machine_paths(lake, _json_dict(row.get("metrics"))),
        "curves": training_curves(run_dir / "metrics.jsonl") if run_dir else {},
        "evals": _evals(con, tables, row["run_id"]),
        "validity": _validity(lake, con, tables, row["run_id"], row.get("dataset")),
    }


def _json_any(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pretty(lake: Lake, text: Any) -> str:
    """A JSON column indented for reading, without this machine's paths; empty for an empty plan
    or config."""
    value = _no_machine_paths(lake, _json_any(text))
    if not value:
        return ""
    return value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False)


def _no_machine_paths(lake: Lake, value: Any) -> Any:
    """`value` with every absolute path (the config's `runs_dir` and `plan`, a path in an error)
    shown as a reader may name it: relative to the lake's folder, or `…/<name>`."""
    if isinstance(value, dict):
        return {k: _no_machine_paths(lake, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_machine_paths(lake, v) for v in value]
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: _display_path(lake, m.group(0)), value)
    return value


def _display_path(lake: Lake, text: str) -> str:
    path = Path(text).expanduser()
    for base in (lake.root.resolve().parent, Path.cwd().resolve()):
        try:
            return str(path.resolve().relative_to(base))
        except (ValueError, OSError):
            continue
    return f"…/{path.name}"


def _json_dict(text: Any) -> dict[str, Any]:
    value = _json_any(text)
    return value if isinstance(value, dict) else {}


def _resolve_dir(lake: Lake, text: Any) -> Path | None:
    if not isinstance(text, str) or not text:
        return None
    path = Path(text)
    candidates = [path] if path.is_absolute() else [path, lake.root / path, lake.root.parent / path]
    return next((p for p in candidates if p.is_dir()), None)


def _display_dir(lake: Lake, text: Any) -> str:
    """The run folder as a reader may name it, never an absolute path of this machine."""
    if not isinstance(text, str) or not text:
        return ""
    path = Path(text)
    if not path.is_absolute():
        return text
    for base in (lake.root.resolve().parent, Path.cwd()):
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            continue
    return f"runs/{path.name}"


def training_curves(path: Path) -> dict[str, list[list[float]]]:
    """Numeric series of a metrics.jsonl keyed by name, as [step, value] points (thinned)."""
    if not path.is_file():
        return {}
    series: dict[str, list[list[float]]] = {}
    with open(path) as fh:
        for index, line in enumerate(fh):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            step = record.get("step", record.get("global_step", index))
            for key, value in record.items():
                if key in ("step", "global_step", "epoch", "ts", "time") or isinstance(value, bool):
                    continue
                if (
                    isinstance(value, int | float)
                    and math.isfinite(value)
                    and isinstance(step, int | float)
                ):
                    series.setdefault(key, []).append([float(step), float(value)])
    ranked = sorted(
        series, key=lambda k: (CURVE_PREFERENCE.index(k) if k in CURVE_PREFERENCE else 99, k)
    )
    return {k: _thin(series[k]) for k in ranked[:MAX_CURVES] if len(series[k]) >= 2}


def _thin(points: list[list[float]]) -> list[list[float]]:
    if len(points) <= CURVE_POINTS:
        return points
    stride = math.ceil(len(points) / CURVE_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def _evals(con: duckdb.DuckDBPyConnection, tables: set[str], run_id: str) -> dict[str, Any] | None:
    """Latest value per (metric, concept, checkpoint), as a table with checkpoints as columns;
    the per-concept points behind the fits (thousands of rows) and the fits are `_validity`'s."""
    if "evals" not in tables:
        return None
    found = _rows(
        con,
        "select checkpoint, metric, concept_id, value, n, ci_lo, ci_hi from evals "
        "where run_id = ? and metric not in (select unnest(?)) "
        "and not starts_with(metric, 'r2_') and not starts_with(metric, 'spearman_') "
        "qualify row_number() over "
        "(partition by checkpoint, metric, concept_id order by ts desc) = 1",
        [run_id, list(PER_CONCEPT)],
    )
    if not found:
        return None
    names = {r["checkpoint"] for r in found}
    checkpoints = [c for c in CHECKPOINT_ORDER if c in names]
    checkpoints += sorted(names - set(checkpoints))
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for r in found:
        key = (r["metric"], r["concept_id"] or "")
        row = table.setdefault(key, {"metric": key[0], "concept_id": key[1], "cells": {}})
        row["cells"][r["checkpoint"]] = {k: r[k] for k in ("value", "n", "ci_lo", "ci_hi")}
    return {"checkpoints": checkpoints, "rows": [table[k] for k in sorted(table)]}


def _validity(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    run_id: str,
    dataset: str | None,
) -> list[dict[str, Any]]:
    """Per evaluated checkpoint: each tested concept's predicted Δ against its observed change
    (trained − base, both in sd(u) units of the data), whether the audit found it at q < 0.05,
    and the fits across concepts (R², Spearman ρ, bootstrap intervals over concepts)."""
    if "evals" not in tables:
        return []
    found = _rows(
        con,
        "select checkpoint, metric, concept_id, value, n, ci_lo, ci_hi from evals "
        "where run_id = ? and (metric in ('predicted_delta', 'observed_change_sd') "
        "or starts_with(metric, 'r2_') or starts_with(metric, 'spearman_')) "
        "qualify row_number() over "
        "(partition by checkpoint, metric, concept_id order by ts desc) = 1",
        [run_id],
    )
    if not found:
        return []
    hypotheses = _global_hypotheses(lake, con, tables, dataset)
    by_checkpoint: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for r in found:
        by_checkpoint.setdefault(r["checkpoint"], {})[(r["metric"], r["concept_id"] or "")] = r
    out = []
    for checkpoint in sorted(by_checkpoint, key=_checkpoint_order):
        cells = by_checkpoint[checkpoint]
        points = []
        for (metric, concept), predicted in sorted(cells.items()):
            observed = cells.get(("observed_change_sd", concept))
            if metric != "predicted_delta" or observed is None:
                continue
            x, y = predicted["value"], observed["value"]
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                continue
            label, q = hypotheses.get(concept, (concept, None))
            points.append(
                {
                    "concept_id": concept,
                    "label": label,
                    "predicted": x,
                    "observed": y,
                    "observed_lo": observed["ci_lo"],
                    "observed_hi": observed["ci_hi"],
                    "q": q,
                    "significant": q is not None and q < SIGNIFICANT,
                }
            )
        fits = []
        for name, label in FITS:
            r2, rho = cells.get((f"r2_{name}", "")), cells.get((f"spearman_{name}", ""))
            if r2 is not None or rho is not None:
                fits.append({"name": name, "label": label, "r2": r2, "spearman": rho})
        if points or fits:
            out.append({"checkpoint": checkpoint, "points": points, "fits": fits})
    return out


def _checkpoint_order(name: str) -> tuple[int, str]:
    return (CHECKPOINT_ORDER.index(name) if name in CHECKPOINT_ORDER else 99, name)


def _global_hypotheses(
    lake: Lake, con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str | None
) -> dict[str, tuple[str, float | None]]:
    """concept → (label, q) from the dataset's latest analysis (the audit that predicted Δ)."""
    if not dataset or "hypotheses" not in tables:
        return {}
    analysis = latest_analysis(lake, dataset)
    if analysis is None:
        return {}
    found = _rows(
        con,
        "select concept_id, label, q from hypotheses "
        "where dataset = ? and analysis = ? and scope = 'global'",
        [slug(dataset), slug(analysis)],
    )
    return {r["concept_id"]: (r["label"] or r["concept_id"], r["q"]) for r in found}
