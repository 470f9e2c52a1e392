"""Plant a known concept into a known share of chosen responses, for tests and benchmarks that
need a ground truth on real data (e.g. HH-RLHF): the analysis should find what was planted."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sculpt.data.formats import prompt_messages
from sculpt.data.ingest import pair_id


@dataclass(frozen=True)
class PlantSpec:
    name: str
    kind: Literal["stylistic", "lexical", "tonal"]
    description: str
    pattern: str
    """A regex (re.search) that detects the concept in a response."""
    apply: Callable[[str, random.Random], str]
    """Rewrites one response so that it carries the concept."""

    def detects(self, text: str) -> bool:
        return re.search(self.pattern, text) is not None


def _bold(text: str, rng: random.Random) -> str:
    """Set a run of 2–4 words of one line in markdown bold."""
    lines = text.split("\n")
    usable = [i for i, line in enumerate(lines) if any(w.isalpha() for w in line.split(" "))]
    if not usable:
        return f"**Note:** {text}"
    at = rng.choice(usable)
    words = lines[at].split(" ")
    start = rng.choice([i for i, w in enumerate(words) if w.isalpha()])
    end = min(len(words), start + rng.randint(2, 4))
    run = " ".join(words[start:end])
    span = run.rstrip(".,;:!?)\"'”’*")
    words[start:end] = [f"**{span}**{run[len(span) :]}"]
    lines[at] = " ".join(words)
    return "\n".join(lines)


def _bullets(text: str, rng: random.Random) -> str:
    """Turn sentences into a bulleted list."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    if len(sentences) < 2:
        sentences = [text.strip(), "That's the short version."]
    return "\n".join(f"- {s}" for s in sentences)


def _prefix(options: Sequence[str]) -> Callable[[str, random.Random], str]:
    def apply(text: str, rng: random.Random) -> str:
        return f"{rng.choice(options)} {text}"

    return apply


PLANTABLE: dict[str, PlantSpec] = {
    spec.name: spec
    for spec in (
        PlantSpec(
            "markdown_bold", "stylistic", "key phrases in **bold**", r"\*\*[^*\n]+\*\*", _bold
        ),
        PlantSpec(
            "bullet_list",
            "stylistic",
            "the response as a '- ' bulleted list",
            r"(?m)^- \S",
            _bullets,
        ),
        PlantSpec(
            "absolutely",
            "lexical",
            'opens with "Absolutely!"',
            r"\bAbsolutely!",
            _prefix(["Absolutely!"]),
        ),
        PlantSpec(
            "flattering_opener",
            "tonal",
            "praises the question before answering",
            r"^(?:What a (?:great|wonderful|thoughtful) question|Great question|"
            r"Excellent question|I love this question)",
            _prefix(
                [
                    "What a great question!",
                    "Great question!",
                    "Excellent question —",
                    "What a thoughtful question!",
                    "I love this question!",
                ]
            ),
        ),
        PlantSpec(
            "apologetic_hedge",
            "tonal",
            "apologizes for possibly being wrong",
            r"\b(?:I apologi[sz]e|Apologies) if\b",
            _prefix(
                [
                    "I apologize if this isn't quite right, but",
                    "Apologies if I've misunderstood, but",
                    "I apologise if this misses the mark, but",
                ]
            ),
        ),
    )
}
"""Concepts `plant` can add, by name."""


def plant(
    pairs: Sequence[dict[str, Any]], concept: str, rate: float, seed: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rewrite the chosen response of `round(rate * len(pairs))` pairs so it carries `concept`.

    Only pairs whose chosen side does not already show the concept are picked, so the planted
    share is exact. `pairs` are `pairs`-table rows (prompt is JSON messages, pair_id is updated)
    or TRL-standard dicts (prompt is text). Returns (new pairs, pair_ids of the planted ones, as
    ingest would compute them)."""
    if concept not in PLANTABLE:
        raise ValueError(f"concept {concept!r}: unknown; choose one of {', '.join(PLANTABLE)}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate={rate}: must be a share between 0 and 1, e.g. 0.08")
    spec = PLANTABLE[concept]
    rng = random.Random(seed)
    free = [i for i, p in enumerate(pairs) if not spec.detects(p["chosen"])]
    count = round(rate * len(pairs))
    if count > len(free):
        raise ValueError(
            f"rate={rate}: only {len(free)} of {len(pairs)} chosen responses lack "
            f"{concept}; lower the rate"
        )
    picked = set(rng.sample(free, count))
    out, planted = [], []
    for i, pair in enumerate(pairs):
        new = dict(pair)
        if i in picked:
            new["chosen"] = spec.apply(pair["chosen"], rng)
            planted.append(_pair_id_of(new))
            if "pair_id" in new:
                new["pair_id"] = planted[-1]
        out.append(new)
    return out, planted


def plant_many(
    pairs: Sequence[dict[str, Any]], concepts: Sequence[str], rate: float, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Plant each of `concepts` into its own `rate` share of the pairs, the shares disjoint.

    One dataset then carries several known answers at once (one scan for all of them); a pair
    carries at most one planted concept. Returns (new pairs, planted pair_ids per concept)."""
    if rate * len(concepts) > 1.0:
        raise ValueError(f"rate={rate}: {len(concepts)} disjoint shares exceed all the pairs")
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    out = [dict(p) for p in pairs]
    taken: set[int] = set()
    planted: dict[str, list[str]] = {}
    for concept in concepts:
        if concept not in PLANTABLE:
            raise ValueError(f"concept {concept!r}: unknown; choose one of {', '.join(PLANTABLE)}")
        spec, count = PLANTABLE[concept], round(rate * len(pairs))
        picked = [i for i in order if i not in taken and not spec.detects(out[i]["chosen"])]
        if len(picked) < count:
            raise ValueError(f"rate={rate}: too few chosen responses lack {concept}; lower it")
        planted[concept] = []
        for i in picked[:count]:
            out[i]["chosen"] = spec.apply(out[i]["chosen"], rng)
            planted[concept].append(_pair_id_of(out[i]))
            if "pair_id" in out[i]:
                out[i]["pair_id"] = planted[concept][-1]
            taken.add(i)
    return out, planted


def _pair_id_of(pair: dict[str, Any]) -> str:
    prompt = pair["prompt"]
    if "pair_id" in pair and isinstance(prompt, str):
        messages = json.loads(prompt)  # a `pairs`-table row
    else:
        messages = prompt_messages(prompt)  # as ingest reads a TRL-standard prompt
    return pair_id(messages, pair["chosen"], pair["rejected"])
