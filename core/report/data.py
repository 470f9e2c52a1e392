"""Everything an audit report shows, collected from the lake into plain dicts (no HTML here).

Each section is `None` when its stage has not run; `missing[section]` then names the command that
fills it, so the report says "not run yet: run `sculpt …`" instead of failing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from sculpt.analysis.config import latest_analysis
from sculpt.concepts.evidence import LakeReader, cluster_names
from sculpt.errors import UserError
from sculpt.lake.store import Lake, slug
from sculpt.plan import decisions as decision_log
from sculpt.report.cards import concept_cards
from sculpt.report.runs import collect_runs
from sculpt.report.story import attach_decisions, in_force, plan_table, read_findings, story

LENGTH_BINS = 30
ALL_ROWS = 500
"""Rows of the sortable "all tested" table (by rank); the count of tests is always the full one."""


def collect(
    lake: Lake,
    dataset: str,
    runs: Sequence[str] | None = None,
    analysis: str | None = None,
    top: int = 15,
    cards: int = 10,
) -> dict[str, Any]:
    """The report's data for `dataset`: summary, hypotheses, cards, decisions, runs (DESIGN §1)."""
    con = lake.connect()
    tables = set(lake.tables())
    try:
        summary = _summary(con, tables, dataset)
        known = lake.has("pairs", {"dataset": dataset}) or lake.has(
            "hypotheses", {"dataset": dataset}
        )
        if not known:
            raise UserError(
                f"dataset {dataset!r}: not in lake {lake.root.name!r}; "
                f"run `sculpt ingest FILE --name {dataset}` or `sculpt audit FILE --name {dataset}`"
            )
        key = analysis or latest_analysis(lake, dataset)
        hyps = _hypotheses(con, tables, dataset, key, top) if key else None
        findings = read_findings(con, tables, dataset, key, top) if key else None
        if hyps:
            _name_clusters(LakeReader(con, tables, dataset, key), hyps["conditional"])
        labels = _labels(con, tables, dataset, hyps)
        predictive = _predictive(con, tables, dataset, key, labels) if key else None
        top_rows = _card_targets(hyps, findings, cards)
        data: dict[str, Any] = {
            "dataset": dataset,
            "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "summary": summary,
            "model": _model_info(lake, con, tables, dataset, hyps),
            "analysis": key,
            "hypotheses": hyps,
            "findings": findings,
            "predictive": predictive,
            "cards": (
                concept_cards(lake, con, tables, dataset, top_rows, key) if top_rows else None
            ),
            "decisions": _decisions(lake, dataset, labels),
            "runs": collect_runs(lake, con, tables, dataset, runs),
        }
    finally:
        con.close()
    for run in data["runs"] or []:
        run["plan_table"] = plan_table(run.get("plan") or "")
    attach_decisions(data, in_force(lake, dataset, findings))
    data["story"] = story(data)
    data["missing"] = missing_commands(data)
    return data


def missing_commands(data: dict[str, Any]) -> dict[str, str]:
    """For each empty section, the command that would fill it."""
    name = data["dataset"]
    commands = {
        "summary": f"sculpt ingest FILE --name {name}",
        "model": f"sculpt scan {name}",
        "hypotheses": f"sculpt analyze {name}",
        "predictive": f"sculpt analyze {name}",
        "cards": f"sculpt analyze {name}",
        "decisions": f"sculpt triage {name}",
        "runs": f"sculpt plan {name} && sculpt train --config examples/run.yaml",
        "story": f"sculpt analyze {name}",
    }
    return {section: cmd for section, cmd in commands.items() if not data.get(section)}


def rows(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> list[dict[str, Any]]:
    """Query result as a list of dicts."""
    result = con.execute(query, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, rec, strict=True)) for rec in result.fetchall()]


# ---- dataset summary ---------------------------------------------------------------------------
def _summary(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str
) -> dict[str, Any] | None:
    if "pairs" not in tables:
        return None
    part = slug(dataset)
    lengths = rows(
        con,
        "select len(string_split_regex(trim(chosen), '\\s+')) as c, "
        "len(string_split_regex(trim(rejected), '\\s+')) as r from pairs where dataset = ?",
        [part],
    )
    if not lengths:
        return None
    reasons: list[dict[str, Any]] = []
    if "rejects" in tables:
        reasons = rows(
            con,
            "select reason, count(*) as n from rejects where dataset = ? "
            "group by 1 order by 2 desc",
            [part],
        )
    sources = rows(con, "select distinct source from pairs where dataset = ? order by 1", [part])
    chosen = [r["c"] for r in lengths]
    rejected = [r["r"] for r in lengths]
    return {
        "kept": len(lengths),
        "rejected": sum(r["n"] for r in reasons),
        "reasons": reasons,
        "sources": [Path(str(s["source"])).name for s in sources if s["source"]],
        "lengths": length_summary(chosen, rejected),
    }


