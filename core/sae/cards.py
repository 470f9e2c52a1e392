"""Feature cards (`features` [sae]) and SAE features as concepts (`concepts` [dataset, sae-<id>]).

A card holds density, mean activation, the top-activating contexts (±`window` tokens from
`spans`, the activating token marked) and the tokens over-represented where the feature fires
(log-odds with a Dirichlet prior against all tokens of the dataset). Its label is a readable
snippet of its most typical top context (special tokens stripped), or "chat-template tokens" when
it fires on the template; an LLM label (`labeler`, an OpenAI-compatible chat endpoint) is optional
and never feeds statistics.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from sculpt.concepts.ngrams import log_odds_dirichlet
from sculpt.concepts.registry import Concept, write_concepts
from sculpt.lake import schemas
from sculpt.lake.store import Lake
from sculpt.sae.labeler import Labeler, llm_labels
from sculpt.sae.registry import load_sae

FEATURES_SCHEMA = schemas.FEATURES


def _spans(
    lake: Lake, dataset: str, model: str
) -> dict[tuple[str, str], tuple[list[int], list[str]]]:
    table = lake.read("spans", {"dataset": dataset, "model": model})
    return {
        (p, s): (ids, toks)
        for p, s, ids, toks in zip(
            table.column("pair_id").to_pylist(),
            table.column("side").to_pylist(),
            table.column("token_ids").to_pylist(),
            table.column("tokens").to_pylist(),
            strict=True,
        )
    }


def feature_stats(
    span_features: pa.Table, n_tokens: dict[tuple[str, str], int]
) -> dict[int, tuple[float, float]]:
    """feature → (density over all tokens, mean activation where active)."""
    features = span_features.column("feature").to_numpy()
    lengths = np.array(
        [
            n_tokens.get(k, 0)
            for k in zip(
                span_features.column("pair_id").to_pylist(),
                span_features.column("side").to_pylist(),
                strict=True,
            )
        ],
        dtype=np.float64,
    )
    active = span_features.column("freq").to_numpy().astype(np.float64) * lengths
    sums = span_features.column("sum_act").to_numpy().astype(np.float64)
    width = int(features.max()) + 1 if len(features) else 0
    active_total = np.bincount(features, active, width)
    sum_total = np.bincount(features, sums, width)
    total = max(sum(n_tokens.values()), 1)
    return {
        int(f): (active_total[f] / total, sum_total[f] / max(active_total[f], 1e-9))
        for f in np.flatnonzero(active_total)
    }


def context(tokens: list[str], pos: int, window: int) -> dict[str, Any]:
    return {
        "text_before": "".join(tokens[max(0, pos - window) : pos]),
        "token": tokens[pos] if pos < len(tokens) else "",
        "text_after": "".join(tokens[pos + 1 : pos + 1 + window]),
    }


def over_represented(
    foreground: dict[int, float], background: np.ndarray, vocab: dict[int, str], top: int
) -> list[tuple[str, float]]:
    """Tokens most over-represented in `foreground` counts vs the dataset (log-odds z)."""
    ids = np.fromiter(foreground, np.int64)
    if not len(ids):
        return []
    counts = np.fromiter(foreground.values(), np.float64)
    rest = np.maximum(background[ids] - counts, 0)
    prior = 0.5 + 10 * background[ids] / background.sum()
    _, z = log_odds_dirichlet(counts, rest, prior)
    order = np.argsort(-z)[:top]
    return [(vocab[int(ids[i])], round(float(z[i]), 2)) for i in order if z[i] > 0]


SPECIAL_TOKEN = re.compile(
    r"<\|im_start\|>(?:system|user|assistant)?\n?|<\|[^|<>\s]{1,40}\|>|</?s>|<pad>|<unk>"
)
"""Chat-template and special tokens (ChatML's `<|im_start|>role`, `<|im_end|>`, `<s>`, …): never
shown to a person, and a feature that fires on them says nothing about the content."""
ROLE_WORDS = frozenset({"system", "user", "assistant"})
TEMPLATE_SHARE = 0.5
"""A feature whose top contexts activate on template tokens at least this often is template-driven."""
LABEL_WORDS = (4, 3)
"""Words kept before and after the activating token in a context label."""


def strip_special(text: str) -> str:
    """Text as a person should read it: special and chat-template tokens removed."""
    return SPECIAL_TOKEN.sub("", text)


def template_token(ctx: dict[str, Any]) -> bool:
    """The context's activating token is a special token or part of the chat template (a role
    name after `<|im_start|>`, the newline after `<|im_end|>`, the system turn of a prompt)."""
    token, before = str(ctx.get("token", "")), str(ctx.get("text_before", ""))
    if SPECIAL_TOKEN.fullmatch(token) or (token.startswith("<|") and token.endswith("|>")):
        return True
    if ctx.get("side") == "prompt" and before.rfind("<|im_start|>system") > before.rfind(
        "<|im_end|>"
    ):
        return True  # inside the system turn: the template's default system prompt
    after_start = before.endswith("<|im_start|>")
    if token.strip() in ROLE_WORDS and (after_start or not before.strip()):
        return True
    return not token.strip() and (before.endswith("<|im_end|>") or after_start)


def template_driven(contexts: list[dict[str, Any]], top_tokens: list[Any] | None = None) -> bool:
    """Most of a feature's top contexts fire on template tokens (or, with no contexts, its most
    over-represented token is one)."""
    if contexts:
        hits = sum(template_token(c) for c in contexts)
        return hits >= TEMPLATE_SHARE * len(contexts)
    if top_tokens:
        token = str(top_tokens[0][0])
        return bool(SPECIAL_TOKEN.fullmatch(token)) or token.strip() in ROLE_WORDS
    return False


def context_label(contexts: list[dict[str, Any]]) -> str | None:
    """A readable snippet around the feature's most typical activating token (the commonest among
    its top contexts, at its strongest), special tokens stripped; None when no context reads."""
    readable = [c for c in contexts if not template_token(c) and strip_special(str(c["token"]))]
    responses = [c for c in readable if c.get("side") in ("chosen", "rejected")]
    readable = responses or readable  # what the lean is about: the responses, not the prompt
    if not readable:
        return None
    counts: dict[str, int] = defaultdict(int)
    for c in readable:
        counts[str(c["token"]).strip().lower()] += 1
    typical = max(counts, key=lambda t: counts[t])
    best = max(
        (c for c in readable if str(c["token"]).strip().lower() == typical),
        key=lambda c: float(c.get("act") or 0.0),
    )
    before = strip_special(str(best.get("text_before", "")))
    after = strip_special(str(best.get("text_after", "")))
    n_before, n_after = LABEL_WORDS
    head = " ".join(before.split()[-n_before:]) + (" " if before[-1:].isspace() else "")
    tail = (" " if after[:1].isspace() else "") + " ".join(after.split()[:n_after])
    text = " ".join((head + strip_special(str(best["token"])) + tail).split())
    if not text:
        return None
    return f"…{text}…"


def token_label(top_tokens: list[tuple[str, float]]) -> str:
    shown = [repr(t.strip() or t)[1:-1] for t, _ in top_tokens[:3] if strip_special(t).strip()]
    return " · ".join(shown) if shown else "(no distinctive tokens)"


def feature_label(contexts: list[dict[str, Any]], top_tokens: list[Any]) -> tuple[str, str]:
    """(label, label_source) of a feature card: a chat-template feature says so, else a snippet
    of its top context, else its over-represented tokens."""
    if template_driven(contexts, top_tokens):
        return "chat-template tokens", "context"
    snippet = context_label(contexts)
    if snippet:
        return snippet, "context"
    return token_label([(str(t), float(v)) for t, v in top_tokens]), "tokens"


def build_cards(
    lake: Lake,
    dataset: str,
    sae_id: str,
    contexts: int = 8,
    window: int = 8,
    top: int = 10,
    labeler: Labeler | None = None,
) -> pa.Table:
    """Write `features` [sae] and the `concepts` rows of an encoded SAE; return the cards."""
    _, info = load_sae(lake, sae_id)
    spans = _spans(lake, dataset, str(info["model"]))
    span_features = lake.read("span_features", {"dataset": dataset, "sae": sae_id})
    token_features = lake.read("token_features", {"dataset": dataset, "sae": sae_id})
    stats = feature_stats(span_features, {k: len(v[0]) for k, v in spans.items()})
    vocab: dict[int, str] = {}
    all_ids = []
    for ids, toks in spans.values():
        vocab.update(zip(ids, toks, strict=True))
        all_ids.extend(ids)
    background = np.bincount(
        np.asarray(all_ids, dtype=np.int64), minlength=max(vocab, default=0) + 1
    )
    by_feature: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in token_features.sort_by([("act", "descending")]).to_pylist():
        by_feature[row["feature"]].append(row)
    rows = [
        _card(
            feature,
            stats[feature],
            by_feature.get(feature, []),
            spans,
            background,
            vocab,
            contexts,
            window,
            top,
        )
        for feature in sorted(stats)
    ]
    if labeler:
        llm_labels(rows, labeler)
    table = pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA)
    lake.replace_partition("features", {"sae": sae_id}, table)
    concepts = [
        Concept(
            f"sae:{sae_id}:{r['feature']}",
            "sae_feature",
            str(r["label"]),
            members=[r["feature"]],
            source={"sae": sae_id, "layer": info["layer"], "feature": r["feature"]},
        )
        for r in rows
    ]
    write_concepts(lake, dataset, f"sae-{sae_id}", concepts)
    return table


def _card(
    feature: int,
    stats: tuple[float, float],
    hits: list[dict[str, Any]],
    spans: dict[tuple[str, str], tuple[list[int], list[str]]],
    background: np.ndarray,
    vocab: dict[int, str],
    contexts: int,
    window: int,
    top: int,
) -> dict[str, Any]:
    """One feature's card row from its top token activations (`hits`, strongest first)."""
    foreground: dict[int, float] = defaultdict(float)
    cards: list[dict[str, Any]] = []
    for hit in hits:
        ids, toks = spans.get((hit["pair_id"], hit["side"]), ([], []))
        if hit["pos"] >= len(ids):
            continue
        foreground[ids[hit["pos"]]] += 1.0
        for near in (hit["pos"] - 1, hit["pos"] + 1):
            if 0 <= near < len(ids):
                foreground[ids[near]] += 0.5  # neighbours say what the token is part of
        if len(cards) < contexts:
            cards.append(
                {
                    "pair_id": hit["pair_id"],
                    "side": hit["side"],
                    "pos": hit["pos"],
                    **context(toks, hit["pos"], window),
                    "act": round(hit["act"], 4),
                }
            )
    top_tokens = over_represented(foreground, background, vocab, top)
    label, source = feature_label(cards, top_tokens)
    return {
        "feature": feature,
        "density": stats[0],
        "mean_act": stats[1],
        "label": label,
        "label_source": source,
        "top_tokens": json.dumps(top_tokens, ensure_ascii=False),
        "contexts": json.dumps(cards, ensure_ascii=False),
    }
