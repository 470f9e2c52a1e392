"""The triage app's data: one DuckDB over the lake's views, and the hypotheses table's filters,
sort and pages, never a whole table in Python. It is the `Reader` that a concept's evidence
(sculpt.concepts.evidence, shared with the report) is read through."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

from sculpt.analysis.config import latest_analysis
from sculpt.concepts.evidence import cluster_names
from sculpt.lake.store import Lake, slug

SORT_COLUMNS = ("d", "share", "q", "rank", "delta_min", "n_in", "split_half_ok", "label", "delta")
"""Columns the hypotheses table can be sorted by, in the order `s` cycles through them: the
scales every kind of concept shares come first (Δ is in each kind's own units)."""
SORT_WORDS = {
    "d": "effect size d",
    "share": "share of pairs",
    "q": "q (FDR)",
    "rank": "the analysis's rank",
    "delta_min": "Δmin (weaker half)",
    "n_in": "pairs in cluster",
    "split_half_ok": "split-half",
    "label": "name",
    "delta": "|Δ| (own units)",
}
"""The sort in words, for the status line; d and share of pairs sort by size, either way."""
SORT_KEYS = {
    "d": "abs(d)",
    "share": "abs(chosen_rate - rejected_rate)",
    "delta": "abs(delta)",
}
NATURAL_DESCENDING = frozenset({"d", "share", "delta_min", "delta", "n_in", "split_half_ok"})
"""Columns whose best rows are the largest: `s` sorts them largest first."""
SCOPES = ("global", "conditional", "prompt")
LEANS = ("chosen", "rejected", "none", "untested")
"""Every lean a hypothesis can have: "none" (|Δ| within 1e-6 of 0) and "untested" (no
information) are listed too, so they can be found, not only hidden."""
KINDS = ("sae_feature", "feature_cluster", "lexical", "ngram", "vector", "probe")
PAGE_SIZE = 100
ROW_COLUMNS = (
    "hypothesis_id, scope, concept_id, label, kind, data_cluster, n, n_in, delta, "
    "ci_lo, ci_hi, d, q, split_half_ok, delta_min, length_only, lean, chosen_rate, "
    "rejected_rate, rank"
)


FINDINGS_VIEW = (
    "create view find_src as select finding_id as hypothesis_id, 'finding' as scope, "
    "finding_id as concept_id, label, kinds as kind, cast(null as integer) as data_cluster, n, "
    "n_in, delta, ci_lo, ci_hi, d, q, split_half_ok, delta_min, length_only, lean, "
    "chosen_share as chosen_rate, rejected_share as rejected_rate, rank, n_members, members, "
    "label_concept, lower(coalesce(label, '') || ' ' || members) as search "
    "from findings where {where}"
)
"""Findings as rows of the hypotheses table's shape (`chosen_rate` = share of pairs whose
evidence favours chosen), so one table, sort and filter code shows both."""


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

    def where(self, cached: bool = True, findings: bool = False) -> tuple[str, list[Any]]:
        """SQL and parameters; `cached` searches the per-concept text table, else the view;
        `findings` narrows the findings list (no scope; a kind is any member's)."""
        clauses, params = ["true"], []
        for column in ("lean",) if findings else ("scope", "lean", "kind"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if findings and self.kind:
            clauses.append("contains(kind, ?)")
            params.append(self.kind)
        if self.q_max is not None:
            clauses.append("q <= ?")
            params.append(self.q_max)
        if self.split_half_only:
            clauses.append("split_half_ok")
        if self.text.strip() and findings:
            clauses.append("contains(search, ?)")
            params.append(self.text.strip().lower())
        elif self.text.strip():
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
    column: str = "d"
    descending: bool = True

    def sql(self, tiebreak: str = "hypothesis_id") -> str:
        direction = "desc" if self.descending else "asc"
        if self.column == "rank":
            # Ranks are per scope: dataset-wide findings first, then the conditional views.
            scope = "case scope when 'global' then 0 when 'conditional' then 1 else 2 end"
            return f"{scope} {direction}, rank {direction} nulls last, {tiebreak}"
        key = SORT_KEYS.get(self.column, self.column)
        return f"{key} {direction} nulls last, {tiebreak}"

    def describe(self) -> str:
        if self.column == "label":
            order = "Z→A" if self.descending else "A→Z"
        else:
            order = "largest first" if self.descending else "smallest first"
        return f"sorted by {SORT_WORDS[self.column]}, {order}"


@dataclass
class Page:
    rows: list[dict[str, Any]]
    offset: int
    total: int
    filters: Filters
    sort: Sort
    findings: bool = False
    """Rows are findings (else hypotheses)."""


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
        self._cluster_names: dict[int, str] | None = None
        self.source = "hyp_src"
        self.has_findings = False
        self.find_source, self.members_source = "find_src", "members_src"
        """The analysis grouped its concepts into findings: the list shows those first."""
        if self.analysis is not None:
            where = f"dataset = {_quote(slug(dataset))} and analysis = {_quote(self.analysis)}"
            self.con.execute(f"create view hyp_src as select * from hypotheses where {where}")
            if {"findings", "finding_members"} <= self.tables:
                self.con.execute(FINDINGS_VIEW.format(where=where))
                self.con.execute(
                    f"create view members_src as select * from finding_members where {where}"
                )
                found = self.query("select count(*) as n from find_src", cancellable=False)
                self.has_findings = bool(found[0]["n"])

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
        """Copy this analysis into DuckDB tables for fast sorts and filters: the findings (first:
        fewer, and the list shown first), the hypotheses with enum-coded categories, and one
        search text per concept (label, id, feature tokens)."""
        if self.has_findings:
            for view, table in (("find_src", "find_cache"), ("members_src", "members_cache")):
                self.query(
                    f"create or replace table {table} as select * from {view}", cancellable=False
                )
            self.find_source, self.members_source = "find_cache", "members_cache"
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
    def page(
        self,
        filters: Filters,
        sort: Sort,
        offset: int = 0,
        limit: int = PAGE_SIZE,
        findings: bool = False,
    ) -> Page:
        """One page of hypotheses, or of findings (as rows of the same shape) with `findings`."""
        if findings:
            return self._findings_page(filters, sort, offset, limit)
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

    def _findings_page(self, filters: Filters, sort: Sort, offset: int, limit: int) -> Page:
        where, params = filters.where(cached=False, findings=True)
        order = sort.sql("hypothesis_id")
        source = self.find_source
        rows = self.query(
            f"select * exclude (search) from {source} where {where} order by {order} "
            f"limit {int(limit)} offset {int(offset)}",
            params,
        )
        total = self.query(f"select count(*) as n from {source} where {where}", params)[0]["n"]
        for row in rows:
            row["members"] = json.loads(row["members"] or "[]")
        return Page(rows, offset, int(total), filters, sort, findings=True)

    def finding(self, finding_id: str) -> dict[str, Any] | None:
        """One finding as a list row, or None when this analysis has no such finding."""
        if not self.has_findings:
            return None
        found = self.query(
            f"select * exclude (search) from {self.find_source} where hypothesis_id = ?",
            [finding_id],
        )
        return found[0] if found else None

    def members(self, finding_id: str) -> list[dict[str, Any]]:
        """A finding's members, anchor first, as rows of the hypotheses table's shape."""
        rows = self.query(
            "select concept_id, position, role, kind, label, agreement, hypothesis_id as hyp, "
            "delta, ci_lo, ci_hi, d, q, split_half_ok, lean, chosen_rate, rejected_rate "
            f"from {self.members_source} where finding_id = ? order by position",
            [finding_id],
        )
        for r in rows:
            r.update(
                hypothesis_id=f"m:{finding_id}:{r['concept_id']}",
                scope="member",
                finding_id=finding_id,
                data_cluster=None,
                n=None,
                n_in=None,
                delta_min=None,
                length_only=False,
                rank=None,
            )
        return rows

    def finding_covers(self) -> dict[str, str]:
        """Member concept id → the finding that covers it (a decision on it covers them)."""
        if not self.has_findings:
            return {}
        found = self.query("select concept_id, finding_id from members_src", cancellable=False)
        return {r["concept_id"]: r["finding_id"] for r in found}

    def hypotheses_for(self, concept_id: str) -> list[dict[str, Any]]:
        return self.query(
            f"select * exclude ({'ckey' if self.source == 'hyp_cache' else 'dataset'}) "
            f"from {self.source} where concept_id = ? "
            "order by scope = 'global' desc, split_half_ok desc, q asc nulls last, "
            "abs(delta) desc limit 50",
            [concept_id],
        )

    def cluster_name(self, data_cluster: int | None) -> str:
        """`k3 (rice · cook · best)`: a data cluster named by what its prompts are about; the
        names are computed once, on first use (call it from a worker)."""
        if data_cluster is None:
            return "all pairs"
        if self._cluster_names is None:
            try:
                self._cluster_names = cluster_names(self)
            except duckdb.Error:
                return f"k{data_cluster}"
        name = self._cluster_names.get(int(data_cluster))
        return f"k{data_cluster} ({name})" if name else f"k{data_cluster}"

    def correlation_candidates(self, limit: int = 60) -> list[dict[str, Any]]:
        """The concepts a card's correlations are computed against: the strongest by |d|."""
        return self.query(
            f"select concept_id, any_value(label) as label from {self.source} "
            "where scope = 'global' group by concept_id "
            f"order by max(abs(d)) desc, concept_id limit {int(limit)}"
        )

    def close(self) -> None:
        self.con.close()
