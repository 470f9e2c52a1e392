"""Findings on small synthetic lakes: concepts of every kind that carry one signal are one
finding, distinct signals stay apart, n-gram fragments become their phrase, a null finds nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sculpt.analysis.analyze import analyze
from sculpt.analysis.config import AnalyzeConfig
from sculpt.analysis.findings import read_findings, read_members
from sculpt.analysis.phrases import chained
from sculpt.concepts import lexical
from sculpt.concepts.ngrams import NgramConfig, discover_ngrams, span_counts
from sculpt.concepts.registry import Concept, pair_spans, score_table, write_concepts
from sculpt.lake.store import Lake

WORDS = (
    "the a water garden light plan money sleep food music code paint walk rest call list "
    "time day week start small large quick slow good fine simple clear"
).split()
PHRASE = "I apologize if this is wrong, but"
FRAGMENTS = ("I apologize if", "apologize if this", "is wrong , but")


def _text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(12, 30)))) + "."


def write_lake(
    lake: Lake, dataset: str, n: int = 400, seed: int = 0, null: bool = False, discover: bool = True
) -> None:
    """Pairs with two planted signals on disjoint fifths of the chosen side (an apologetic
    phrase, markdown bold); `null` flips a coin for which side each pair's response is on. The
    n-grams are discovered (so chosen for leaning in this very data), or with `discover` off,
    fixed fragments of the phrase (so a null's p-values stay honest)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        chosen, rejected = _text(rng), _text(rng)
        if i % 10 in (0, 1):
            chosen = f"{PHRASE} {chosen}"
        elif i % 10 in (2, 3):
            chosen = f"{chosen} Tip: **key point** matters."
        if null and rng.random() < 0.5:
            chosen, rejected = rejected, chosen
        prompt = json.dumps([{"role": "user", "content": f"question {i}"}])
        rows.append(
            {
                "pair_id": hashlib.sha256(f"{prompt}{chosen}{rejected}".encode()).hexdigest()[:16],
                "row": i,
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "source": "synthetic.jsonl",
                "meta": "{}",
            }
        )
    lake.replace_partition("pairs", {"dataset": dataset}, pa.Table.from_pylist(rows))
    spans = pair_spans(lake, dataset, sides=("chosen", "rejected"))
    bold = lexical.score_texts(spans.texts)["bold"]
    write_concepts(
        lake,
        dataset,
        "lexical",
        [Concept("lex:bold", "lexical", "markdown bold spans")],
        score_table(["lex:bold"], spans, bold[None, :]),
    )
    # the same signal as a vector concept: a continuous score, in other units, with noise
    twin = 3.0 * bold + rng.normal(0.0, 0.05, size=bold.shape)
    write_concepts(
        lake,
        dataset,
        "vector-bold_twin",
        [Concept("vec:bold_twin", "vector", "bold direction")],
        score_table(["vec:bold_twin"], spans, twin[None, :]),
    )
    if discover:
        discover_ngrams(lake, dataset, NgramConfig(top=15))
    else:
        counts = span_counts(spans.texts, list(FRAGMENTS), 4)
        write_concepts(
            lake,
            dataset,
            "ngram",
            [Concept(f"ngram:{g}", "ngram", g) for g in FRAGMENTS],
            score_table([f"ngram:{g}" for g in FRAGMENTS], spans, counts),
        )
    analyze(lake, dataset, AnalyzeConfig(n_boot=200, n_perm=2000), progress=False)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake.open(tmp_path_factory.mktemp("findings"))
    write_lake(lake, "planted")
    return lake


def _holding(findings: list[dict], concept_id: str) -> list[dict]:
    return [f for f in findings if concept_id in f["members"]]


def test_one_signal_in_several_kinds_is_one_finding(planted: Lake) -> None:
    findings = read_findings(planted, "planted")
    bold = _holding(findings, "lex:bold")
    assert len(bold) == 1 and "vec:bold_twin" in bold[0]["members"]
    assert bold[0]["label"] == "markdown bold spans"  # a lexical detector names it
    assert {"lexical", "vector", "ngram"} <= set(bold[0]["kinds"].split(","))
    # one scale for every kind: a share of pairs (a fifth of them carry bold on the chosen side)
    assert 0.15 < bold[0]["delta"] < 0.25 and bold[0]["lean"] == "chosen"
    assert bold[0]["ci_lo"] < bold[0]["delta"] < bold[0]["ci_hi"] and bold[0]["q"] < 1e-6
    members = read_members(planted, "planted", bold[0]["finding_id"])
    assert [m["concept_id"] for m in members] == bold[0]["members"]
    assert all(m["q"] is not None and m["agreement"] > 0.8 for m in members if m["role"] == "echo")


def test_distinct_signals_stay_apart_and_lead(planted: Lake) -> None:
    findings = read_findings(planted, "planted")
    apology = [f for f in findings if "ngram:apologize" in f["members"]]
    bold = _holding(findings, "lex:bold")
    assert len(apology) == 1 and apology[0] != bold[0]
    assert {f["finding_id"] for f in findings[:2]} == {
        apology[0]["finding_id"],
        bold[0]["finding_id"],
    }
    assert [f["rank"] for f in findings] == list(range(1, len(findings) + 1))


def test_ngram_fragments_of_one_phrase_become_the_phrase(planted: Lake) -> None:
    findings = read_findings(planted, "planted")
    fragments = [c for f in findings for c in f["members"] if c.startswith("ngram:")]
    words = {"I", "apologize", "if", "this", "is", "wrong", "but"}
    mine = [c for c in fragments if set(c.removeprefix("ngram:").split()) <= words]
    assert len(mine) >= 3, fragments
    holders = {f["finding_id"] for c in mine for f in _holding(findings, c)}
    assert len(holders) == 1
    (finding,) = [f for f in findings if f["finding_id"] in holders]
    assert finding["label"] == f"“{PHRASE}”"
    assert finding["label_concept"].startswith("ngram:")


def test_phrase_joins_overlapping_fragments() -> None:
    assert chained(["apologize if this", "I apologize if", "is wrong , but", "this is"]) == (
        "I apologize if this is wrong, but"
    )
    assert chained(["different", "situation is", ". Everyone's", "is different"]) == (
        "situation is different"
    )


def test_coin_flip_null_yields_no_significant_finding(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path)
    write_lake(lake, "null", null=True, discover=False)
    findings = read_findings(lake, "null")
    assert len(findings) >= 2
    assert all(f["q"] >= 0.05 for f in findings), [(f["label"], f["q"]) for f in findings]
    # structure survives a null: the fragments of the phrase still make one finding
    holders = {f["finding_id"] for f in findings for c in f["members"] if c[6:] in FRAGMENTS}
    assert len(holders) == 1
