"""The report's opening: what was found, how sure, what was decided, what the plan does and what
training changed, collected from the sections `sculpt.report.data.collect` already read."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from sculpt.lake.store import Lake, fetch_dicts, slug
from sculpt.plan import decisions as decision_log

WORDS = {
    "allow": "allowed",
    "suppress": "suppressed",
    "amplify": "amplified",
    "review": "to review",
}
FINDING_PREFIX = "finding:"


# ---- findings ----------------------------------------------------------------------------------
def read_findings(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str, analysis: str, top: int
) -> dict[str, Any] | None:
    """The analysis's findings (one row per distinct signal), the top `top` with their members."""
    if not {"findings", "finding_members"} <= tables:
        return None
    part = [slug(dataset), slug(analysis)]
    rows = fetch_dicts(
        con,
        "select * exclude (schema_version, dataset, analysis) from findings "
        "where dataset = ? and analysis = ? order by rank",
        part,
    )
    if not rows:
        return None
    shown = rows[:top]
    ids = [r["finding_id"] for r in shown]
    marks = ", ".join("?" for _ in ids)
    members = fetch_dicts(
        con,
        "select finding_id, concept_id, position, role, kind, label, agreement, hypothesis_id, "
        "d, q, lean from finding_members where dataset = ? and analysis = ? "
        f"and finding_id in ({marks}) order by finding_id, position",
        [*part, *ids],
    )
    by_finding: dict[str, list[dict[str, Any]]] = {}
    for m in members:
        by_finding.setdefault(m["finding_id"], []).append(m)
    for r in shown:
        r["member_rows"] = by_finding.get(r["finding_id"], [])
        # the evidence a card shows: the member that names the finding (the most readable one,
        # as the TUI shows it), else the anchor
        first = r["member_rows"][0]["concept_id"] if r["member_rows"] else None
        r["anchor"] = r.get("label_concept") or first
    return {
        "top": shown,
        "n": len(rows),
        "n_significant": sum(1 for r in rows if (r.get("q") or 1.0) < 0.05),
        "n_concepts": sum(int(r.get("n_members") or 0) for r in rows),
    }


