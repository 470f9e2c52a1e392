"""Concept cards for the report: statistics, where the concept fires, and example pairs with the
evidence marked, all read through sculpt.concepts.evidence (the same functions the TUI reads)."""

from __future__ import annotations

from typing import Any

import duckdb

from sculpt.concepts import contexts, evidence
from sculpt.concepts.contexts import Segments
from sculpt.concepts.evidence import LakeReader, Reader
from sculpt.lake.store import Lake

EXAMPLES = 2
CONTEXTS = 6
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
    analysis: str | None = None,
) -> list[dict[str, Any]]:
    """One card per target hypothesis (a global-lean row of `hypotheses`)."""
    reader = LakeReader(con, tables, dataset, analysis)
    return [_card(reader, hyp) for hyp in targets]


def _card(reader: Reader, hyp: dict[str, Any]) -> dict[str, Any]:
    concept_id = hyp["concept_id"]
    card: dict[str, Any] = {k: hyp.get(k) for k in STAT_FIELDS}
    card.update(top_tokens=[], contexts=[], examples=[], density=None, finding=None)
    finding = hyp.get("finding")
    if finding:
        # the card speaks for the finding: its name and its statistics on one scale (shares of
        # pairs); the evidence shown is its anchor's
        card["finding"] = finding
        card["finding_id"] = finding["finding_id"]
        card.update({k: finding.get(k) for k in ("label", "lean", "delta", "ci_lo", "ci_hi")})
        card.update({k: finding.get(k) for k in ("d", "q", "split_half_ok", "length_only")})
    lean = "rejected" if hyp.get("lean") == "rejected" else "chosen"
    ids = [p["pair_id"] for p in evidence.evidence_pairs(reader, concept_id, lean, limit=CONTEXTS)]
    sae_ref = evidence.parse_sae(concept_id)
    if sae_ref is None:
        row = evidence.concept(reader, concept_id)
        pattern = evidence.highlight_pattern(row)
        pairs = evidence.pair_rows(reader, ids[: max(EXAMPLES, CONTEXTS)])
        card["contexts"] = contexts.contexts(reader, row, lean, CONTEXTS, pairs=pairs)
        card["examples"] = [_example(p, pattern, {}) for p in pairs[:EXAMPLES]]
        return card
    top = evidence.top_activations(reader, sae_ref)
    # Pairs whose lean side holds a top activation come first: their tokens can be marked.
    hot_pairs = [t["pair_id"] for t in top if t["side"] == lean]
    pairs = evidence.pair_rows(reader, list(dict.fromkeys([*hot_pairs, *ids]))[:EXAMPLES])
    feature = evidence.feature_row(reader, sae_ref)
    if feature:
        card["density"] = feature["density"]
        card["top_tokens"] = evidence.json_list(feature["top_tokens"])[:10]
    card["contexts"] = contexts.contexts(reader, {"concept_id": concept_id}, lean, CONTEXTS)
    keys = [(p["pair_id"], side) for p in pairs for side in ("chosen", "rejected")]
    tokens = evidence.span_tokens(reader, keys)
    hot: dict[tuple[str, str], set[int]] = {}
    for t in top:
        hot.setdefault((t["pair_id"], t["side"]), set()).add(int(t["pos"]))
    marked = {k: contexts.token_segments(tokens[k], hot[k]) for k in tokens if k in hot}
    card["examples"] = [_example(p, None, marked) for p in pairs]
    return card


def _example(
    pair: dict[str, Any], pattern: Any, tokens: dict[tuple[str, str], Segments]
) -> dict[str, Any]:
    out: dict[str, Any] = {"pair_id": pair["pair_id"], "row": pair["row"]}
    out["prompt"] = evidence.last_user_turn(pair["prompt"])
    for side in ("chosen", "rejected"):
        marked = tokens.get((pair["pair_id"], side))
        out[side] = (
            marked
            if marked is not None
            else contexts.window(pair[side] or "", evidence.matches(pattern, pair[side]))
        )
    return out
