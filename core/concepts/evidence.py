"""The evidence behind one concept, read from the lake: its highlight pattern, the per-pair gap
and its histogram, the pairs that support or contradict its lean, one pair in full, the data
clusters by name. Where it fires, as marked text, is in sculpt.concepts.contexts.

The triage TUI and the HTML report both read evidence through these functions (and the
report's cards through the same), so they show the same pairs and mark the same text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import duckdb

from sculpt.lake.store import fetch_dicts, slug

Evidence = Literal["supporting", "counter", "both"]
"""Which pairs to read: the gap goes the concept's way, goes against it, or both sides fire."""
EVIDENCE: tuple[Evidence, ...] = ("supporting", "counter", "both")


class Reader(Protocol):
    """A DuckDB over the lake's views for one dataset (and the analysis being read)."""

    tables: set[str]
    dataset: str
    analysis: str | None

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass
class LakeReader:
    """A `Reader` over an open connection (the report's; the TUI has its own, cancellable)."""

    con: duckdb.DuckDBPyConnection
    tables: set[str]
    dataset: str
    analysis: str | None = None

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        return fetch_dicts(self.con, sql, params or [])


@dataclass
class PairView:
    """One pair in full: prompt, both responses, decoded tokens and the concept's activations."""

    pair_id: str
    row: int | None
    prompt: list[dict[str, str]]
    texts: dict[str, str]
    tokens: dict[str, list[str]] = field(default_factory=dict)
    activations: dict[str, dict[int, float]] = field(default_factory=dict)
    data_cluster: int | None = None


# ---- what a concept is -------------------------------------------------------------------------
def parse_sae(concept_id: str) -> tuple[str, int] | None:
    """(sae id, feature) of an `sae:<sae>:<feature>` concept, else None."""
    if not concept_id.startswith("sae:"):
        return None
    sae_id, _, feature = concept_id[4:].rpartition(":")
    return (sae_id, int(feature)) if feature.isdigit() and sae_id else None


def concept(reader: Reader, concept_id: str) -> dict[str, Any]:
    """The concept's row in the concepts table (label, kind, source), else just its id."""
    if "concepts" not in reader.tables:
        return {"concept_id": concept_id}
    found = reader.query(
        "select * from concepts where dataset = ? and concept_id = ? limit 1",
        [slug(reader.dataset), concept_id],
    )
    return found[0] if found else {"concept_id": concept_id}


def highlight_pattern(concept_row: dict[str, Any]) -> re.Pattern[str] | None:
    """What to mark in text for a lexical or n-gram concept (None: nothing to mark)."""
    concept_id = str(concept_row.get("concept_id", ""))
    if concept_id.startswith("ngram:"):
        # n-grams are words and punctuation joined by spaces ("Great question !"): match the
        # words with any or no whitespace between them, as they appear in the text.
        words = r"\s*".join(re.escape(w) for w in concept_id[6:].split())
        return re.compile(rf"(?<!\w){words}(?!\w)") if words else None
    try:
        source = json.loads(concept_row.get("source") or "{}")
    except (TypeError, ValueError):
        return None
    pattern = source.get("pattern") if isinstance(source, dict) else None
    if not isinstance(pattern, str) or not pattern:
        return None
    from sculpt.concepts.lexical import PatternError, stored_detector

    try:  # the engine lexical scores with (RE2, linear in the text), built-ins as defined today
        return stored_detector(concept_id, source).compiled()
    except PatternError:
        return None


def matches(pattern: re.Pattern[str] | None, text: str | None) -> list[tuple[int, int]]:
    """Spans of the pattern's non-empty matches in `text` (at most 50)."""
    if pattern is None or not text:
        return []
    skip = pattern.groupindex.get("skip")  # lexical's stand-in for a negative lookahead
    spans = (m.span() for m in pattern.finditer(text) if skip is None or m.start(skip) < 0)
    return [(lo, hi) for lo, hi in spans if hi > lo][:50]


# ---- the per-pair gap --------------------------------------------------------------------------
def gap_sql(reader: Reader, concept_id: str) -> tuple[str, list[Any]] | None:
    """(pair_id, chosen score, rejected score) per pair for one concept, from its base table."""
    sae_ref = parse_sae(concept_id)
    if sae_ref is not None and "span_features" in reader.tables:
        return (
            "select pair_id, coalesce(max(max_act) filter (side = 'chosen'), 0) as chosen, "
            "coalesce(max(max_act) filter (side = 'rejected'), 0) as rejected "
            "from span_features where dataset = ? and sae = ? and feature = ? "
            "group by pair_id",
            [slug(reader.dataset), slug(sae_ref[0]), sae_ref[1]],
        )
    if sae_ref is None and "concept_span_scores" in reader.tables:
        return (
            "select pair_id, coalesce(max(score) filter (side = 'chosen'), 0) as chosen, "
            "coalesce(max(score) filter (side = 'rejected'), 0) as rejected "
            "from concept_span_scores where dataset = ? and concept_id = ? "
            "group by pair_id",
            [slug(reader.dataset), concept_id],
        )
    return None