def length_summary(chosen: list[int], rejected: list[int]) -> dict[str, Any]:
    """Shared-bin histograms of response length in words, plus the paired comparison."""
    both = sorted(chosen + rejected)
    upper = max(both[min(len(both) - 1, int(0.99 * len(both)))], 1)
    width = max(1, -(-upper // LENGTH_BINS))
    edges = [i * width for i in range(LENGTH_BINS + 1)]

    def counts(values: list[int]) -> list[int]:
        out = [0] * LENGTH_BINS
        for v in values:
            out[min(v // width, LENGTH_BINS - 1)] += 1
        return out

    n = len(chosen)
    return {
        "edges": edges,
        "chosen": counts(chosen),
        "rejected": counts(rejected),
        "mean_chosen": sum(chosen) / n,
        "mean_rejected": sum(rejected) / n,
        "median_chosen": sorted(chosen)[n // 2],
        "median_rejected": sorted(rejected)[n // 2],
        "chosen_longer": sum(c > r for c, r in zip(chosen, rejected, strict=True)) / n,
    }


# ---- model, layer, SAE -------------------------------------------------------------------------
def _model_info(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    dataset: str,
    hyps: dict[str, Any] | None,
) -> dict[str, Any] | None:
    part = slug(dataset)
    models: list[str] = []
    layers: list[str] = []
    spans: dict[str, Any] = {}
    if "spans" in tables:
        models = [
            r["model"]
            for r in rows(con, "select distinct model from spans where dataset = ?", [part])
        ]
        found = rows(
            con,
            "select count(*) as n, sum(n_tokens) as tokens, sum(n_truncated) as truncated, "
            "count(*) filter (where n_truncated > 0) as spans_truncated "
            "from spans where dataset = ?",
            [part],
        )
        spans = found[0] if found and found[0]["n"] else {}
    if "acts" in tables:
        layers = [
            r["layer"]
            for r in rows(con, "select distinct layer from acts where dataset = ?", [part])
        ]
    saes = [_sae_info(lake, sae_id) for sae_id in _sae_ids(con, tables, part, hyps)]
    if not (models or layers or saes):
        return None
    return {"models": models, "layers": layers, "spans": spans, "saes": saes}


def _sae_ids(
    con: duckdb.DuckDBPyConnection, tables: set[str], part: str, hyps: dict[str, Any] | None
) -> list[str]:
    ids: list[str] = []
    for row in (hyps or {}).get("all", []):
        if row["concept_id"].startswith(("sae:", "fc:")):
            sae_id = row["concept_id"].split(":", 1)[1].rsplit(":", 1)[0]
            if sae_id not in ids:
                ids.append(sae_id)
    if not ids and "span_features" in tables:
        found = rows(
            con, "select distinct sae from span_features where dataset = ? order by 1", [part]
        )
        ids = [r["sae"] for r in found]
    return ids


SAE_FIELDS = ("model", "layer", "d_in", "d_sae", "width", "k", "architecture", "tokens", "source")


def _sae_info(lake: Lake, sae_id: str) -> dict[str, Any]:
    """The SAE's `sculpt.json`, reduced to what a reader needs (no machine paths)."""
    path = lake.root / "saes" / sae_id / "sculpt.json"
    meta: dict[str, Any] = {}
    if path.exists():
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
    info = {k: meta[k] for k in SAE_FIELDS if k in meta and not _is_path(meta[k])}
    quality = meta.get("quality") if isinstance(meta.get("quality"), dict) else {}
    return {"sae_id": sae_id, **info, "quality": quality}


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith(("/", "~")) or ":\\" in value)


# ---- hypotheses --------------------------------------------------------------------------------
def _hypotheses(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str, analysis: str, top: int
) -> dict[str, Any] | None:
    if "hypotheses" not in tables:
        return None
    found = rows(
        con,
        "select * exclude (schema_version) from hypotheses where dataset = ? and analysis = ? "
        "order by coalesce(rank, 2147483647), abs(d) desc",
        [slug(dataset), slug(analysis)],
    )
    if not found:
        return None
    for r in found:
        r.pop("dataset", None)
        r.pop("analysis", None)
        r["label"] = r.get("label") or r["concept_id"]
    glob = [r for r in found if r["scope"] == "global"]
    return {
        "all": glob[:ALL_ROWS],
        "chosen": [r for r in glob if r["lean"] == "chosen"][:top],
        "rejected": [r for r in glob if r["lean"] == "rejected"][:top],
        "conditional": [r for r in found if r["scope"] != "global"][:top],
        "n_tested": len(glob),
        "n_significant": sum(1 for r in glob if (r.get("q") or 1.0) < 0.05),
    }


def _name_clusters(reader: LakeReader, conditional: list[dict[str, Any]]) -> None:
    """Each conditional row's data cluster named by its prompts (`rice · cook · best`)."""
    names = cluster_names(reader) if conditional else {}
    for r in conditional:
        k = r.get("data_cluster")
        r["cluster_name"] = names.get(int(k)) if k is not None else None


def _card_targets(
    hyps: dict[str, Any] | None, findings: dict[str, Any] | None, cards: int
) -> list[dict[str, Any]]:
    """One card per top finding (its anchor's hypothesis, with the finding's own statistics and
    members); without findings, the strongest hypotheses of both leans, interleaved."""
    if not hyps or cards <= 0:
        return []
    if findings:
        by_concept = {r["concept_id"]: r for r in hyps["all"]}
        anchored = [
            {**by_concept[f["anchor"]], "finding": f}
            for f in findings["top"][:cards]
            if f.get("anchor") in by_concept
        ]
        if anchored:
            return anchored
    chosen, rejected = hyps["chosen"], hyps["rejected"]
    out: list[dict[str, Any]] = []
    for i in range(max(len(chosen), len(rejected))):
        out.extend(r for r in (chosen[i : i + 1] + rejected[i : i + 1]))
    return out[:cards]


def _predictive(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    dataset: str,
    analysis: str,
    labels: dict[str, str],
) -> list[dict[str, Any]] | None:
    """Each model's AUC and its largest coefficients, labelled; a model whose concepts repeat an
    earlier model's (the top-5 model is the full model's top 5) names it instead of a copy."""
    if "predictive" not in tables:
        return None
    found = rows(
        con,
        "select model, auc, auc_sd, top_concepts from predictive "
        "where dataset = ? and analysis = ?",
        [slug(dataset), slug(analysis)],
    )
    for r in found:
        try:
            r["top_concepts"] = [list(x)[:2] for x in json.loads(r["top_concepts"] or "[]")][:10]
        except (json.JSONDecodeError, TypeError):
            r["top_concepts"] = []
        for item in r["top_concepts"]:
            item.append(labels.get(str(item[0]), ""))
    order = {"concepts": 0, "length": 1}
    found = sorted(found, key=lambda r: order.get(r["model"], 2))
    for i, r in enumerate(found):
        ids = {c[0] for c in r["top_concepts"]}
        r["same_as"] = next(
            (o["model"] for o in found[:i] if ids and ids <= {c[0] for c in o["top_concepts"]}),
            None,
        )
    return found or None


# ---- decisions ---------------------------------------------------------------------------------
def _labels(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str, hyps: dict[str, Any] | None
) -> dict[str, str]:
    labels: dict[str, str] = {}
    if "concepts" in tables:
        for r in rows(
            con, "select concept_id, label from concepts where dataset = ?", [slug(dataset)]
        ):
            if r["label"]:
                labels[r["concept_id"]] = r["label"]
    for r in (hyps or {}).get("all", []):
        labels.setdefault(r["concept_id"], r["label"])
    return labels


def _decisions(lake: Lake, dataset: str, labels: dict[str, str]) -> list[dict[str, Any]] | None:
    log = decision_log.history(lake, dataset)
    if not log:
        return None
    in_force = {d.ts for d in decision_log.current(lake, dataset)}
    undone = {d.undo_of for d in log if d.is_undo}
    by_ts = {d.ts: d for d in log}
    out = []
    for d in log:
        if d.is_undo:
            withdrawn = by_ts.get(d.undo_of or -1.0)
            what = f"the {withdrawn.action} of " if withdrawn else "the decision of "
            when = time.gmtime(d.undo_of or 0)
            state = "undo: withdraws " + what + time.strftime("%Y-%m-%d %H:%M", when)
        elif d.ts in undone:
            state = "withdrawn"
        else:
            state = "in force" if d.ts in in_force else "replaced"
        out.append(
            {
                "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime(d.ts)),
                "who": d.author,
                "glyph": d.glyph,
                "action": "undo" if d.is_undo else d.action,
                "method": d.method,
                "strength": d.strength,
                "scope": d.scope,
                "concept_id": d.concept_id,
                "label": labels.get(d.concept_id, ""),
                "why": d.note,
                "state": state,
            }
        )
    return out
