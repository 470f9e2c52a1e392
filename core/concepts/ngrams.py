"""Discovered lexical concepts: word n-grams that separate chosen from rejected (DESIGN §3).

Word 1–4-grams (case kept) are compared between chosen and rejected responses by the log-odds
ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"); the
top ones each way become concepts `ngram:<text>` with per-span counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sculpt.concepts.registry import Concept, Spans, pair_spans, score_table, write_concepts
from sculpt.lake.store import Lake

WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
"""A word (with inner apostrophes) or a single punctuation mark."""


@dataclass
class NgramConfig:
    """Which n-grams to look for and how many to keep."""

    max_n: int = 4
    """Longest n-gram, in words."""
    top: int = 25
    """Concepts kept in each direction (chosen-leaning and rejected-leaning)."""
    min_count: int = 10
    """Minimum occurrences over both sides to be considered."""
    prior_scale: float = 1.0
    """Dirichlet prior pseudo-counts, as a multiple of each n-gram's pooled count."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_n <= 6:
            raise ValueError(f"max_n {self.max_n}: use 1..6")
        if self.top < 1 or self.min_count < 1:
            raise ValueError("top and min_count must be ≥ 1")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def ngrams(tokens: Sequence[str], max_n: int) -> Iterable[str]:
    for n in range(1, max_n + 1):
        for i in range(len(tokens) - n + 1):
            gram = tokens[i : i + n]
            if n > 1 and not any(w[0].isalnum() for w in gram):
                continue
            yield " ".join(gram)


def log_odds_dirichlet(
    counts_a: np.ndarray, counts_b: np.ndarray, prior: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(δ, z) per term: log-odds ratio of a vs b with prior pseudo-counts (Monroe et al. eq. 22)."""
    n_a, n_b, a0 = counts_a.sum(), counts_b.sum(), prior.sum()
    odds_a = np.log((counts_a + prior) / (n_a + a0 - counts_a - prior))
    odds_b = np.log((counts_b + prior) / (n_b + a0 - counts_b - prior))
    delta = odds_a - odds_b
    variance = 1.0 / (counts_a + prior) + 1.0 / (counts_b + prior)
    return delta, delta / np.sqrt(variance)


@dataclass
class NgramResult:
    text: str
    z: float
    delta: float
    chosen_count: int
    rejected_count: int


def fightin_words(
    chosen: Sequence[str], rejected: Sequence[str], config: NgramConfig
) -> list[NgramResult]:
    """Top n-grams each way, chosen-leaning first (largest z), then rejected-leaning."""
    count_c: Counter[str] = Counter()
    count_r: Counter[str] = Counter()
    for text in chosen:
        count_c.update(ngrams(words(text), config.max_n))
    for text in rejected:
        count_r.update(ngrams(words(text), config.max_n))
    vocab = [
        g for g in count_c.keys() | count_r.keys() if count_c[g] + count_r[g] >= config.min_count
    ]
    if not vocab:
        return []
    vocab.sort()
    a = np.array([count_c[g] for g in vocab], dtype=np.float64)
    b = np.array([count_r[g] for g in vocab], dtype=np.float64)
    prior = config.prior_scale * (a + b)
    delta, z = log_odds_dirichlet(a, b, prior)
    lengths = np.array([g.count(" ") for g in vocab])
    picks = _distinct(np.lexsort((lengths, -z)), z > 0, vocab, a, b, config.top)
    picks += _distinct(np.lexsort((lengths, z)), z < 0, vocab, a, b, config.top)
    return [
        NgramResult(vocab[i], float(z[i]), float(delta[i]), int(a[i]), int(b[i])) for i in picks
    ]


def _distinct(
    order: np.ndarray, wanted: np.ndarray, vocab: list[str], a: np.ndarray, b: np.ndarray, top: int
) -> list[int]:
    """The first `top` wanted n-grams, skipping one that overlaps a kept one with equal counts
    (\"Great question\" adds nothing to \"Great\" when both occur exactly together)."""
    kept: list[int] = []
    for i in order:
        if len(kept) == top:
            break
        if not wanted[i]:
            continue
        padded = f" {vocab[i]} "
        if any(
            a[i] == a[j]
            and b[i] == b[j]
            and (f" {vocab[j]} " in padded or padded in f" {vocab[j]} ")
            for j in kept
        ):
            continue
        kept.append(int(i))
    return kept


def span_counts(texts: Sequence[str], grams: Sequence[str], max_n: int) -> np.ndarray:
    """[n_grams, n_texts] occurrences of each n-gram in each text."""
    index = {g: i for i, g in enumerate(grams)}
    out = np.zeros((len(grams), len(texts)))
    for j, text in enumerate(texts):
        for gram, count in Counter(g for g in ngrams(words(text), max_n) if g in index).items():
            out[index[gram], j] = count
    return out


def discover_ngrams(
    lake: Lake, dataset: str, config: NgramConfig | None = None
) -> list[NgramResult]:
    """Find the top n-grams of `pairs` [dataset], register them (family `ngram`), return them."""
    config = config or NgramConfig()
    spans: Spans = pair_spans(lake, dataset)
    chosen = [t for t, s in zip(spans.texts, spans.sides, strict=True) if s == "chosen"]
    rejected = [t for t, s in zip(spans.texts, spans.sides, strict=True) if s == "rejected"]
    results = fightin_words(chosen, rejected, config)
    grams = [r.text for r in results]
    concepts = [
        Concept(
            f"ngram:{r.text}",
            "ngram",
            f"“{r.text}” ({'chosen' if r.z > 0 else 'rejected'})",
            members=[r.text],
            source={
                "z": round(r.z, 3),
                "delta": round(r.delta, 4),
                "chosen_count": r.chosen_count,
                "rejected_count": r.rejected_count,
            },
        )
        for r in results
    ]
    scores = span_counts(spans.texts, grams, config.max_n)
    write_concepts(
        lake,
        dataset,
        "ngram",
        concepts,
        score_table([c.concept_id for c in concepts], spans, scores),
    )
    return results
