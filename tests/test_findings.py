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
from sculpt.analysis.config import AnalyzeConfig, latest_analysis
from sculpt.analysis.findings import read_findings, read_members
from sculpt.analysis.phrases import chained
from sculpt.cli.main import main
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


def test_findings_command_prints_one_json_object_per_finding(
    planted: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["findings", "planted", "--lake", str(planted.root), "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    keys = {"finding_id", "label", "members", "lean", "delta", "ci_lo", "ci_hi", "d", "q"}
    assert rows and all(keys | {"split_half_ok", "n_pairs"} <= set(r) for r in rows)
    assert rows[0]["n_pairs"] == 400 and isinstance(rows[0]["members"], list)
    argv = ["findings", "planted", "--lake", str(planted.root), "--lean", "rejected", "--top", "2"]
    assert main([*argv, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("finding_id,rank,label,members") and 1 <= len(lines) <= 3
    assert all(",rejected," in line for line in lines[1:])


def test_findings_table_shows_data_text_visibly(
    planted: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    key = latest_analysis(planted, "planted")
    part = {"dataset": "planted", "analysis": key}
    table = planted.read("findings", part).drop(["schema_version"])
    labels = table.column("label").to_pylist()
    labels[0] = "evil\x1b[31m label"
    planted.replace_partition("findings", part, table.set_column(2, "label", pa.array(labels)))
    try:
        assert main(["findings", "planted", "--lake", str(planted.root), "--top", "1"]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "evil␛[31m label" in out
    finally:
        planted.replace_partition("findings", part, table)


def test_a_decision_on_a_finding_covers_its_members(
    planted: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sculpt.plan.compile import compile_plan
    from sculpt.plan.decisions import Decision, record

    bold = _holding(read_findings(planted, "planted"), "lex:bold")[0]
    member = next(c for c in bold["members"] if c.startswith("ngram:"))
    # older than the finding's decision: covered by it, so it drops out of the plan
    record(planted, Decision("planted", member, "amplify", "reward_shaping", ts=1.0))
    # a concept outside the finding keeps working
    record(planted, Decision("planted", "ngram:apologize", "suppress", "filter", 0.5, ts=2.0))
    record(planted, Decision("planted", bold["finding_id"], "suppress", "reward_shaping", ts=3.0))
    plan = compile_plan(planted, "planted", tmp_path / "plan.yaml")
    by_target = {i.finding or i.concept_id: i for i in plan.interventions}
    assert set(by_target) == {bold["finding_id"], "ngram:apologize"}
    shaped = by_target[bold["finding_id"]]
    assert shaped.concept_id in bold["members"] and shaped.label == "markdown bold spans"
    assert "drives shaping" in shaped.driver and f"all {bold['n_members']} members" in shaped.driver
    assert shaped.n_pairs > 0
    assert (
        main(["plan", "planted", "--lake", str(planted.root), "-o", str(tmp_path / "p.yaml")]) == 0
    )
    out = capsys.readouterr().out
    assert f"{bold['finding_id']} (markdown bold spans): {shaped.concept_id} drives shaping" in out


def _hypothesis(concept_id: str, kind: str, chosen_rate: float, rejected_rate: float) -> dict:
    return {
        "hypothesis_id": f"global/{concept_id}",
        "concept_id": concept_id,
        "kind": kind,
        "label": concept_id,
        "chosen_rate": chosen_rate,
        "rejected_rate": rejected_rate,
        **dict.fromkeys(("delta", "ci_lo", "ci_hi", "d", "q"), 0.0),
        "split_half_ok": True,
        "lean": "chosen",
    }


def test_dense_and_template_features_rank_below_content() -> None:
    from sculpt.analysis.findings import ConceptInfo, compute_findings

    rng = np.random.default_rng(0)
    n = 300
    content = (rng.random(n) < 0.15).astype(float)  # a modest lean: chosen only, 15% of pairs
    dense = rng.normal(0.8, 1.0, n)  # fires everywhere, leans strongly
    template = (rng.random(n) < 0.6).astype(float) * rng.uniform(1, 3, n)
    hypotheses = pa.Table.from_pylist(
        [
            _hypothesis("lex:content", "lexical", 0.15, 0.0),
            _hypothesis("sae:s:1", "sae_feature", 1.0, 0.99),
            _hypothesis("sae:s:2", "sae_feature", 0.6, 0.3),
        ]
    )
    info = ConceptInfo(["content", "dense", "template"], np.array([False, False, True]))
    u = np.column_stack([content, dense, template])
    findings, members = compute_findings(hypotheses, u, info, n_boot=200, n_perm=2000)
    rows = findings.to_pylist()
    assert [r["label_concept"] for r in rows] == ["lex:content", "sae:s:1", "sae:s:2"] or [
        r["label_concept"] for r in rows
    ] == ["lex:content", "sae:s:2", "sae:s:1"]
    assert rows[1]["p"] < rows[0]["p"] and rows[2]["p"] < rows[0]["p"]  # stronger, ranked below
    flags = {r["label_concept"]: (r["dense"], r["template"]) for r in rows}
    assert flags == {
        "lex:content": (False, False),
        "sae:s:1": (True, False),
        "sae:s:2": (False, True),
    }
    assert members.num_rows == 3


def test_feature_labels_read_as_text_and_template_features_say_so() -> None:
    from sculpt.sae.cards import context_label, feature_label, strip_special, template_driven

    def ctx(before: str, token: str, after: str, side: str = "chosen", act: float = 1.0) -> dict:
        return {
            "text_before": before,
            "token": token,
            "text_after": after,
            "side": side,
            "act": act,
        }

    bold = [ctx("Water it when", " **", "the top inch** is dry.")] * 3
    assert context_label(bold) == "…Water it when **the top inch**…"
    assert feature_label(bold, [["**", 3.0], ["one", 2.0]]) == (
        "…Water it when **the top inch**…",
        "context",
    )
    ends = [ctx("Hope that helps.", "<|im_end|>", "\n"), ctx("<|im_end|>", "\n", "")] * 2
    assert template_driven(ends) and feature_label(ends, [])[0] == "chat-template tokens"
    system = [ctx("<|im_start|>system\n", "You", " are a helpful", side="prompt")]
    assert template_driven(system)
    assert strip_special("<|im_start|>assistant\nHi there<|im_end|>\n") == "Hi there\n"
    assert not template_driven(bold)


def test_a_concept_uniting_two_signals_does_not_merge_them() -> None:
    """A feature cluster over two signals' features (stronger than either, since it fires on
    both) joins one of their findings as a mixture; the two signals stay two findings."""
    from sculpt.analysis.findings import ConceptInfo, compute_findings

    rng = np.random.default_rng(1)
    n = 400
    first, second = np.zeros(n), np.zeros(n)
    first[:40], second[40:80] = rng.uniform(2, 4, 40), rng.uniform(2, 4, 40)
    noise = rng.normal(0, 0.2, n) * (rng.random(n) < 0.3)
    hypotheses = pa.Table.from_pylist(
        [
            _hypothesis("sae:s:1", "sae_feature", 0.1, 0.0),
            _hypothesis("sae:s:2", "sae_feature", 0.1, 0.0),
            _hypothesis("fc:s:0", "feature_cluster", 0.2, 0.0),
        ]
    )
    info = ConceptInfo(["first", "second", "both"], np.zeros(3, dtype=bool))
    u = np.column_stack([first, second, first + second + noise])
    findings, members = compute_findings(hypotheses, u, info, n_boot=200, n_perm=2000)
    assert findings.num_rows == 2
    roles = {r["concept_id"]: r["role"] for r in members.to_pylist()}
    assert roles == {"sae:s:1": "anchor", "sae:s:2": "anchor", "fc:s:0": "mixture"}
