"""Lexical detectors on known strings (tricky ones included), user regexes, n-grams."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
import re2

from sculpt.cli.main import main
from sculpt.concepts.lexical import (
    BUILTIN,
    compile_pattern,
    count_matches,
    count_words,
    load_user_detectors,
    score_dataset,
    score_text,
    score_texts,
    stored_detector,
)
from sculpt.concepts.ngrams import NgramConfig, discover_ngrams, fightin_words
from sculpt.errors import UserError
from sculpt.lake.store import Lake

CASES = [
    ("**Bold** and __also bold__ but 2 ** 3 is math", {"bold": 2}),
    (
        "```python\nf(**kwargs)  # **not bold**\n```\nafter `**inline**` code",
        {"bold": 0, "code_block": 1},
    ),
    ("```\nunclosed **fence**", {"bold": 0}),
    ("# Title\n## Sub\nnot#header", {"header": 2}),
    ("- a\n* b\n+ c\n---\n* * *", {"bullet_list": 3, "horizontal_rule": 2}),
    ("1. one\n2) two\n2024 was a year.", {"numbered_list": 2}),
    ("| a | b |\n|---|:---:|\n| 1 | 2 |", {"table": 1}),
    ("family 👨‍👩‍👧‍👦, flag 🇫🇷, thumbs 👍🏽, heart ❤️, keycap 1️⃣, plain 3 → ©", {"emoji": 5}),
    ("wait — really — yes – no", {"em_dash": 2}),
    ("Wow! Really!! x != y", {"exclamation": 3}),
    ("see https://example.org/a?b=1. or www.foo.com!", {"url": 2, "exclamation": 1}),
    ("I’m sorry, but I can’t help with that.", {"refusal": 1, "apology": 1}),
    ("As an AI, I cannot provide that. I apologize.", {"refusal": 2, "apology": 1}),
    ("I'm unable to help with that, and I'm not able to give advice.", {"refusal": 2}),
    ("**Great question!** Let me explain.", {"flattering_opener": 1}),
    ("What a thoughtful question.", {"flattering_opener": 1}),
    ("The question is great.", {"flattering_opener": 0}),
    ("It depends; perhaps I think so.", {"hedge": 3}),
    ("I feel happy and I'm so excited!", {"first_person_feeling": 2}),
    ("one two  three\nfour", {"length": 4}),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_detector_counts(text: str, expected: dict[str, float]) -> None:
    scores = score_text(text)
    assert {k: scores[k] for k in expected} == expected


def test_joined_scoring_equals_one_text_at_a_time() -> None:
    texts = [t for t, _ in CASES]
    together = score_texts(texts)
    for i, text in enumerate(texts):
        alone = score_text(text)
        assert {k: v[i] for k, v in together.items()} == alone


def test_user_regexes_and_bad_regex(tmp_path: Path) -> None:
    good = tmp_path / "concepts.yaml"
    good.write_text("hype: {pattern: 'amazing|incredible', ignore_case: true}\nsure: '^Sure'\n")
    detectors = load_user_detectors(good)
    assert score_texts(["Sure, AMAZING and incredible."], detectors)["hype"][0] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("broken: '(unclosed'\n")
    with pytest.raises(UserError, match=r"bad\.yaml: concept broken: bad regex"):
        load_user_detectors(bad)


def test_builtin_patterns_run_on_a_linear_time_engine() -> None:
    """RE2 takes only patterns it can match in time linear in the text (no lookaround or
    backreference), so a crafted response cannot stall an audit."""
    for detector in BUILTIN.values():
        re2.compile(detector.pattern)


def _finishes(script: str, bound_s: int = 120) -> None:
    """Run `script` in a fresh interpreter; a quadratic or exponential pass would outlast the
    generous bound by far (the adversarial inputs take minutes to hours on a backtracking engine)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=bound_s,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still matching after {bound_s}s: not linear in the text")
    assert done.returncode == 0, done.stderr


def test_adversarial_responses_score_in_one_pass() -> None:
    _finishes(
        r"""
        from sculpt.concepts.lexical import score_texts
        from sculpt.concepts.ngrams import words
        n = 400_000
        texts = [
            ("**a " * n)[:n],  # bold opened on every word, never closed
            ("__a " * n)[:n],
            ("```a\n" * n)[:n],  # fences that never close
            ("~~~a\n" + "x\n" * n)[:n],
            ("`a " * n)[:n],
            ("- " * n)[:n] + "x",
            ("www." * n)[:n] + "(",
            ("!" * n)[:n],
            ("Great " * n)[:n],
        ]
        scores = score_texts(texts)
        assert scores["bold"][0] == 0 and scores["code_block"][2] == 0
        assert words("a'" * n)[1:] == ["'"]  # one word with inner apostrophes, one mark
        """
    )


