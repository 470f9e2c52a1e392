"""Lexical concepts: built-in detectors of what post-training over-learns, plus user regexes.

Each detector counts matches per span (`lex:length` counts words). Markdown detectors ignore text
inside code (fenced blocks and inline code), so `**kwargs` in a code block is not bold. Scoring
is vectorized: all spans are joined into one string, each pattern runs once, and match positions
are mapped back to spans with a binary search.

Every pattern, built-in or from a user's YAML, runs on RE2, whose time is linear in the text: a
backtracking engine can take minutes on one crafted response (`**a ` repeated is quadratic
there), and ingest accepts 16 MiB lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import re2

from sculpt.concepts.registry import Concept, pair_spans, score_table, write_concepts
from sculpt.errors import UserError
from sculpt.lake.store import Lake

_SEPARATOR = b"\n\x00\n"
r"""Joins spans; built-in patterns never match NUL, `^`/`$` anchors stay within a span, and a
span's start is `\A` or right after `\x00\n`."""

# RE2 spells Python's Unicode classes out: its own \s and \w are ASCII only (its \b is too, which
# only matters next to non-ASCII letters; the phrase detectors are English).
_SPACE = r"\t-\r\x1c-\x1f\x{85}\p{Z}"
_WORD = r"\p{L}\p{N}_"
_NONSPACE = f"[^{_SPACE}]"

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
    rf"(?i)(?:\A|\x00\n)[^{_WORD}\x00]*(?:(?:what|such) an? (?:[{_WORD}]+ )?(?:great|excellent|"
    r"wonderful|fantastic|insightful|"
    r"thoughtful|interesting|good|amazing|brilliant|fascinating|important)\b"
    r"|(?:great|excellent|good|fantastic|wonderful|awesome|brilliant|amazing|insightful|"
    r"thoughtful|fascinating) (?:question|point|idea|observation|thinking|thought)\b"
    rf"|(?:that's|that is|this is|it's|what) an? (?:[{_WORD}]+ )?(?:great|excellent|wonderful|"
    r"fantastic|insightful|thoughtful|interesting|good|amazing|brilliant|fascinating) "
    r"(?:question|point|idea|observation|thought)\b"
    r"|I love (?:this|that|your) (?:question|idea)\b|you're (?:absolutely|so|totally) right\b"
    r"|(?:absolutely|great|excellent|wonderful)[!,])"
)

SKIP_GROUP = "skip"
"""A match in which the group `(?P<skip>…)` took part is not counted: RE2 has no lookahead, so
"`!` not followed by `=`" is written `!(?P<skip>=)?`."""


class PatternError(ValueError):
    """A pattern the linear-time engine cannot run; the message says why."""


def compile_pattern(pattern: str) -> Any:
    """`pattern` compiled for RE2, whose matching time is linear in the text (no backtracking);
    `^`/`$` match at line ends. Raises `PatternError`."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile("(?m)" + pattern, options)
    except re2.error as exc:
        why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        try:
            re.compile(pattern)
        except re.error as py_exc:
            raise PatternError(str(py_exc)) from None
        raise PatternError(
            f"RE2 cannot run it: {why}; sculpt matches on RE2, in time linear in the text, so "
            "there are no lookarounds, backreferences, possessive or atomic groups, and "
            "repeats stop at {1000}; rewrite it without them (a group "
            f"(?P<{SKIP_GROUP}>…) marks matches not to count)"
        ) from None


@dataclass(frozen=True)
class Detector:
    """A per-span count of a pattern's matches."""

    name: str
    pattern: str
    description: str
    skip_code: bool = False
    """Ignore matches inside fenced or inline code."""
    counts_words: bool = False
    """Count with `str.split` what `pattern` matches (runs of non-space): the same number
    without a Python call per match, which on every word would dominate scoring."""

    def compiled(self) -> Any:
        return compile_pattern(self.pattern)


def _fenced_block(fence: str) -> str:
    return rf"^[ \t]*{fence}[^\n]*\n(?:[^\n\x00]*\n)*?[ \t]*{fence}[ \t]*$"


def _rule(mark: str) -> str:
    return rf"{mark}(?:[ \t]*{mark}){{2,}}"


