"""The evidence behind one concept: its row in the concepts table, the per-pair gap and its
histogram, the pairs that drive it, correlated concepts, top contexts, and one pair in full."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sculpt.lake.store import slug
from sculpt.tui.data import TriageData


@dataclass
class PairView:
    """One pair as the pair screen shows it: prompt, both responses, tokens and activations."""

    pair_id: str
    prompt: list[dict[str, str]]
    texts: dict[str, str]
    tokens: dict[str, list[str]] = field(default_factory=dict)
    activations: dict[str, dict[int, float]] = field(default_factory=dict)
    data_cluster: int | None = None


def concept(data: TriageData, concept_id: str) -> dict[str, Any]:
    """The concept's row in the concepts table (label, kind, source), else just its id."""
    if "concepts" not in data.tables:
        return {"concept_id": concept_id}
    rows = data.query(
        "select * from concepts where dataset = ? and concept_id = ? limit 1",
        [slug(data.dataset), concept_id],
    )
    return rows[0] if rows else {"concept_id": concept_id}


def _gap_sql(data: TriageData, concept_id: str) -> tuple[str, list[Any]] | None:
    """(chosen score, rejected score) per pair for one concept, from its base table."""
    parts = concept_id.split(":")
    if concept_id.startswith("sae:") and len(parts) == 3 and "span_features" in data.tables:
        return (
            "select pair_id, coalesce(max(max_act) filter (side = 'chosen'), 0) as chosen, "
            "coalesce(max(max_act) filter (side = 'rejected'), 0) as rejected "
            "from span_features where dataset = ? and sae = ? and feature = ? "
            "group by pair_id",
            [slug(data.dataset), slug(parts[1]), int(parts[2])],
        )
    if "concept_span_scores" in data.tables:
        return (
            "select pair_id, coalesce(max(score) filter (side = 'chosen'), 0) as chosen, "
            "coalesce(max(score) filter (side = 'rejected'), 0) as rejected "
            "from concept_span_scores where dataset = ? and concept_id = ? "
            "group by pair_id",
            [slug(data.dataset), concept_id],
        )
    return None


def gap_histogram(
    data: TriageData, concept_id: str, bins: int = 11
) -> list[tuple[float, float, int]]:
    """Counts of the per-pair gap (chosen − rejected), pairs without a score count as 0."""
    gap = _gap_sql(data, concept_id)
    if gap is None or "pairs" not in data.tables:
        return []
    sql, params = gap
    rows = data.query(
        f"with g as ({sql}), a as (select coalesce(g.chosen - g.rejected, 0) as gap "
        "from pairs p left join g using (pair_id) where p.dataset = ?), "
        "r as (select min(gap) lo, max(gap) hi from a) "
        f"select least(cast(floor((gap - lo) / nullif(hi - lo, 0) * {bins}) as int), "
        f"{bins - 1}) as bin, count(*) as n, any_value(lo) lo, any_value(hi) hi "
        "from a, r group by 1 order by 1",
        [*params, slug(data.dataset)],
    )
    if not rows:
        return []
    lo, hi = float(rows[0]["lo"]), float(rows[0]["hi"])
    if hi == lo:
        return [(lo, hi, int(sum(r["n"] for r in rows)))]
    width = (hi - lo) / bins
    counts = {int(r["bin"]): int(r["n"]) for r in rows}
    return [(lo + i * width, lo + (i + 1) * width, counts.get(i, 0)) for i in range(bins)]


def driving_pairs(
    data: TriageData, concept_id: str, lean: str, data_cluster: int | None, limit: int = 200
) -> list[dict[str, Any]]:
    """The pairs that push this hypothesis most, largest gap in its direction first."""
    gap = _gap_sql(data, concept_id)
    if gap is None:
        return []
    sql, params = gap
    sign = 1 if lean == "chosen" else -1
    cluster_join, cluster_params = "", []
    if data_cluster is not None and "clusters" in data.tables:
        cluster_join = (
            "join clusters c on c.pair_id = g.pair_id and c.dataset = ? "
            "and c.analysis = ? and c.data_cluster = ?"
        )
        cluster_params = [slug(data.dataset), data.analysis, int(data_cluster)]
    return data.query(
        f"with g as ({sql}) select g.pair_id, g.chosen, g.rejected, "
        f"g.chosen - g.rejected as gap from g {cluster_join} "
        f"where {sign} * (g.chosen - g.rejected) > 0 "
        f"order by {sign} * (g.chosen - g.rejected) desc, g.pair_id limit {int(limit)}",
        [*params, *cluster_params],
    )


