"""Concept cards for the report: top contexts with the firing tokens marked, and example pairs.

Text is returned as segments `[text, highlighted]` so the template escapes every character and no
markup is ever built from dataset text.
"""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb

from sculpt.lake.store import Lake, slug
from sculpt.lake.store import fetch_dicts as _rows

Segments = list[list[Any]]
EXAMPLES = 2
CONTEXTS = 6
TEXT_LIMIT = 700
CONTEXT_RADIUS = 70
CONTEXT_TOKENS = 10
STAT_FIELDS = (
    "hypothesis_id",
    "concept_id",
    "label",
    "kind",
    "lean",
    "delta",
    "ci_lo",
    "ci_hi",
    "d",
    "q",
    "split_half_ok",
    "length_only",
    "chosen_rate",
    "rejected_rate",
    "delta_len",
    "n",
)


def concept_cards(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    dataset: str,
    targets: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One card per target hypothesis (a global-lean row of `hypotheses`)."""
    return [_card(con, tables, dataset, hyp) for hyp in targets]


def _card(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str, hyp: dict[str, Any]
) -> dict[str, Any]:
    concept_id = hyp["concept_id"]
    card: dict[str, Any] = {k: hyp.get(k) for k in STAT_FIELDS}
    card.update(top_tokens=[], contexts=[], examples=[], density=None)
    sae_ref = _parse_sae(concept_id)
    pattern = _pattern(con, tables, dataset, concept_id)
    lean_side = "rejected" if hyp.get("lean") == "rejected" else "chosen"
    ids = _example_ids(con, tables, dataset, concept_id, sae_ref, lean_side)
    if sae_ref is not None:
        top = _top_activations(con, tables, dataset, sae_ref)
        # Pairs whose lean side holds a top activation come first: their tokens can be marked.
        hot = [t["pair_id"] for t in top if t["side"] == lean_side]
        ids = list(dict.fromkeys([*hot, *ids]))
        pairs = _pairs(con, tables, dataset, ids[:EXAMPLES])
        _fill_sae(con, tables, dataset, sae_ref, card, pairs, top)
    else:
        pairs = _pairs(con, tables, dataset, ids[: max(EXAMPLES, CONTEXTS)])
        card["contexts"] = _pattern_contexts(pairs, lean_side, pattern)
        card["examples"] = [_example(p, pattern, {}) for p in pairs[:EXAMPLES]]
    return card


def _parse_sae(concept_id: str) -> tuple[str, int] | None:
    if not concept_id.startswith("sae:"):
        return None
    sae_id, _, feature = concept_id[4:].rpartition(":")
    return (sae_id, int(feature)) if feature.isdigit() and sae_id else None


def _pattern(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str, concept_id: str
) -> re.Pattern[str] | None:
    """What to highlight in text for a lexical or n-gram concept (None: nothing to mark)."""
    if concept_id.startswith("ngram:"):
        # n-grams are words and punctuation joined by spaces ("Great question !"): match the
        # words with any or no whitespace between them, as they appear in the text.
        words = r"\s*".join(re.escape(w) for w in concept_id[6:].split())
        return re.compile(rf"(?<!\w){words}(?!\w)") if words else None
    if "concepts" not in tables:
        return None
    found = _rows(
        con,
        "select source from concepts where dataset = ? and concept_id = ? limit 1",
        [slug(dataset), concept_id],
    )
    try:
        source = json.loads(found[0]["source"] or "{}") if found else {}
        return re.compile(source["pattern"], re.MULTILINE) if source.get("pattern") else None
    except (json.JSONDecodeError, TypeError, KeyError, re.error, AttributeError):
        return None


def _example_ids(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    dataset: str,
    concept_id: str,
    sae_ref: tuple[str, int] | None,
    lean: str,
) -> list[str]:
    """Pairs where the concept's chosen − rejected gap is largest in the direction of its lean."""
    gap = (
        "sum(case when side = 'chosen' then {v} else 0 end) - "
        "sum(case when side = 'rejected' then {v} else 0 end)"
    )
    order = "asc" if lean == "rejected" else "desc"
    if sae_ref is not None and "span_features" in tables:
        query = (
            f"select pair_id, {gap.format(v='max_act')} as u from span_features "
            "where dataset = ? and sae = ? and feature = ? group by pair_id "
        )
        params: list[Any] = [slug(dataset), slug(sae_ref[0]), sae_ref[1]]
    elif "concept_span_scores" in tables:
        query = (
            f"select pair_id, {gap.format(v='score')} as u from concept_span_scores "
            "where dataset = ? and concept_id = ? group by pair_id "
        )
        params = [slug(dataset), concept_id]
    else:
        return []
    found = _rows(con, query + f"order by u {order}, pair_id limit {CONTEXTS}", params)
    sign = -1 if lean == "rejected" else 1
    return [r["pair_id"] for r in found if (r["u"] or 0) * sign > 0]


def _pairs(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str, ids: list[str]
) -> list[dict[str, Any]]:
    if not ids or "pairs" not in tables:
        return []
    marks = ", ".join("?" for _ in ids)
    found = _rows(
        con,
        "select pair_id, row, prompt, chosen, rejected from pairs "
        f"where dataset = ? and pair_id in ({marks})",
        [slug(dataset), *ids],
    )
    by_id = {r["pair_id"]: r for r in found}
    return [by_id[i] for i in ids if i in by_id]


def _top_activations(
    con: duckdb.DuckDBPyConnection, tables: set[str], dataset: str, sae_ref: tuple[str, int]
) -> list[dict[str, Any]]:
    """The feature's strongest token activations kept in `token_features`, strongest first."""
    if "token_features" not in tables:
        return []
    return _rows(
        con,
        "select pair_id, side, pos, act from token_features where dataset = ? and sae = ? "
        "and feature = ? order by act desc, pair_id limit 50",
        [slug(dataset), slug(sae_ref[0]), sae_ref[1]],
    )


def _fill_sae(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    dataset: str,
    sae_ref: tuple[str, int],
    card: dict[str, Any],
    pairs: list[dict[str, Any]],
    top: list[dict[str, Any]],
) -> None:
    sae_id, feature = sae_ref
    if "features" in tables:
        found = _rows(
            con,
            "select density, top_tokens, contexts from features where sae = ? and feature = ?",
            [slug(sae_id), feature],
        )
        if found:
            card["density"] = found[0]["density"]
            card["top_tokens"] = _json_list(found[0]["top_tokens"])[:10]
            stored = [c for c in _json_list(found[0]["contexts"]) if isinstance(c, dict)]
            card["contexts"] = [_feature_context(c) for c in responses_first(stored)[:CONTEXTS]]
    keys = [(t["pair_id"], t["side"]) for t in responses_first(top)[:CONTEXTS]]
    keys += [(p["pair_id"], side) for p in pairs for side in ("chosen", "rejected")]
    tokens = _span_tokens(con, tables, dataset, keys)
    if not any(c["side"] in ("chosen", "rejected") for c in card["contexts"]):
        # The card is about responses: show where it fires in them when the stored card
        # contexts (top activations over all spans) are all in prompts.
        found = _token_contexts(responses_first(top)[:CONTEXTS], tokens)
        card["contexts"] = (found + card["contexts"])[:CONTEXTS]
    hot: dict[tuple[str, str], set[int]] = {}
    for t in top:
        hot.setdefault((t["pair_id"], t["side"]), set()).add(int(t["pos"]))
    marked = {k: _token_segments(tokens[k], hot[k]) for k in tokens if k in hot}
    card["examples"] = [_example(p, None, marked) for p in pairs]


def _json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return []
    return list(value) if isinstance(value, list) else []


def _feature_context(ctx: dict[str, Any]) -> dict[str, Any]:
    before = str(ctx.get("text_before", ""))[-CONTEXT_RADIUS:]
    after = str(ctx.get("text_after", ""))[:CONTEXT_RADIUS]
    return {
        "side": ctx.get("side"),
        "act": ctx.get("act"),
        "segments": [
            [_one_line(before), False],
            [_one_line(str(ctx.get("token", ""))), True],
            [_one_line(after), False],
        ],
    }


def _token_contexts(
    top: list[dict[str, Any]], tokens: dict[tuple[str, str], list[str]]
) -> list[dict[str, Any]]:
    """Cards without a `features` row: ±N tokens around each top activation, token marked."""
    out = []
    for t in top:
        span = tokens.get((t["pair_id"], t["side"]))
        pos = int(t["pos"])
        if not span or pos >= len(span):
            continue
        before = "".join(span[max(0, pos - CONTEXT_TOKENS) : pos])
        after = "".join(span[pos + 1 : pos + 1 + CONTEXT_TOKENS])
        segs = [[_one_line(before), False], [_one_line(span[pos]), True], [_one_line(after), False]]
        out.append({"side": t["side"], "act": t["act"], "segments": segs})
    return out


def responses_first(top: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Activations on chosen/rejected before those on prompts: the card is about responses."""
    return sorted(top, key=lambda t: t.get("side") == "prompt")


def _one_line(text: str) -> str:
    return text.replace("\n", "⏎ ")


def _span_tokens(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    dataset: str,
    keys: list[tuple[str, str]],
) -> dict[tuple[str, str], list[str]]:
    """Decoded tokens of the wanted (pair, side) spans, from `spans` (first model found)."""
    ids = sorted({k[0] for k in keys})
    if not ids or "spans" not in tables:
        return {}
    marks = ", ".join("?" for _ in ids)
    found = _rows(
        con,
        f"select pair_id, side, tokens from spans where dataset = ? and pair_id in ({marks})",
        [slug(dataset), *ids],
    )
    wanted = set(keys)
    out: dict[tuple[str, str], list[str]] = {}
    for r in found:
        key = (r["pair_id"], r["side"])
        if key in wanted and key not in out and r["tokens"]:
            out[key] = [str(t) for t in r["tokens"]]
    return out


def _token_segments(tokens: list[str], hot: set[int]) -> Segments:
    text, spans = "", []
    for pos, tok in enumerate(tokens):
        if pos in hot:
            spans.append((len(text), len(text) + len(tok)))
        text += tok
    return window(text, spans)


def _example(
    pair: dict[str, Any], pattern: re.Pattern[str] | None, tokens: dict[tuple[str, str], Segments]
) -> dict[str, Any]:
    out: dict[str, Any] = {"pair_id": pair["pair_id"], "row": pair["row"]}
    out["prompt"] = last_user_turn(pair["prompt"])
    for side in ("chosen", "rejected"):
        marked = tokens.get((pair["pair_id"], side))
        out[side] = (
            marked
            if marked is not None
            else window(pair[side] or "", _matches(pattern, pair[side]))
        )
    return out


def _pattern_contexts(
    pairs: list[dict[str, Any]], side: str, pattern: re.Pattern[str] | None
) -> list[dict[str, Any]]:
    out = []
    for pair in pairs:
        spans = _matches(pattern, pair[side])
        if spans:
            segs = window(pair[side], spans[:1], CONTEXT_RADIUS)
            out.append(
                {"side": side, "act": None, "segments": [[_one_line(t), h] for t, h in segs]}
            )
    return out


def _matches(pattern: re.Pattern[str] | None, text: str | None) -> list[tuple[int, int]]:
    if pattern is None or not text:
        return []
    return [m.span() for m in pattern.finditer(text) if m.end() > m.start()][:50]


def window(text: str, spans: list[tuple[int, int]], radius: int | None = None) -> Segments:
    """`text` cut to a readable window around its first highlight, as segments."""
    if radius is not None and spans:
        start, end = max(0, spans[0][0] - radius), spans[0][1] + radius
    elif spans:
        start = max(0, spans[0][0] - TEXT_LIMIT // 3)
        end = start + TEXT_LIMIT
    else:
        start, end = 0, TEXT_LIMIT
    segs: Segments = [["…", False]] if start > 0 else []
    cursor = start
    for lo, hi in spans:
        lo, hi = max(lo, cursor), min(hi, end)
        if hi <= lo:
            continue
        if lo > cursor:
            segs.append([text[cursor:lo], False])
        segs.append([text[lo:hi], True])
        cursor = hi
    if cursor < min(end, len(text)):
        segs.append([text[cursor:end], False])
    if end < len(text):
        segs.append(["…", False])
    return segs


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