def test_user_regexes_run_on_a_linear_time_engine(tmp_path: Path) -> None:
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text("nested: '(a+)+b'\nalt: '(a|aa)*c'\n")  # exponential when backtracking
    _finishes(
        f"""
        from sculpt.concepts.lexical import load_user_detectors, score_texts
        scores = score_texts(["a" * 100_000], load_user_detectors({str(concepts)!r}))
        assert scores["nested"][0] == 0 and scores["alt"][0] == 0
        """
    )


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("x(?=y)", "lookaround"), ("(a)\\1", "backreference"), ("a++", "possessive")],
)
def test_user_regex_that_needs_backtracking_is_one_line_error(
    tmp_path: Path, pattern: str, why: str
) -> None:
    bad = tmp_path / "slow.yaml"
    bad.write_text(f"peek: '{pattern}'\n")
    with pytest.raises(UserError) as caught:
        load_user_detectors(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad}: concept peek: bad regex {pattern!r}")
    assert "RE2" in message and "rewrite it" in message and "\n" not in message
    lake = pairs_lake(tmp_path / "lake")
    assert main(["concept", "lexical", "d", "--file", str(bad), "--lake", str(lake.root)]) == 2


def test_word_count_is_what_the_length_pattern_counts() -> None:
    texts = ["a\xa0b\u2003c", "x\x0by\x1cz\x85w", "one  two\n\tthree", "", " \u3000 "]
    pattern = compile_pattern(BUILTIN["length"].pattern)
    assert count_words(texts).tolist() == count_matches(pattern, texts).tolist() == [3, 4, 3, 0, 0]


def test_stored_builtin_is_scored_by_todays_definition() -> None:
    old_bold = {"pattern": r"\*\*(?=\S)[^\n]+?(?<=\S)\*\*", "builtin": True}
    assert stored_detector("lex:bold", old_bold) == BUILTIN["bold"]
    user = stored_detector("lex:hype", {"pattern": "amazing", "builtin": False})
    assert score_texts(["amazing, amazing"], {"hype": user})["hype"][0] == 2


def pairs_lake(root: Path, n: int = 60) -> Lake:
    lake = Lake.open(root)
    rows = [
        {
            "pair_id": f"{i:016x}",
            "row": i,
            "prompt": json.dumps([{"role": "user", "content": f"Question {i}?"}]),
            "chosen": ("Great question! " if i % 2 else "") + f"Here is **the answer** number {i}.",
            "rejected": f"I am not sure about answer {i}, sorry.",
            "source": "t",
            "meta": "{}",
        }
        for i in range(n)
    ]
    lake.replace_partition("pairs", {"dataset": "d"}, pa.Table.from_pylist(rows))
    return lake


def test_score_dataset_writes_concepts_and_scores(tmp_path: Path) -> None:
    lake = pairs_lake(tmp_path / "lake")
    concepts = score_dataset(lake, "d")
    assert {c.concept_id for c in concepts} == {f"lex:{n}" for n in BUILTIN}
    bold = lake.sql(
        "select side, sum(score) as s from concept_scores where concept_id = "
        "'lex:bold' group by side order by side"
    ).to_pylist()
    assert bold == [
        {"side": "chosen", "s": 60.0},
        {"side": "prompt", "s": 0.0},
        {"side": "rejected", "s": 0.0},
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("x: '['\n")
    assert main(["concept", "lexical", "d", "--file", str(bad), "--lake", str(lake.root)]) == 2


def test_fightin_words_finds_the_planted_ngrams(tmp_path: Path) -> None:
    chosen = [f"Great question! The answer is {i}." for i in range(50)]
    rejected = [f"Not sure, the answer is {i}." for i in range(50)]
    results = fightin_words(chosen, rejected, NgramConfig(top=5, min_count=5))
    leaning = {r.text: r.z for r in results}
    assert leaning["Great"] > 2 and leaning["question"] > 2 and "Great question" not in leaning
    assert leaning["Not"] < -2 and leaning["sure"] < -2
    lake = pairs_lake(tmp_path / "lake")
    found = discover_ngrams(lake, "d", NgramConfig(top=20, min_count=5))
    assert any(r.text == "Great" for r in found)
    assert (
        lake.sql(
            "select count(*) as n from concept_scores where concept_id = "
            "'ngram:Great' and score > 0"
        )
        .column("n")[0]
        .as_py()
        == 30
    )


def test_highlights_mark_what_the_detector_counts() -> None:
    """The TUI and the report mark matches with the scoring engine (a stored built-in by today's
    definition), so a crafted response can't stall a pair view either."""
    from sculpt.concepts.evidence import highlight_pattern, matches

    def marks(concept_id: str, pattern: str, text: str) -> list[tuple[int, int]]:
        source = {"pattern": pattern, "builtin": concept_id.removeprefix("lex:") in BUILTIN}
        row = {"concept_id": concept_id, "source": json.dumps(source)}
        return matches(highlight_pattern(row), text)

    assert marks("lex:bold", BUILTIN["bold"].pattern, "a **b** c") == [(2, 7)]
    assert marks("lex:bold", r"\*\*(?=\S)[^\n]+?(?<=\S)\*\*", "a **b** c") == [(2, 7)]
    assert marks("lex:exclamation", BUILTIN["exclamation"].pattern, "x != y!") == [(6, 7)]
    assert marks("lex:hype", "amazing", "so amazing") == [(3, 10)]
