"""The demo dataset carries its planted concepts at the documented rates and they lead every
other candidate; `plant` adds a concept to an exact share of real pairs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sculpt.cli.main import main
from sculpt.data.demo import NATURAL, PLANTED, generate, write_demo
from sculpt.data.demo_topics import TOPICS
from sculpt.data.ingest import ingest
from sculpt.lake.store import Lake
from sculpt.testing.plant import PLANTABLE, plant, plant_many

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def _rates(pairs, concept) -> tuple[float, float]:
    n = len(pairs)
    return (
        sum(concept.detects(p["chosen"]) for p in pairs) / n,
        sum(concept.detects(p["rejected"]) for p in pairs) / n,
    )


def test_planted_concepts_hit_their_exact_rates():
    pairs = generate(300, seed=0)
    for concept in PLANTED:
        assert _rates(pairs, concept) == (concept.chosen_rate, concept.rejected_rate), concept.name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_concepts_lead_and_natural_variation_is_balanced(seed):
    pairs = generate(300, seed=seed)
    gaps = {c.name: (lambda r: r[0] - r[1])(_rates(pairs, c)) for c in PLANTED + NATURAL}
    ranked = sorted(gaps, key=lambda name: -abs(gaps[name]))
    assert set(ranked[:2]) == {c.name for c in PLANTED}
    for concept in NATURAL:
        chosen, rejected = _rates(pairs, concept)
        assert (
            abs(chosen - concept.chosen_rate) < 0.1 and abs(rejected - concept.rejected_rate) < 0.1
        )
    lengths = [len(p["chosen"].split()) - len(p["rejected"].split()) for p in pairs]
    assert abs(sum(lengths) / len(lengths)) < 6  # words: the opener adds a few, nothing more


def test_demo_data_is_varied_deterministic_and_ingests_cleanly(tmp_path):
    pairs = generate(300, seed=0)
    assert pairs == generate(300, seed=0) and pairs != generate(300, seed=1)
    assert len({p["prompt"] for p in pairs}) > 250
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    covered = {
        topic
        for topic, spec in TOPICS.items()
        for p in pairs
        if any(re.sub(r"\{\w+\}", "", t)[:12] in p["prompt"] for t in spec["prompts"])
    }
    assert len(covered) >= 12
    path = write_demo(tmp_path / "demo.jsonl", 300, 0)
    report = ingest(Lake.open(tmp_path / "lake"), path, "demo")
    assert (report.format, report.kept, report.rejected) == ("trl", 300, {})


def test_demo_data_command_writes_jsonl(tmp_path, capsys):
    assert main(["demo-data", "--n", "40", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == generate(40, 3)
    out = tmp_path / "d.jsonl"
    assert main(["demo-data", "--out", str(out), "--n", "25"]) == 0
    assert len(out.read_text().splitlines()) == 25


@pytest.fixture(scope="module")
def hh_pairs(tmp_path_factory) -> list[dict]:
    if not HH.exists():
        pytest.skip("shared HH-RLHF file missing")
    lake = Lake.open(tmp_path_factory.mktemp("hh") / "lake")
    ingest(lake, HH, "hh")
    return lake.read("pairs", {"dataset": "hh"}).to_pylist()


@pytest.mark.parametrize("concept", sorted(PLANTABLE))
def test_plant_reaches_an_exact_share_of_real_pairs(hh_pairs, concept):
    pairs = hh_pairs
    spec = PLANTABLE[concept]
    before = sum(spec.detects(p["chosen"]) for p in pairs)
    planted_pairs, ids = plant(pairs, concept, rate=0.07, seed=1)
    assert len(ids) == round(0.07 * len(pairs)) == len(set(ids))
    by_id = {p["pair_id"]: p for p in planted_pairs}
    assert all(spec.detects(by_id[i]["chosen"]) for i in ids)
    assert sum(spec.detects(p["chosen"]) for p in planted_pairs) == before + len(ids)
    assert [p["rejected"] for p in planted_pairs] == [p["rejected"] for p in pairs]
    assert plant(pairs, concept, rate=0.07, seed=1)[1] == ids


def test_planted_ids_match_what_ingest_assigns(tmp_path):
    pairs = generate(60, seed=5)
    planted_pairs, ids = plant(pairs, "absolutely", rate=0.1, seed=0)
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in planted_pairs))
    lake = Lake.open(tmp_path / "lake")
    ingest(lake, path, "planted")
    stored = {r["pair_id"]: r["chosen"] for r in lake.read("pairs").to_pylist()}
    assert set(ids) <= set(stored) and all(stored[i].startswith("Absolutely!") for i in ids)
    with pytest.raises(ValueError, match="unknown"):
        plant(pairs, "nonsense", 0.1)


def test_plant_many_gives_each_concept_its_own_disjoint_share(hh_pairs):
    names = sorted(PLANTABLE)
    planted_pairs, ids = plant_many(hh_pairs, names, rate=0.06, seed=2)
    count = round(0.06 * len(hh_pairs))
    assert all(len(ids[name]) == count for name in names)
    everyone = [i for name in names for i in ids[name]]
    assert len(everyone) == len(set(everyone))  # a pair carries at most one planted concept
    by_id = {p["pair_id"]: p for p in planted_pairs}
    for name in names:
        assert all(PLANTABLE[name].detects(by_id[i]["chosen"]) for i in ids[name])
    assert [p["rejected"] for p in planted_pairs] == [p["rejected"] for p in hh_pairs]
    with pytest.raises(ValueError, match="exceed"):
        plant_many(hh_pairs, names, rate=0.25)