def correlated(data: TriageData, concept_id: str, limit: int = 6) -> list[dict[str, Any]]:
    """Concepts whose per-pair gap moves with this one's, on a seeded sample of pairs."""
    gap = _gap_sql(data, concept_id)
    if gap is None or "concept_scores" not in _views(data):
        return []
    sql, params = gap
    return data.query(
        f"with s as (select pair_id from pairs where dataset = ? "
        "using sample reservoir(2000 rows) repeatable (7)), "
        f"cands as (select concept_id, any_value(label) as label from {data.source} "
        "where scope = 'global' and concept_id <> ? group by concept_id "
        "order by max(abs(d)) desc limit 60), "
        f"g as ({sql}), "
        "o as (select concept_id, pair_id, sum(case side when 'chosen' then score "
        "when 'rejected' then -score else 0 end) as gap from concept_scores "
        "where dataset = ? and concept_id in (select concept_id from cands) "
        "and pair_id in (select pair_id from s) group by all) "
        "select c.concept_id, c.label, corr(coalesce(g.chosen - g.rejected, 0), "
        "coalesce(o.gap, 0)) as r from s cross join cands c "
        "left join g on g.pair_id = s.pair_id "
        "left join o on o.pair_id = s.pair_id and o.concept_id = c.concept_id "
        "group by c.concept_id, c.label having r is not null and not isnan(r) "
        f"order by abs(r) desc limit {int(limit)}",
        [slug(data.dataset), concept_id, *params, slug(data.dataset)],
    )


def contexts(data: TriageData, concept: dict[str, Any], limit: int = 6) -> list[dict[str, Any]]:
    """Top-activating contexts: the feature card's, else regex matches in driving pairs."""
    concept_id = str(concept["concept_id"])
    parts = concept_id.split(":")
    if concept_id.startswith("sae:") and len(parts) == 3 and "features" in data.tables:
        rows = data.query(
            "select contexts from features where sae = ? and feature = ?",
            [slug(parts[1]), int(parts[2])],
        )
        if rows and rows[0]["contexts"]:
            return list(json.loads(rows[0]["contexts"]))[:limit]
        return []
    pattern = concept_pattern(concept)
    if pattern is None:
        return []
    out = []
    for row in driving_pairs(data, concept_id, "chosen", None, limit=limit * 3):
        view = pair(data, row["pair_id"], concept_id)
        if view is None:
            continue
        for side in ("chosen", "rejected"):
            match = pattern.search(view.texts[side])
            if match:
                text = view.texts[side]
                out.append(
                    {
                        "pair_id": view.pair_id,
                        "side": side,
                        "act": row[side],
                        "text_before": text[max(0, match.start() - 40) : match.start()],
                        "token": match.group(0),
                        "text_after": text[match.end() : match.end() + 40],
                    }
                )
        if len(out) >= limit:
            break
    return out[:limit]


def pair(data: TriageData, pair_id: str, concept_id: str | None = None) -> PairView | None:
    """One pair in full, with the concept's token activations when it is an SAE feature."""
    rows = data.query(
        "select pair_id, prompt, chosen, rejected from pairs "
        "where dataset = ? and pair_id = ? limit 1",
        [slug(data.dataset), pair_id],
    )
    if not rows:
        return None
    row = rows[0]
    try:
        prompt = json.loads(row["prompt"])
    except (TypeError, ValueError):
        prompt = [{"role": "user", "content": str(row["prompt"])}]
    view = PairView(pair_id, prompt, {"chosen": row["chosen"], "rejected": row["rejected"]})
    if "spans" in data.tables:
        for span in data.query(
            "select side, tokens from spans where dataset = ? and pair_id = ?",
            [slug(data.dataset), pair_id],
        ):
            view.tokens.setdefault(span["side"], list(span["tokens"] or []))
    parts = (concept_id or "").split(":")
    if len(parts) == 3 and parts[0] == "sae" and "token_features" in data.tables:
        for tok in data.query(
            "select side, pos, act from token_features where dataset = ? "
            "and sae = ? and feature = ? and pair_id = ?",
            [slug(data.dataset), slug(parts[1]), int(parts[2]), pair_id],
        ):
            view.activations.setdefault(tok["side"], {})[int(tok["pos"])] = float(tok["act"])
    if "clusters" in data.tables and data.analysis:
        found = data.query(
            "select data_cluster from clusters where dataset = ? and analysis = ? and pair_id = ?",
            [slug(data.dataset), data.analysis, pair_id],
        )
        view.data_cluster = found[0]["data_cluster"] if found else None
    return view


def _views(data: TriageData) -> set[str]:
    return {r["view_name"] for r in data.query("select view_name from duckdb_views()")}


def concept_pattern(concept: dict[str, Any]) -> re.Pattern[str] | None:
    """The regex of a lexical concept when its source names one."""
    try:
        source = json.loads(concept.get("source") or "{}")
    except (TypeError, ValueError):
        return None
    pattern = source.get("pattern") if isinstance(source, dict) else None
    if not pattern:
        return None
    try:
        return re.compile(pattern, re.MULTILINE)  # as sculpt.concepts.lexical compiles it
    except re.error:
        return None
