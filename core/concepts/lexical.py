"""Lexical concepts: built-in detectors of what post-training over-learns, plus user regexes.

Each detector counts matches per span (`lex:length` counts words). Markdown detectors ignore text
inside code (fenced blocks and inline code), so `**kwargs` in a code block is not bold. Scoring
is vectorized: all spans are joined into one string, each pattern runs once, and match positions
are mapped back to spans with a binary search.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.concepts.registry import Concept, pair_spans, score_table, write_concepts
from sculpt.errors import UserError
from sculpt.lake.store import Lake

_SEPARATOR = "\n\x00\n"
r"""Joins spans; built-in patterns never match NUL, `^`/`$` anchors stay within a span, and a
span's start is `\A` or right after the separator."""

_EMOJI_BASE = (
    "[\U0001f300-\U0001f3fa\U0001f400-\U0001faff\u2600-\u27bf\u2b50\u2b55\u2b1b\u2b1c"
    "\u231a\u231b\u23e9-\u23fa\U0001f004\U0001f0cf\U0001f170-\U0001f251]"
)
_EMOJI_MODIFIER = "(?:\ufe0f|[\U0001f3fb-\U0001f3ff])*"
EMOJI = (
    "[\U0001f1e6-\U0001f1ff]{2}"  # a flag: two regional indicators
    "|[#*0-9]\ufe0f?\u20e3"  # a keycap
    f"|{_EMOJI_BASE}{_EMOJI_MODIFIER}(?:\u200d{_EMOJI_BASE}{_EMOJI_MODIFIER})*"  # ZWJ sequence
)

_FLATTERING = (
    r"(?i)(?:\A|(?<=\x00\n))[^\w\x00]*(?:(?:what|such) an? (?:\w+ )?(?:great|excellent|wonderful|fantastic|insightful|"
    r"thoughtful|interesting|good|amazing|brilliant|fascinating|important)\b"
    r"|(?:great|excellent|good|fantastic|wonderful|awesome|brilliant|amazing|insightful|"
    r"thoughtful|fascinating) (?:question|point|idea|observation|thinking|thought)\b"
    r"|(?:that's|that is|this is|it's|what) an? (?:\w+ )?(?:great|excellent|wonderful|"
    r"fantastic|insightful|thoughtful|interesting|good|amazing|brilliant|fascinating) "
    r"(?:question|point|idea|observation|thought)\b"
    r"|I love (?:this|that|your) (?:question|idea)\b|you're (?:absolutely|so|totally) right\b"
    r"|(?:absolutely|great|excellent|wonderful)[!,])"
)


@dataclass(frozen=True)
class Detector:
    """A per-span count of a pattern's matches."""

    name: str
    pattern: str
    description: str
    skip_code: bool = False
    """Ignore matches inside fenced or inline code."""

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.MULTILINE)


BUILTIN: dict[str, Detector] = {
    d.name: d
    for d in [
        Detector(
            "bold",
            r"\*\*(?=\S)[^\n]+?(?<=\S)\*\*|__(?=\S)[^\n]+?(?<=\S)__",
            "markdown bold spans",
            skip_code=True,
        ),
        Detector("header", r"^ {0,3}#{1,6}[ \t]+\S", "markdown headers", skip_code=True),
        Detector(
            "bullet_list",
            r"^[ \t]*[-*+•][ \t]+(?![-*_ \t]*$)\S",
            "bullet list items",
            skip_code=True,
        ),
        Detector(
            "numbered_list", r"^[ \t]*\d{1,3}[.)][ \t]+\S", "numbered list items", skip_code=True
        ),
        Detector(
            "table",
            r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+\|?[ \t]*$",
            "markdown tables (header separator rows)",
            skip_code=True,
        ),
        Detector(
            "horizontal_rule",
            r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$",
            "horizontal rules",
            skip_code=True,
        ),
        Detector("emoji", EMOJI, "emoji (a ZWJ sequence, flag or keycap counts once)"),
        Detector("em_dash", "\u2014", "em-dashes"),
        Detector("exclamation", r"!(?!=)", "exclamation marks", skip_code=True),
        Detector("url", r"\b(?:https?://|www\.)[^\s<>()]*[^\s<>().,;:!?'\"]", "URLs"),
        Detector(
            "code_block",
            r"^[ \t]*(```|~~~)[^\n]*\n(?:[^\n\x00]*\n)*?[ \t]*\1[ \t]*$",
            "fenced code blocks",
        ),
        Detector("length", r"[^\s\x00]+", "response length in words"),
        Detector(
            "refusal",
            r"(?i)\bI (?:can(?:'t|not)|won't|will not|am (?:not able|unable)|"
            r"'m (?:not able|unable)) (?:to )?(?:help|assist|provide|do|comply|support|"
            r"fulfill|engage|answer|give|create|write)\b|\bas an AI\b|\bI must decline\b",
            "refusal phrases",
        ),
        Detector("apology", r"(?i)\b(?:sorry|apologi[sz]e|apologies)\b", "apologies"),
        Detector("flattering_opener", _FLATTERING, "a compliment as the first words"),
        Detector(
            "hedge",
            r"(?i)\b(?:might|perhaps|possibly|probably|it seems|I think|I believe|"
            r"it depends|generally|typically|arguably|not sure|may be)\b",
            "hedges",
        ),
        Detector(
            "first_person_feeling",
            r"(?i)\bI (?:feel|felt|love|enjoy|hope|worry)\b|\bI(?:'m|"
            r" am) (?:so |really |very )?(?:happy|glad|excited|thrilled|delighted|sad|"
            r"worried|afraid|grateful|honored|curious)\b",
            "first-person feelings",
        ),
    ]
}