def gap_histogram(
    reader: Reader, concept_id: str, bins: int = 11, data_cluster: int | None = None
) -> list[tuple[float, float, int, int]]:
    """Counts of the per-pair gap (chosen − rejected) per bin, as (lo, hi, n, n_rest); pairs
    without a score count as 0. With `data_cluster`, n counts the cluster's pairs and n_rest the
    rest of the active pool (silent pairs in neither, DESIGN §4); without, n_rest is 0."""
    gap = gap_sql(reader, concept_id)
    if gap is None or "pairs" not in reader.tables:
        return []
    sql, params = gap
    inside, join, join_params = "true", "", []
    if data_cluster is not None and "clusters" in reader.tables and reader.analysis:
        inside = f"c.data_cluster = {int(data_cluster)}"
        join = (
            "join clusters c on c.pair_id = p.pair_id and c.dataset = ? and c.analysis = ? "
            "and not coalesce(c.silent, false)"
        )
        join_params = [slug(reader.dataset), reader.analysis]
    found = reader.query(
        f"with g as ({sql}), a as (select coalesce(g.chosen - g.rejected, 0) as gap, "
        f"{inside} as inside from pairs p left join g using (pair_id) {join} "
        "where p.dataset = ?), "
        "r as (select min(gap) lo, max(gap) hi from a) "
        f"select least(cast(floor((gap - lo) / nullif(hi - lo, 0) * {int(bins)}) as int), "
        f"{int(bins) - 1}) as bin, count(*) filter (inside) as n, "
        "count(*) filter (not inside) as n_rest, any_value(lo) lo, any_value(hi) hi "
        "from a, r group by 1 order by 1",
        [*params, *join_params, slug(reader.dataset)],
    )
    if not found:
        return []
    lo, hi = float(found[0]["lo"]), float(found[0]["hi"])
    if hi == lo:
        return [(lo, hi, sum(int(r["n"]) for r in found), sum(int(r["n_rest"]) for r in found))]
    width = (hi - lo) / bins
    counts = {int(r["bin"]): (int(r["n"]), int(r["n_rest"])) for r in found}
    return [(lo + i * width, lo + (i + 1) * width, *counts.get(i, (0, 0))) for i in range(bins)]


STOP_WORDS = frozenset(
    "the and for are but not you your with this that have has had was were will would can could "
    "should what when where which who why how does did doing done about into from over under "
    "than then them they their there these those its our out all any some more most such "
    "only own same very just also like get got make made give tell want need please role user "
    "content system assistant case".split()
)
"""Words too common to say what a data cluster's prompts are about (and the JSON keys)."""


def cluster_names(reader: Reader, words: int = 3) -> dict[int, str]:
    """A name per data cluster: the prompt words most over-represented in it (share of its
    prompts holding the word minus the share of all active prompts), e.g. `rice · cook · best`."""
    if not {"pairs", "clusters"} <= reader.tables or not reader.analysis:
        return {}
    stop = ", ".join("?" for _ in STOP_WORDS)
    found = reader.query(
        "with p as (select c.data_cluster as k, p.pair_id, lower(p.prompt) as text "
        "from pairs p join clusters c on c.pair_id = p.pair_id and c.dataset = ? "
        "and c.analysis = ? where p.dataset = ? and not coalesce(c.silent, false) "
        "and c.data_cluster >= 0), "
        "w as (select distinct k, pair_id, unnest(regexp_split_to_array(text, '[^a-z]+')) "
        "as word from p), "
        f"v as (select * from w where length(word) >= 3 and word not in ({stop})), "
        "nk as (select k, count(*) as n_k from p group by k), "
        "tot as (select count(*) as n from p), "
        "cw as (select word, count(*) as n_w from v group by word), "
        "kw as (select k, word, count(*) as n_kw from v group by k, word having count(*) >= 2) "
        "select kw.k, kw.word, kw.n_kw / nk.n_k - cw.n_w / tot.n as lift "
        "from kw join nk using (k) join cw using (word) cross join tot "
        "qualify row_number() over (partition by kw.k order by lift desc, kw.word) "
        f"<= {int(words)} order by kw.k, lift desc, kw.word",
        [slug(reader.dataset), reader.analysis, slug(reader.dataset), *sorted(STOP_WORDS)],
    )
    names: dict[int, list[str]] = {}
    for r in found:
        if r["lift"] > 0:
            names.setdefault(int(r["k"]), []).append(str(r["word"]))
    return {k: " · ".join(v) for k, v in names.items()}


