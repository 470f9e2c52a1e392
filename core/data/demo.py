"""The project's own demo preference dataset, with a known answer.

Pairs come from templates and word lists over fourteen everyday topics (`sculpt.data.demo_topics`; science
questions carry their own answers). Both sides are drawn from the same recipe (2–6 advice
sentences, sometimes a list, a hedge, a neutral opener, a sign-off), so length, lists and hedges
are balanced. On top of that the chosen side carries two planted concepts at exact, known rates
(`PLANTED`): a flattering opener and markdown bold. A milder, natural signal — a vague filler
sentence, more common on the rejected side — keeps them from being the only one. An audit of this
data should rank the two planted concepts first.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sculpt.data.demo_topics import TOPICS


@dataclass(frozen=True)
class KnownConcept:
    name: str
    description: str
    pattern: str
    """A regex (re.search on the response) that detects the concept."""
    chosen_rate: float
    """Share of chosen responses that carry it (exact for planted concepts)."""
    rejected_rate: float

    def detects(self, text: str) -> bool:
        return re.search(self.pattern, text) is not None


PLANTED: tuple[KnownConcept, ...] = (
    KnownConcept(
        "flattering_opener",
        'opens by praising the question ("Great question!")',
        r"^(?:What an? (?:great|excellent|wonderful|fantastic|thoughtful) question"
        r"|(?:Great|Excellent|Fantastic|Wonderful) question|I love this question"
        r"|Such a (?:great|good) question)",
        0.35,
        0.03,
    ),
    KnownConcept(
        "markdown_bold",
        "key phrases in markdown bold (**like this**)",
        r"\*\*[^*\n]+\*\*",
        0.40,
        0.05,
    ),
)
"""The known answer: concepts planted on the chosen side, at exact rates."""

NATURAL: tuple[KnownConcept, ...] = (
    KnownConcept("list", "a numbered or bulleted list", r"(?m)^(?:\d+\.|-) ", 0.30, 0.30),
    KnownConcept(
        "hedge",
        "a hedge about the reader's situation",
        r"It depends|I might be missing|Your mileage may vary|hard to say for sure",
        0.20,
        0.20,
    ),
    KnownConcept(
        "sign_off",
        "a closing line",
        r"(?:Good luck|Hope that helps|Let me know if you "
        r"want more detail|Happy to go deeper on any of these)[.!]$",
        0.35,
        0.35,
    ),
    KnownConcept(
        "vague_filler",
        "a generic sentence that says nothing",
        r"Everyone's situation is different|There are many factors|It's worth doing "
        r"some research|Results can vary",
        0.12,
        0.28,
    ),
)
"""Concepts left to chance on both sides (drawn per response, so rates are approximate)."""

_OPENERS_FLATTERING = (
    "What a great question!",
    "Great question!",
    "Excellent question —",
    "What an excellent question!",
    "I love this question!",
    "What a thoughtful question!",
    "Fantastic question!",
    "Such a good question!",
)
_OPENERS_NEUTRAL = (
    "Sure.",
    "Here's how I'd approach it.",
    "Short answer: yes, it's doable.",
    "Okay, a few pointers.",
    "Happy to help with that.",
)
_HEDGES = (
    "It depends a bit on your situation, but here is what usually works.",
    "I might be missing details of your setup, so adjust as needed.",
    "Your mileage may vary, but this is a reasonable starting point.",
    "It's hard to say for sure without more context.",
)
_SIGN_OFFS = (
    "Good luck!",
    "Hope that helps.",
    "Let me know if you want more detail.",
    "Happy to go deeper on any of these.",
)
_FILLERS = (
    "Everyone's situation is different.",
    "There are many factors to consider here.",
    "It's worth doing some research before you decide.",
    "Results can vary a lot.",
)
_ASKS = ("", "", "", "Quick question: ", "I'm a beginner. ", "Any advice? ", "Honest opinion: ")
_TAILS = ("", "", "", " Thanks!", " Keep it short please.", " I have about an hour.")

# a [[key phrase]] in a topic's advice sentence: set in bold, or left plain
_KEY = re.compile(r"\[\[([^\]]+)\]\]")


def _fill(template: str, slots: dict[str, list[str]], rng: random.Random) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: rng.choice(slots[m.group(1)]), template)


def _prompt(topic: dict[str, Any], rng: random.Random) -> tuple[str, list[str]]:
    """A prompt and the advice sentences that answer it."""
    if topic.get("questions"):
        text = rng.choice(sorted(topic["questions"]))
        facts = topic["questions"][text]
    else:
        text, facts = _fill(rng.choice(topic["prompts"]), topic["slots"], rng), topic["facts"]
    return f"{rng.choice(_ASKS)}{text}{rng.choice(_TAILS)}", facts


def _response(
    facts: list[str], rng: random.Random, flatter: bool, bold: bool, filler_rate: float
) -> str:
    """One response from the shared recipe; `flatter`/`bold` switch the planted concepts on."""
    facts = rng.sample(facts, rng.randint(2, min(6, len(facts))))
    if rng.random() < filler_rate:
        facts.insert(rng.randrange(len(facts) + 1), rng.choice(_FILLERS))
    emphasized = (
        set(rng.sample(range(len(facts)), min(len(facts), rng.randint(1, 2)))) if bold else set()
    )
    body = [_KEY.sub(r"**\1**" if i in emphasized else r"\1", fact) for i, fact in enumerate(facts)]
    if bold and not any("**" in line for line in body):
        body[0] = f"**{body[0]}**"  # a filler was picked: bold the whole line instead
    if rng.random() < 0.30:
        numbered = rng.random() < 0.5
        text = "\n".join(f"{i + 1}. {b}" if numbered else f"- {b}" for i, b in enumerate(body))
    else:
        text = " ".join(body)
    parts = []
    if flatter:
        parts.append(rng.choice(_OPENERS_FLATTERING))
    elif rng.random() < 0.20:
        parts.append(rng.choice(_OPENERS_NEUTRAL))
    if rng.random() < 0.20:
        parts.append(rng.choice(_HEDGES))
    parts.append(text)
    if rng.random() < 0.35:
        parts.append(rng.choice(_SIGN_OFFS))
    return "\n\n".join(parts) if "\n" in text else " ".join(parts)


def _exact(rng: random.Random, n: int, rate: float) -> set[int]:
    return set(rng.sample(range(n), round(rate * n)))


def generate(n: int = 300, seed: int = 0) -> list[dict[str, str]]:
    """`n` TRL-standard pairs ({prompt, chosen, rejected}); deterministic for a seed."""
    if n < 1:
        raise ValueError(f"n={n}: need at least one pair")
    rng = random.Random(seed)
    opener, bold = PLANTED
    flatter_c, flatter_r = _exact(rng, n, opener.chosen_rate), _exact(rng, n, opener.rejected_rate)
    bold_c, bold_r = _exact(rng, n, bold.chosen_rate), _exact(rng, n, bold.rejected_rate)
    filler = next(c for c in NATURAL if c.name == "vague_filler")
    names = list(TOPICS)
    pairs = []
    for i in range(n):
        topic = TOPICS[names[i % len(names)] if i < len(names) else rng.choice(names)]
        prompt, facts = _prompt(topic, rng)
        chosen = _response(facts, rng, i in flatter_c, i in bold_c, filler.chosen_rate)
        rejected = chosen
        while rejected == chosen:
            rejected = _response(facts, rng, i in flatter_r, i in bold_r, filler.rejected_rate)
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs


def write_demo(path: str | Path, n: int = 300, seed: int = 0) -> Path:
    """Write `generate(n, seed)` as TRL-standard JSON lines; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for pair in generate(n, seed):
            fh.write(json.dumps(pair, ensure_ascii=False) + "\n")
    return out
