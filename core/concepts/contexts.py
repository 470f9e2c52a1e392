"""Where a concept fires, as text: segments `[text, highlighted]` cut around its matches or
top-activating tokens. The caller escapes (HTML) or makes visible (terminal) every character, so
no markup is ever built from data. The TUI's cards and the report's read these same contexts.
"""

from __future__ import annotations

from typing import Any

from sculpt.concepts.evidence import (
    Reader,
    evidence_pairs,
    feature_row,
    highlight_pattern,
    json_list,
    matches,
    pair_rows,
    parse_sae,
    responses_first,
    span_tokens,
    top_activations,
)

Segments = list[list[Any]]
TEXT_LIMIT = 700
CONTEXT_RADIUS = 70
CONTEXT_TOKENS = 10


# ---- where it fires ----------------------------------------------------------------------------
def contexts(
    reader: Reader,
    concept_row: dict[str, Any],
    lean: str,
    limit: int = 6,
    pairs: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Where the concept fires, as {pair_id, side, act, segments}: an SAE feature's stored card
    contexts (responses first, else its top token activations); a lexical or n-gram concept's
    matches in the pairs that support its lean (`pairs` when the caller already read them)."""
    concept_id = str(concept_row["concept_id"])
    sae_ref = parse_sae(concept_id)
    if sae_ref is not None:
        return _sae_contexts(reader, sae_ref, limit)
    pattern = highlight_pattern(concept_row)
    if pattern is None:
        return []
    if pairs is None:
        ids = [p["pair_id"] for p in evidence_pairs(reader, concept_id, lean, limit=limit * 3)]
        pairs = pair_rows(reader, ids)
    side = "rejected" if lean == "rejected" else "chosen"
    out = []
    for p in pairs:
        spans = matches(pattern, p[side])
        if spans:
            segs = window(p[side], spans[:1], CONTEXT_RADIUS)
            out.append(
                {
                    "pair_id": p["pair_id"],
                    "side": side,
                    "act": None,
                    "segments": [[one_line(t), h] for t, h in segs],
                }
            )
        if len(out) >= limit:
            break
    return out


def _sae_contexts(reader: Reader, sae_ref: tuple[str, int], limit: int) -> list[dict[str, Any]]:
    card = feature_row(reader, sae_ref)
    stored = [c for c in json_list(card["contexts"]) if isinstance(c, dict)] if card else []
    out = [_feature_context(c) for c in responses_first(stored)[:limit]]
    if not any(c["side"] in ("chosen", "rejected") for c in out):
        # The card is about responses: show where it fires in them when the stored card
        # contexts (top activations over all spans) are all in prompts.
        top = responses_first(top_activations(reader, sae_ref))[:limit]
        tokens = span_tokens(reader, [(t["pair_id"], t["side"]) for t in top])
        out = (_token_contexts(top, tokens) + out)[:limit]
    return out


def _feature_context(ctx: dict[str, Any]) -> dict[str, Any]:
    before = str(ctx.get("text_before", ""))[-CONTEXT_RADIUS:]
    after = str(ctx.get("text_after", ""))[:CONTEXT_RADIUS]
    return {
        "pair_id": ctx.get("pair_id"),
        "side": ctx.get("side"),
        "act": ctx.get("act"),
        "segments": [
            [one_line(before), False],
            [one_line(str(ctx.get("token", ""))), True],
            [one_line(after), False],
        ],
    }


def _token_contexts(
    top: list[dict[str, Any]], tokens: dict[tuple[str, str], list[str]]
) -> list[dict[str, Any]]:
    """±N decoded tokens around each top activation, the token marked."""
    out = []
    for t in top:
        span = tokens.get((t["pair_id"], t["side"]))
        pos = int(t["pos"])
        if not span or pos >= len(span):
            continue
        before = "".join(span[max(0, pos - CONTEXT_TOKENS) : pos])
        after = "".join(span[pos + 1 : pos + 1 + CONTEXT_TOKENS])
        segs = [[one_line(before), False], [one_line(span[pos]), True], [one_line(after), False]]
        out.append({"pair_id": t["pair_id"], "side": t["side"], "act": t["act"], "segments": segs})
    return out


# ---- segments ----------------------------------------------------------------------------------
def one_line(text: str) -> str:
    return text.replace("\n", "⏎ ")


def token_segments(tokens: list[str], hot: set[int]) -> Segments:
    """Decoded tokens joined, the tokens at `hot` positions marked, cut to a window."""
    text, spans = "", []
    for pos, tok in enumerate(tokens):
        if pos in hot:
            spans.append((len(text), len(text) + len(tok)))
        text += tok
    return window(text, spans)


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