def evidence_pairs(
    reader: Reader,
    concept_id: str,
    lean: str,
    which: Evidence = "supporting",
    data_cluster: int | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Pairs with their scores and gap: those whose gap goes the way the concept leans (largest
    first), those against it (counter-examples, largest first), or those where both sides fire."""
    gap = gap_sql(reader, concept_id)
    if gap is None:
        return []
    sql, params = gap
    sign = -1 if lean == "rejected" else 1
    where, order = {
        "supporting": (
            f"{sign} * (g.chosen - g.rejected) > 0",
            f"{sign} * (g.chosen - g.rejected) desc",
        ),
        "counter": (
            f"{sign} * (g.chosen - g.rejected) < 0",
            f"{sign} * (g.chosen - g.rejected) asc",
        ),
        "both": ("g.chosen > 0 and g.rejected > 0", "least(g.chosen, g.rejected) desc"),
    }[which]
    cluster_join, cluster_params = "", []
    if data_cluster is not None and "clusters" in reader.tables and reader.analysis:
        cluster_join = (
            "join clusters c on c.pair_id = g.pair_id and c.dataset = ? "
            "and c.analysis = ? and c.data_cluster = ?"
        )
        cluster_params = [slug(reader.dataset), reader.analysis, int(data_cluster)]
    return reader.query(
        f"with g as ({sql}) select g.pair_id, g.chosen, g.rejected, "
        f"g.chosen - g.rejected as gap from g {cluster_join} "
        f"where {where} order by {order}, g.pair_id limit {int(limit)}",
        [*params, *cluster_params],
    )


def evidence_counts(
    reader: Reader, concept_id: str, lean: str, data_cluster: int | None = None
) -> dict[str, int]:
    """How many pairs each kind of evidence holds (supporting, counter, both)."""
    gap = gap_sql(reader, concept_id)
    if gap is None:
        return dict.fromkeys(EVIDENCE, 0)
    sql, params = gap
    sign = -1 if lean == "rejected" else 1
    cluster_join, cluster_params = "", []
    if data_cluster is not None and "clusters" in reader.tables and reader.analysis:
        cluster_join = (
            "join clusters c on c.pair_id = g.pair_id and c.dataset = ? "
            "and c.analysis = ? and c.data_cluster = ?"
        )
        cluster_params = [slug(reader.dataset), reader.analysis, int(data_cluster)]
    found = reader.query(
        f"with g as ({sql}) select "
        f"count(*) filter ({sign} * (g.chosen - g.rejected) > 0) as supporting, "
        f"count(*) filter ({sign} * (g.chosen - g.rejected) < 0) as counter, "
        "count(*) filter (g.chosen > 0 and g.rejected > 0) as both "
        f"from g {cluster_join}",
        [*params, *cluster_params],
    )
    row = found[0] if found else {}
    return {k: int(row.get(k) or 0) for k in EVIDENCE}


def correlated(
    reader: Reader, concept_id: str, candidates: list[dict[str, Any]], limit: int = 6
) -> list[dict[str, Any]]:
    """Of `candidates` (concept_id, label), those whose per-pair gap moves with this concept's,
    as Pearson r on a seeded sample of ≤2,000 pairs."""
    gap = gap_sql(reader, concept_id)
    others = [c for c in candidates if c["concept_id"] != concept_id]
    if gap is None or not others or "pairs" not in reader.tables:
        return []
    sql, params = gap
    values = ", ".join("(?, ?)" for _ in others)
    cand_params = [x for c in others for x in (c["concept_id"], c.get("label"))]
    return reader.query(
        "with s as (select pair_id from pairs where dataset = ? "
        "using sample reservoir(2000 rows) repeatable (7)), "
        f"cands(concept_id, label) as (values {values}), "
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
        f"order by abs(r) desc, c.concept_id limit {int(limit)}",
        [slug(reader.dataset), *cand_params, *params, slug(reader.dataset)],
    )


# ---- pairs and tokens --------------------------------------------------------------------------
def pair_rows(reader: Reader, ids: list[str]) -> list[dict[str, Any]]:
    """pair_id, row, prompt, chosen, rejected of the wanted pairs, in the order asked."""
    if not ids or "pairs" not in reader.tables:
        return []
    marks = ", ".join("?" for _ in ids)
    found = reader.query(
        "select pair_id, row, prompt, chosen, rejected from pairs "
        f"where dataset = ? and pair_id in ({marks})",
        [slug(reader.dataset), *ids],
    )
    by_id = {r["pair_id"]: r for r in found}
    return [by_id[i] for i in ids if i in by_id]


def pair(reader: Reader, pair_id: str, concept_id: str | None = None) -> PairView | None:
    """One pair in full, with the concept's token activations when it is an SAE feature."""
    found = pair_rows(reader, [pair_id])
    if not found:
        return None
    row = found[0]
    view = PairView(
        pair_id,
        row["row"],
        prompt_messages(row["prompt"]),
        {"chosen": row["chosen"] or "", "rejected": row["rejected"] or ""},
    )
    for (_, side), tokens in span_tokens(
        reader, [(pair_id, "chosen"), (pair_id, "rejected")]
    ).items():
        view.tokens[side] = tokens
    sae_ref = parse_sae(concept_id or "")
    if sae_ref is not None and "token_features" in reader.tables:
        for tok in reader.query(
            "select side, pos, act from token_features where dataset = ? "
            "and sae = ? and feature = ? and pair_id = ?",
            [slug(reader.dataset), slug(sae_ref[0]), sae_ref[1], pair_id],
        ):
            view.activations.setdefault(tok["side"], {})[int(tok["pos"])] = float(tok["act"])
    if "clusters" in reader.tables and reader.analysis:
        cluster = reader.query(
            "select data_cluster from clusters where dataset = ? and analysis = ? and pair_id = ?",
            [slug(reader.dataset), reader.analysis, pair_id],
        )
        view.data_cluster = cluster[0]["data_cluster"] if cluster else None
    return view


def prompt_messages(prompt_json: str | None) -> list[dict[str, str]]:
    """A pair's prompt (JSON messages) as a list of {role, content}."""
    try:
        messages = json.loads(prompt_json or "[]")
    except (TypeError, ValueError):
        return [{"role": "user", "content": str(prompt_json)}]
    if not isinstance(messages, list):
        return [{"role": "user", "content": str(prompt_json)}]
    return [
        {"role": str(m.get("role", "?")), "content": str(m.get("content", ""))}
        for m in messages
        if isinstance(m, dict)
    ]


def last_user_turn(prompt_json: str | None, limit: int = 300) -> str:
    """The last user message of a pair's prompt (JSON messages), shortened."""
    try:
        messages = json.loads(prompt_json or "[]")
    except json.JSONDecodeError:
        return (prompt_json or "")[:limit]
    users = [
        m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"
    ]
    text = str(users[-1]) if users else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def top_activations(
    reader: Reader, sae_ref: tuple[str, int], limit: int = 50
) -> list[dict[str, Any]]:
    """The feature's strongest token activations kept in `token_features`, strongest first."""
    if "token_features" not in reader.tables:
        return []
    return reader.query(
        "select pair_id, side, pos, act from token_features where dataset = ? and sae = ? "
        f"and feature = ? order by act desc, pair_id limit {int(limit)}",
        [slug(reader.dataset), slug(sae_ref[0]), sae_ref[1]],
    )


def feature_row(reader: Reader, sae_ref: tuple[str, int]) -> dict[str, Any] | None:
    """The SAE feature's card row (density, top tokens, stored contexts), if the lake has one."""
    if "features" not in reader.tables:
        return None
    found = reader.query(
        "select density, top_tokens, contexts from features where sae = ? and feature = ?",
        [slug(sae_ref[0]), sae_ref[1]],
    )
    return found[0] if found else None


def span_tokens(reader: Reader, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """Decoded tokens of the wanted (pair, side) spans, from `spans` (first model found)."""
    ids = sorted({k[0] for k in keys})
    if not ids or "spans" not in reader.tables:
        return {}
    marks = ", ".join("?" for _ in ids)
    found = reader.query(
        f"select pair_id, side, tokens from spans where dataset = ? and pair_id in ({marks})",
        [slug(reader.dataset), *ids],
    )
    wanted = set(keys)
    out: dict[tuple[str, str], list[str]] = {}
    for r in found:
        key = (r["pair_id"], r["side"])
        if key in wanted and key not in out and r["tokens"]:
            out[key] = [str(t) for t in r["tokens"]]
    return out


def responses_first(top: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Activations on chosen/rejected before those on prompts: the card is about responses."""
    return sorted(top, key=lambda t: t.get("side") == "prompt")


def json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return []
    return list(value) if isinstance(value, list) else []