BUILTIN: dict[str, Detector] = {
    d.name: d
    for d in [
        Detector(
            "bold",
            rf"\*\*(?:{_NONSPACE}|{_NONSPACE}[^\n]*?{_NONSPACE})\*\*"
            rf"|__(?:{_NONSPACE}|{_NONSPACE}[^\n]*?{_NONSPACE})__",
            "markdown bold spans",
            skip_code=True,
        ),
        Detector(
            "header", rf"^ {{0,3}}#{{1,6}}[ \t]+{_NONSPACE}", "markdown headers", skip_code=True
        ),
        Detector(
            "bullet_list",
            rf"^[ \t]*[-*+•][ \t]+(?:(?P<{SKIP_GROUP}>[-*_ \t]*$)|{_NONSPACE})",
            "bullet list items",
            skip_code=True,
        ),
        Detector(
            "numbered_list",
            rf"^[ \t]*\d{{1,3}}[.)][ \t]+{_NONSPACE}",
            "numbered list items",
            skip_code=True,
        ),
        Detector(
            "table",
            r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+\|?[ \t]*$",
            "markdown tables (header separator rows)",
            skip_code=True,
        ),
        Detector(
            "horizontal_rule",
            "^ {0,3}(?:" + "|".join(map(_rule, ("-", r"\*", "_"))) + r")[ \t]*$",
            "horizontal rules",
            skip_code=True,
        ),
        Detector("emoji", EMOJI, "emoji (a ZWJ sequence, flag or keycap counts once)"),
        Detector("em_dash", "\u2014", "em-dashes"),
        Detector("exclamation", rf"!(?P<{SKIP_GROUP}>=)?", "exclamation marks", skip_code=True),
        Detector(
            "url",
            rf"\b(?:https?://|www\.)[^{_SPACE}<>()]*[^{_SPACE}<>().,;:!?'\"]",
            "URLs",
        ),
        Detector(
            "code_block",
            f"{_fenced_block('```')}|{_fenced_block('~~~')}",
            "fenced code blocks",
        ),
        Detector("length", rf"[^{_SPACE}\x00]+", "response length in words", counts_words=True),
        Detector(
            "refusal",
            r"(?i)\bI(?: (?:can(?:'t|not)|won't|will not|am (?:not able|unable))|"
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

_FENCES = ("```", "~~~")


def _closes(line: str, fence: str) -> bool:
    return line.strip(" \t") == fence


def strip_code(text: str) -> str:
    """`text` with fenced blocks (closed or not) and inline code replaced by a space.

    One pass over the lines, not a regex: a fence that never closes must not make every later
    line rescan the rest of the text."""
    if "`" not in text and "~~~" not in text:
        return text
    kept: list[str] = []
    fence = ""
    for line in text.split("\n"):
        if fence:
            if _closes(line, fence):
                fence = ""
            continue
        opener = line.lstrip(" \t")[:3]
        if opener in _FENCES:
            fence = opener
            kept.append(" ")
            continue
        kept.append(_strip_inline(line) if "`" in line else line)
    return "\n".join(kept)


def _strip_inline(line: str) -> str:
    """`line` with each `code` span (backticks around a non-empty run) replaced by a space."""
    pieces = line.split("`")
    out = [pieces[0]]
    i = 1
    while i < len(pieces):
        if i + 1 < len(pieces) and pieces[i]:
            out.append(" " + pieces[i + 1])  # pieces[i] was inside a pair of backticks
            i += 2
        else:
            out.append("`" + pieces[i])
            i += 1
    return "".join(out)


def normalize(text: str) -> str:
    """Curly apostrophes as straight ones, so phrase patterns see one spelling."""
    return text.replace("\u2019", "'").replace("\x00", " ")


def count_matches(pattern: Any, texts: Sequence[str]) -> np.ndarray:
    """Matches of `pattern` (from `compile_pattern`) in each text, with one pass over all of
    them; a match belongs to the text holding its last character (a span-start pattern begins on
    the separator)."""
    if not texts:
        return np.zeros(0)
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    joined = _SEPARATOR.join(encoded)
    lengths = np.fromiter((len(b) + len(_SEPARATOR) for b in encoded), np.int64, len(texts))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    skip = pattern.groupindex.get(SKIP_GROUP)
    spans = (m.span() for m in pattern.finditer(joined) if skip is None or m.start(skip) < 0)
    positions = np.fromiter((max(start, end - 1) for start, end in spans), np.int64)
    owners = np.searchsorted(starts, positions, side="right") - 1
    return np.bincount(owners, minlength=len(texts)).astype(np.float64)


def count_words(texts: Sequence[str]) -> np.ndarray:
    """Runs of non-space characters in each text (`normalize` has made NUL a space)."""
    return np.fromiter((len(t.split()) for t in texts), np.float64, len(texts))


def score_texts(
    texts: Sequence[str], detectors: dict[str, Detector] | None = None
) -> dict[str, np.ndarray]:
    """name → per-text scores for every detector (built-ins by default)."""
    detectors = BUILTIN if detectors is None else detectors
    plain = [normalize(t) for t in texts]
    no_code = [strip_code(t) for t in plain]
    scores = {}
    for name, d in detectors.items():
        chosen = no_code if d.skip_code else plain
        scores[name] = (
            count_words(chosen) if d.counts_words else count_matches(d.compiled(), chosen)
        )
    return scores


def score_text(text: str) -> dict[str, float]:
    """concept name → score of one text under the built-in detectors."""
    return {name: float(v[0]) for name, v in score_texts([text]).items()}


def load_user_detectors(path: str | Path) -> dict[str, Detector]:
    """Regex concepts from YAML: `name: PATTERN` or `name: {pattern, description, ignore_case}`.

    Patterns run on RE2 (see `compile_pattern`): Python syntax without lookarounds or
    backreferences."""
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
        compile_pattern(pattern)
    except PatternError as exc:
        raise UserError(f"{path}: concept {name}: bad regex {spec['pattern']!r} ({exc})") from None
    return Detector(
        name,
        pattern,
        str(spec.get("description") or spec["pattern"]),
        skip_code=bool(spec.get("skip_code", False)),
    )


def stored_detector(concept_id: str, source: Mapping[str, Any]) -> Detector:
    """The detector a `concepts` row of family `lexical` describes: a built-in by today's
    definition (older lakes hold built-in patterns RE2 cannot run), a user regex by its pattern."""
    name = concept_id.removeprefix("lex:")
    if source.get("builtin") and name in BUILTIN:
        return BUILTIN[name]
    return Detector(name, str(source["pattern"]), "", bool(source.get("skip_code")))


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