# ---- decisions in force ------------------------------------------------------------------------
def in_force(
    lake: Lake, dataset: str, findings: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """concept_id (or finding_id) → the decision in force on it, as glyph and word; a decision on
    a finding is also shown on each of its members (it covers them)."""
    out: dict[str, dict[str, Any]] = {}
    members = {
        f["finding_id"]: [m["concept_id"] for m in f["member_rows"]]
        for f in (findings or {}).get("top", [])
    }
    for d in decision_log.current(lake, dataset):
        if d.hypothesis_id and d.scope != "all":
            continue  # one hypothesis in one data cluster: the decisions table says so
        shown = {
            "glyph": d.glyph,
            "word": WORDS.get(d.action, d.action),
            "method": d.method,
            "strength": d.strength,
            "scope": d.scope,
            "via": d.concept_id if d.concept_id.startswith(FINDING_PREFIX) else None,
        }
        out[d.concept_id] = shown
        for concept_id in members.get(d.concept_id, []):
            out.setdefault(concept_id, shown)
    return out


def attach_decisions(data: dict[str, Any], decided: dict[str, dict[str, Any]]) -> None:
    """Put the decision in force on every hypothesis row, card and finding that it governs."""
    for rows in (data.get("hypotheses") or {}).values():
        if isinstance(rows, list):
            for r in rows:
                r["decision"] = decided.get(r["concept_id"])
    for card in data.get("cards") or []:
        card["decision"] = decided.get(card.get("finding_id") or "") or decided.get(
            card["concept_id"]
        )
    for f in (data.get("findings") or {}).get("top", []):
        f["decision"] = decided.get(f["finding_id"]) or decided.get(f.get("anchor") or "")


# ---- the story ---------------------------------------------------------------------------------
ALPHA = 0.05
"""FDR level of what the summary calls found (the analysis's default)."""


def story(data: dict[str, Any], top: int = 5) -> dict[str, Any] | None:
    """The summary a reader sees first; None before any analysis."""
    hyps, findings = data.get("hypotheses"), data.get("findings")
    if not hyps:
        return None
    out: dict[str, Any] = {}
    if findings:
        # What was found is what the statistics back: findings at q < 0.05, best first.
        significant = [f for f in findings["top"] if f.get("q") is not None and f["q"] < ALPHA]
        out["found"] = [_found(f, f.get("label") or f["finding_id"]) for f in significant[:top]]
        out["n_findings"], out["n_concepts"] = findings["n"], findings["n_concepts"]
        out["n_significant"] = findings["n_significant"]
    else:
        chosen = sorted(hyps["all"], key=lambda r: r.get("rank") or 1 << 30)
        chosen = [h for h in chosen if h.get("q") is not None and h["q"] < ALPHA]
        out["found"] = [_found(h, h["label"]) for h in chosen[:top]]
        out["n_findings"], out["n_concepts"] = None, hyps["n_tested"]
        out["n_significant"] = hyps["n_significant"]
    out["n_split_half"] = sum(1 for f in out["found"] if f["split_half_ok"])
    predictive = {r["model"]: r for r in data.get("predictive") or []}
    out["auc"] = (predictive.get("concepts") or {}).get("auc")
    out["auc_length"] = (predictive.get("length") or {}).get("auc")
    decisions = [d for d in data.get("decisions") or [] if d["state"] == "in force"]
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d["action"]] = counts.get(d["action"], 0) + 1
    out["decided"] = [
        {"glyph": decision_log.GLYPHS[a], "word": WORDS[a], "n": counts[a]}
        for a in decision_log.ACTIONS
        if a in counts
    ]
    out["withdrawn"] = sum(1 for d in data.get("decisions") or [] if d["state"] == "withdrawn")
    runs = data.get("runs") or []
    latest = runs[-1] if runs else None
    out["plan"] = latest["plan_table"] if latest else []
    out["run_id"] = latest["run_id"] if latest else None
    out["changed"] = training_changes(latest) if latest else []
    return out


def _found(row: dict[str, Any], label: str) -> dict[str, Any]:
    return {
        "label": label,
        "lean": row.get("lean"),
        "d": row.get("d"),
        "delta": row.get("delta"),
        "ci_lo": row.get("ci_lo"),
        "ci_hi": row.get("ci_hi"),
        "q": row.get("q"),
        "split_half_ok": bool(row.get("split_half_ok")),
        "n_members": row.get("n_members"),
        "share": row.get("chosen_share") is not None,
    }


def plan_table(plan_text: str) -> list[dict[str, Any]]:
    """A run's plan as rows (what each intervention does, to how many pairs), not JSON."""
    try:
        plan = json.loads(plan_text) if plan_text else {}
    except json.JSONDecodeError:
        return []
    items = plan.get("interventions") if isinstance(plan, dict) else None
    rows = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        rows.append(
            {
                "target": item.get("finding") or item.get("concept_id", ""),
                "label": item.get("label") or "",
                "driver": item.get("concept_id", "") if item.get("finding") else "",
                "action": item.get("action", "suppress"),
                "method": item.get("method", ""),
                "strength": item.get("strength", item.get("lambda")),
                "scope": item.get("scope", "all"),
                "n_pairs": item.get("n_pairs"),
                "note": item.get("note", ""),
            }
        )
    return rows


def training_changes(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per concept metric: base → plain DPO → shaped, when the run was evaluated."""
    table = run.get("evals")
    if not table:
        return []
    out = []
    for row in table["rows"]:
        cells = row["cells"]
        values = {cp: (cells.get(cp) or {}).get("value") for cp in ("base", "baseline", "shaped")}
        if values["shaped"] is None or values["baseline"] is None:
            continue
        out.append({"metric": row["metric"], "concept_id": row["concept_id"], **values})
    return out