_FENCED = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(?:.*\n)*?[ \t]*\1[ \t]*$", re.M)
_UNCLOSED = re.compile(r"^[ \t]*(?:```|~~~).*\Z", re.M | re.S)
_INLINE = re.compile(r"`[^`\n]+`")


def strip_code(text: str) -> str:
    """`text` with fenced blocks (closed or not) and inline code replaced by a space."""
    if "`" not in text and "~~~" not in text:
        return text
    text = _FENCED.sub(" ", text)
    text = _UNCLOSED.sub(" ", text)
    return _INLINE.sub(" ", text)


def normalize(text: str) -> str:
    """Curly apostrophes as straight ones, so phrase patterns see one spelling."""
    return text.replace("\u2019", "'").replace("\x00", " ")


def count_matches(pattern: re.Pattern[str], texts: Sequence[str]) -> np.ndarray:
    """Matches of `pattern` in each text, with one regex pass over all of them."""
    if not texts:
        return np.zeros(0)
    joined = _SEPARATOR.join(texts)
    lengths = np.fromiter((len(t) + len(_SEPARATOR) for t in texts), np.int64, len(texts))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    positions = np.fromiter((m.start() for m in pattern.finditer(joined)), np.int64)
    owners = np.searchsorted(starts, positions, side="right") - 1
    return np.bincount(owners, minlength=len(texts)).astype(np.float64)


def score_texts(
    texts: Sequence[str], detectors: dict[str, Detector] | None = None
) -> dict[str, np.ndarray]:
    """name → per-text scores for every detector (built-ins by default)."""
    detectors = BUILTIN if detectors is None else detectors
    plain = [normalize(t) for t in texts]
    no_code = [strip_code(t) for t in plain]
    return {
        name: count_matches(d.compiled(), no_code if d.skip_code else plain)
        for name, d in detectors.items()
    }


def score_text(text: str) -> dict[str, float]:
    """concept name → score of one text under the built-in detectors."""
    return {name: float(v[0]) for name, v in score_texts([text]).items()}


def load_user_detectors(path: str | Path) -> dict[str, Detector]:
    """Regex concepts from YAML: `name: PATTERN` or `name: {pattern, description, ignore_case}`."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(
            f"{path}: cannot read ({exc.strerror}); pass an existing YAML file"
        ) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and isinstance(data.get("concepts"), dict | list):
        data = data["concepts"]
    if isinstance(data, list):
        data = {str(item.get("name")): item for item in data if isinstance(item, dict)}
    if not isinstance(data, dict) or not data:
        raise UserError(
            f"{path}: expected a mapping of concept name to regex, e.g. `hype: amazing`"
        )
    return {str(name): _user_detector(path, str(name), spec) for name, spec in data.items()}


def _user_detector(path: Path, name: str, spec: Any) -> Detector:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"{path}: concept {name!r}: use letters, digits, _ . - in names")
    if isinstance(spec, str):
        spec = {"pattern": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("pattern"), str):
        raise UserError(f"{path}: concept {name}: needs a `pattern` string")
    unknown = set(spec) - {"pattern", "description", "ignore_case", "skip_code", "name"}
    if unknown:
        raise UserError(f"{path}: concept {name}: unknown keys {', '.join(sorted(unknown))}")
    pattern = ("(?i)" if spec.get("ignore_case") else "") + spec["pattern"]
    try:
        re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise UserError(f"{path}: concept {name}: bad regex {spec['pattern']!r} ({exc})") from None
    return Detector(
        name,
        pattern,
        str(spec.get("description") or spec["pattern"]),
        skip_code=bool(spec.get("skip_code", False)),
    )


def score_dataset(lake: Lake, dataset: str, file: str | Path | None = None) -> list[Concept]:
    """Score built-ins (+ the YAML file's regexes) on every span of `pairs`; family `lexical`."""
    detectors = dict(BUILTIN)
    if file is not None:
        detectors.update(load_user_detectors(file))
    spans = pair_spans(lake, dataset)
    scores = score_texts(spans.texts, detectors)
    concepts = [
        Concept(
            f"lex:{name}",
            "lexical",
            d.description,
            members=[name],
            source={
                "pattern": d.pattern,
                "builtin": BUILTIN.get(name) == d,
                "skip_code": d.skip_code,
                "file": str(file) if file else None,
            },
        )
        for name, d in detectors.items()
    ]
    matrix = np.stack([scores[name] for name in detectors])
    write_concepts(
        lake,
        dataset,
        "lexical",
        concepts,
        score_table([c.concept_id for c in concepts], spans, matrix),
    )
    return concepts
