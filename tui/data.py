"""The triage app's queries: DuckDB over the lake's views, paged, never a whole table in Python."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb

from core.lake import Lake, slug

SORT_COLUMNS = ("rank", "delta_min", "delta", "d", "q", "n_in", "split_half_ok", "label")
"""Columns the hypotheses table can be sorted by, in the order `s` cycles through them."""
SCOPES = ("global", "conditional", "prompt")
LEANS = ("chosen", "rejected")
KINDS = ("sae_feature", "feature_cluster", "lexical", "ngram", "vector", "probe")
PAGE_SIZE = 100
ROW_COLUMNS = (
    "hypothesis_id, scope, concept_id, label, kind, data_cluster, n, n_in, delta, "
    "ci_lo, ci_hi, d, q, split_half_ok, delta_min, length_only, lean, chosen_rate, "
    "rejected_rate, rank"
)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Filters:
    """What the hypotheses table shows; every field narrows it (None = any)."""

    scope: str | None = None
    lean: str | None = None
    kind: str | None = None
    q_max: float | None = None
    split_half_only: bool = False
    text: str = ""

    def where(self, cached: bool = True) -> tuple[str, list[Any]]:
        """SQL and parameters; `cached` searches the per-concept text table, else the view."""
        clauses, params = ["true"], []
        for column in ("scope", "lean", "kind"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.q_max is not None:
            clauses.append("q <= ?")
            params.append(self.q_max)
        if self.split_half_only:
            clauses.append("split_half_ok")
        if self.text.strip():
            if cached:  # one row per concept, not per hypothesis: ~10x less text to scan
                clauses.append(
                    "ckey in (select ckey from concept_search where contains(search, ?))"
                )
                params.append(self.text.strip().lower())
            else:
                clauses.append("lower(coalesce(label, '') || ' ' || concept_id) like ?")
                params.append("%" + self.text.strip().lower() + "%")
        return " and ".join(clauses), params

    def describe(self) -> str:
        """Only the active narrowings, in words: `scope=global · q≤0.05 · “sorry”`."""
        parts = [f"{c}={getattr(self, c)}" for c in ("scope", "lean", "kind") if getattr(self, c)]
        if self.q_max is not None:
            parts.append(f"q≤{self.q_max:g}")
        if self.split_half_only:
            parts.append("split-half ✓")
        if self.text.strip():
            parts.append(f"“{self.text.strip()}”")
        return " · ".join(parts) or "no filters"


@dataclass
class Sort:
    column: str = "rank"
    descending: bool = False

    def sql(self, tiebreak: str = "hypothesis_id") -> str:
        direction = "desc" if self.descending else "asc"
        if self.column == "rank":
            # Ranks are per scope: dataset-wide findings first, then the conditional views.
            scope = "case scope when 'global' then 0 when 'conditional' then 1 else 2 end"
            return f"{scope} {direction}, rank {direction} nulls last, {tiebreak}"
        key = "abs(delta)" if self.column == "delta" else self.column
        return f"{key} {direction} nulls last, {tiebreak}"

    def describe(self) -> str:
        name = "|Δ|" if self.column == "delta" else self.column
        return f"sorted by {name} {'↓' if self.descending else '↑'}"


@dataclass
class Page:
    rows: list[dict[str, Any]]
    offset: int
    total: int
    filters: Filters
    sort: Sort


@dataclass
class PairView:
    pair_id: str
    prompt: list[dict[str, str]]
    texts: dict[str, str]
    tokens: dict[str, list[str]] = field(default_factory=dict)
    activations: dict[str, dict[int, float]] = field(default_factory=dict)
    data_cluster: int | None = None


def latest_analysis(lake: Lake, dataset: str) -> str | None:
    """The analysis to triage: the newest `analyze` run in the manifest whose partition exists
    (the rule of core.analyze.latest_analysis, read here without importing scipy), else the
    newest partition on disk."""
    folder = lake.partition_dir("hypotheses", {"dataset": dataset})
    on_disk = (
        {
            p.name.split("=", 1)[1]: p
            for p in folder.glob("analysis=*")
            if p.is_dir() and any(p.rglob("*.parquet"))
        }
        if folder.exists()
        else {}
    )
    runs = [
        m
        for m in lake.manifest()
        if m.get("stage") == "analyze"
        and m.get("dataset") == dataset
        and slug(str(m.get("analysis"))) in on_disk
    ]
    if runs:
        return slug(str(max(runs, key=lambda m: m.get("ts", 0))["analysis"]))
    if not on_disk:
        return None
    return max(on_disk, key=lambda key: on_disk[key].stat().st_mtime)


class TriageData:
    """One in-memory DuckDB per app; views over the lake, a cached copy of one analysis."""

    def __init__(self, lake: Lake, dataset: str, analysis: str | None = None) -> None:
        self.lake, self.dataset = lake, dataset
        self.tables = set(lake.tables())
        self.analysis = analysis or (
            latest_analysis(lake, dataset) if "hypotheses" in self.tables else None
        )
        self.con = lake.connect()
        self._cursors: set[duckdb.DuckDBPyConnection] = set()
        self._lock = threading.Lock()
        self.source = "hyp_src"
        if self.analysis is not None:
            self.con.execute(
                f"create view hyp_src as select * from hypotheses where dataset = "
                f"{_quote(slug(dataset))} and analysis = {_quote(self.analysis)}"
            )

    # ---- plumbing -------------------------------------------------------------------------
    def query(
        self, sql: str, params: list[Any] | None = None, cancellable: bool = True
    ) -> list[dict[str, Any]]:
        """Run on a fresh cursor so workers in threads never share one; `interrupt` stops it."""
        cursor = self.con.cursor()
        if cancellable:
            with self._lock:
                self._cursors.add(cursor)
        try:
            result = cursor.execute(sql, params or [])
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        finally:
            with self._lock:
                self._cursors.discard(cursor)
            cursor.close()

    def interrupt(self) -> None:
        with self._lock:
            for cursor in list(self._cursors):
                cursor.interrupt()

    def missing(self) -> str | None:
        """Why there is nothing to triage yet, with the command that fixes it."""
        if not self.lake.has("pairs", {"dataset": self.dataset}):
            folder = self.lake.table_dir("pairs")
            known = (
                sorted(p.name.split("=", 1)[1] for p in folder.glob("dataset=*"))
                if folder.exists()
                else []
            )
            hint = f" (the lake has: {', '.join(known)})" if known else ""
            return (
                f"no dataset {self.dataset!r} in {self.lake.root}{hint} — run "
                f"`sculpt ingest FILE --name {self.dataset}`"
            )
        if "hypotheses" not in self.tables or self.analysis is None:
            return f"no hypotheses for {self.dataset} yet — run `sculpt analyze {self.dataset}`"
        return None

    def materialize(self) -> None:
        """Copy this analysis into DuckDB tables for fast sorts and filters: the hypotheses with
        enum-coded categories, and one search text per concept (label, id, feature tokens)."""
        tokens, join = "''", ""
        if "features" in self.tables:
            join = (
                "left join features f on c.kind = 'sae_feature' and "
                "c.concept_id = 'sae:' || f.sae || ':' || cast(f.feature as varchar)"
            )
            tokens = "coalesce(f.top_tokens, '')"
        self.query(
            "create or replace table concept_search as "
            "with c as (select concept_id, any_value(label) as label, any_value(kind) as kind "
            "from hyp_src group by concept_id) "
            "select cast(row_number() over () as integer) as ckey, c.concept_id, "
            f"lower(coalesce(c.label, '') || ' ' || c.concept_id || ' ' || {tokens}) as search "
            f"from c {join}",
            cancellable=False,
        )
        for column in ("scope", "lean", "kind"):
            self.query(
                f"create type if not exists {column}_t as enum "
                f"(select distinct {column} from hyp_src where {column} is not null)",
                cancellable=False,
            )
        self.query(
            "create or replace table hyp_cache as select h.* exclude (scope, lean, kind), "
            "cast(h.scope as scope_t) as scope, cast(h.lean as lean_t) as lean, "
            "cast(h.kind as kind_t) as kind, s.ckey from hyp_src h "
            "join concept_search s using (concept_id)",
            cancellable=False,
        )
        self.source = "hyp_cache"

    # ---- the hypotheses table ---------------------------------------------------------------
    def page(self, filters: Filters, sort: Sort, offset: int = 0, limit: int = PAGE_SIZE) -> Page:
        source = self.source
        where, params = filters.where(cached=source == "hyp_cache")
        # sort narrow (row ids), then fetch the few whole rows: a top-N that carries every
        # column of a million rows costs several times more
        key = "rowid" if source == "hyp_cache" else "hypothesis_id"
        order = sort.sql(key)
        sql = (
            f"select {ROW_COLUMNS} from {source} where {key} in (select {key} from {source} "
            f"where {where} order by {order} limit {int(limit)} offset {int(offset)}) "
            f"order by {order}"
        )
        rows = self.query(sql, params)
        total = self.query(f"select count(*) as n from {source} where {where}", params)[0]["n"]
        for row in rows:  # enum-coded categories come back as str already; keep types plain
            row["scope"], row["lean"], row["kind"] = (
                str(row["scope"]),
                str(row["lean"]),
                None if row["kind"] is None else str(row["kind"]),
            )
        return Page(rows, offset, int(total), filters, sort)

    def hypotheses_for(self, concept_id: str) -> list[dict[str, Any]]:
        return self.query(
            f"select * exclude ({'ckey' if self.source == 'hyp_cache' else 'dataset'}) "
            f"from {self.source} where concept_id = ? "
            "order by scope = 'global' desc, split_half_ok desc, q asc nulls last, "
            "abs(delta) desc limit 50",
            [concept_id],
        )

    def concept(self, concept_id: str) -> dict[str, Any]:
        if "concepts" not in self.tables:
            return {"concept_id": concept_id}
        rows = self.query(
            "select * from concepts where dataset = ? and concept_id = ? limit 1",
            [slug(self.dataset), concept_id],
        )
        return rows[0] if rows else {"concept_id": concept_id}

    # ---- per-pair evidence -----------------------------------------------------------------
    def _gap_sql(self, concept_id: str) -> tuple[str, list[Any]] | None:
        """(chosen score, rejected score) per pair for one concept, from its base table."""
        parts = concept_id.split(":")
        if concept_id.startswith("sae:") and len(parts) == 3 and "span_features" in self.tables:
            return (
                "select pair_id, coalesce(max(max_act) filter (side = 'chosen'), 0) as chosen, "
                "coalesce(max(max_act) filter (side = 'rejected'), 0) as rejected "
                "from span_features where dataset = ? and sae = ? and feature = ? "
                "group by pair_id",
                [slug(self.dataset), slug(parts[1]), int(parts[2])],
            )
        if "concept_span_scores" in self.tables:
            return (
                "select pair_id, coalesce(max(score) filter (side = 'chosen'), 0) as chosen, "
                "coalesce(max(score) filter (side = 'rejected'), 0) as rejected "
                "from concept_span_scores where dataset = ? and concept_id = ? "
                "group by pair_id",
                [slug(self.dataset), concept_id],
            )
        return None

    def gap_histogram(self, concept_id: str, bins: int = 11) -> list[tuple[float, float, int]]:
        """Counts of the per-pair gap (chosen − rejected), pairs without a score count as 0."""
        gap = self._gap_sql(concept_id)
        if gap is None or "pairs" not in self.tables:
            return []
        sql, params = gap
        rows = self.query(
            f"with g as ({sql}), a as (select coalesce(g.chosen - g.rejected, 0) as gap "
            "from pairs p left join g using (pair_id) where p.dataset = ?), "
            "r as (select min(gap) lo, max(gap) hi from a) "
            f"select least(cast(floor((gap - lo) / nullif(hi - lo, 0) * {bins}) as int), "
            f"{bins - 1}) as bin, count(*) as n, any_value(lo) lo, any_value(hi) hi "
            "from a, r group by 1 order by 1",
            [*params, slug(self.dataset)],
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
        self, concept_id: str, lean: str, data_cluster: int | None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The pairs that push this hypothesis most, largest gap in its direction first."""
        gap = self._gap_sql(concept_id)
        if gap is None:
            return []
        sql, params = gap
        sign = 1 if lean == "chosen" else -1
        cluster_join, cluster_params = "", []
        if data_cluster is not None and "clusters" in self.tables:
            cluster_join = (
                "join clusters c on c.pair_id = g.pair_id and c.dataset = ? "
                "and c.analysis = ? and c.data_cluster = ?"
            )
            cluster_params = [slug(self.dataset), self.analysis, int(data_cluster)]
        return self.query(
            f"with g as ({sql}) select g.pair_id, g.chosen, g.rejected, "
            f"g.chosen - g.rejected as gap from g {cluster_join} "
            f"where {sign} * (g.chosen - g.rejected) > 0 "
            f"order by {sign} * (g.chosen - g.rejected) desc, g.pair_id limit {int(limit)}",
            [*params, *cluster_params],
        )

    def correlated(self, concept_id: str, limit: int = 6) -> list[dict[str, Any]]:
        """Concepts whose per-pair gap moves with this one's, on a seeded sample of pairs."""
        gap = self._gap_sql(concept_id)
        if gap is None or "concept_scores" not in self._views():
            return []
        sql, params = gap
        return self.query(
            f"with s as (select pair_id from pairs where dataset = ? "
            "using sample reservoir(2000 rows) repeatable (7)), "
            f"cands as (select concept_id, any_value(label) as label from {self.source} "
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
            [slug(self.dataset), concept_id, *params, slug(self.dataset)],
        )

    def contexts(self, concept: dict[str, Any], limit: int = 6) -> list[dict[str, Any]]:
        """Top-activating contexts: the feature card's, else regex matches in driving pairs."""
        concept_id = str(concept["concept_id"])
        parts = concept_id.split(":")
        if concept_id.startswith("sae:") and len(parts) == 3 and "features" in self.tables:
            rows = self.query(
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
        for row in self.driving_pairs(concept_id, "chosen", None, limit=limit * 3):
            pair = self.pair(row["pair_id"], concept_id)
            if pair is None:
                continue
            for side in ("chosen", "rejected"):
                match = pattern.search(pair.texts[side])
                if match:
                    text = pair.texts[side]
                    out.append(
                        {
                            "pair_id": pair.pair_id,
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

    def pair(self, pair_id: str, concept_id: str | None = None) -> PairView | None:
        rows = self.query(
            "select pair_id, prompt, chosen, rejected from pairs "
            "where dataset = ? and pair_id = ? limit 1",
            [slug(self.dataset), pair_id],
        )
        if not rows:
            return None
        row = rows[0]
        try:
            prompt = json.loads(row["prompt"])
        except (TypeError, ValueError):
            prompt = [{"role": "user", "content": str(row["prompt"])}]
        view = PairView(pair_id, prompt, {"chosen": row["chosen"], "rejected": row["rejected"]})
        if "spans" in self.tables:
            for span in self.query(
                "select side, tokens from spans where dataset = ? and pair_id = ?",
                [slug(self.dataset), pair_id],
            ):
                view.tokens.setdefault(span["side"], list(span["tokens"] or []))
        parts = (concept_id or "").split(":")
        if len(parts) == 3 and parts[0] == "sae" and "token_features" in self.tables:
            for tok in self.query(
                "select side, pos, act from token_features where dataset = ? "
                "and sae = ? and feature = ? and pair_id = ?",
                [slug(self.dataset), slug(parts[1]), int(parts[2]), pair_id],
            ):
                view.activations.setdefault(tok["side"], {})[int(tok["pos"])] = float(tok["act"])
        if "clusters" in self.tables and self.analysis:
            found = self.query(
                "select data_cluster from clusters where dataset = ? and "
                "analysis = ? and pair_id = ?",
                [slug(self.dataset), self.analysis, pair_id],
            )
            view.data_cluster = found[0]["data_cluster"] if found else None
        return view

    def _views(self) -> set[str]:
        return {r["view_name"] for r in self.query("select view_name from duckdb_views()")}

    def close(self) -> None:
        self.con.close()


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
        return re.compile(pattern, re.MULTILINE)  # as core.lexical compiles it
    except re.error:
        return None
