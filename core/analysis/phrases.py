"""The phrase that a finding's n-gram fragments spell ("I apologize if" + "if this isn't" → "I
apologize if this isn't"): read off the responses where the finding fires, else by overlaps."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from sculpt.concepts.ngrams import WORD

PHRASE_SPAN = 12
"""Longest phrase, in words (and punctuation marks), that fragments are looked for in."""
TEXTS = 40
"""Responses a phrase is read from."""

_BEFORE_PUNCT = re.compile(r" (?=[!?.,;:)\]’'”]|n't\b)")
_AFTER_OPEN = re.compile(r"(?<=[(\[“‘]) ")


def _wordy(words: Sequence[str]) -> bool:
    """A fragment or overlap that holds a word (a shared "." or "," joins nothing)."""
    return any(w[:1].isalnum() for w in words)


def phrase(grams: Sequence[str], texts: Sequence[str] = ()) -> str:
    """The phrase n-grams (space-joined words, best first) spell: the window of a response that
    holds the most of them, commonest first (as written there), else their overlaps chained."""
    found = phrase_in_texts(grams, texts[:TEXTS]) if texts else None
    return found if found is not None else chained(grams)


def phrase_in_texts(grams: Sequence[str], texts: Sequence[str]) -> str | None:
    """The window (≤ PHRASE_SPAN words) holding the most distinct fragments, over `texts`: the
    one most responses share, as written in the first of them."""
    wanted = [g.split(" ") for g in grams if _wordy(g.split(" "))]
    if not wanted:
        return None
    votes: Counter[tuple[str, ...]] = Counter()
    shown: dict[tuple[str, ...], str] = {}
    for text in texts:
        matches = list(WORD.finditer(text))
        tokens = [m.group() for m in matches]
        window = _best_window(tokens, wanted)
        if window is None:
            continue
        start, end, covered = window
        while start < end - 1 and not _wordy(tokens[start : start + 1]):
            start += 1  # a phrase starts on a word, not on the "." before it
        key = tuple(tokens[start:end])
        votes[key] += covered
        shown.setdefault(key, text[matches[start].start() : matches[end - 1].end()])
    if not votes:
        return None
    best = max(votes, key=lambda k: (votes[k], -len(k)))
    return " ".join(shown[best].split())


def _best_window(tokens: list[str], wanted: list[list[str]]) -> tuple[int, int, int] | None:
    """(start, end, distinct fragments) of the shortest window with the most fragments."""
    hits = sorted(
        (i, i + len(gram), j)
        for j, gram in enumerate(wanted)
        for i in range(len(tokens) - len(gram) + 1)
        if tokens[i : i + len(gram)] == gram
    )
    best: tuple[tuple[int, int], tuple[int, int, int]] | None = None
    for a, (start, _, _) in enumerate(hits[:200]):
        seen: set[int] = set()
        end = start
        for b in range(a, len(hits)):
            if hits[b][1] - start > PHRASE_SPAN:
                break
            seen.add(hits[b][2])
            end = max(end, hits[b][1])
            key = (len(seen), start - end)
            if best is None or key > best[0]:
                best = (key, (start, end, len(seen)))
    return None if best is None or best[1][2] < 2 else best[1]


def chained(grams: Sequence[str]) -> str:
    """Overlapping n-grams chained into one phrase: "I apologize if" + "apologize if this" → "I
    apologize if this"; the first gram is the seed, grams that chain to nothing are left out."""
    words = grams[0].split(" ")
    rest = [g.split(" ") for g in grams[1:]]
    grown = True
    while grown:
        grown = False
        for gram in rest:
            if _inside(gram, words):
                continue
            for size in range(min(len(gram), len(words)), 0, -1):
                if words[-size:] == gram[:size] and _wordy(gram[:size]):
                    words, grown = words + gram[size:], True
                    break
                if gram[-size:] == words[:size] and _wordy(words[:size]):
                    words, grown = gram[:-size] + words, True
                    break
    text = _BEFORE_PUNCT.sub("", " ".join(words))
    return _AFTER_OPEN.sub("", text)


def _inside(gram: list[str], words: list[str]) -> bool:
    return any(words[i : i + len(gram)] == gram for i in range(len(words) - len(gram) + 1))
