"""`analyze` on synthetic lakes written by the schemas of lake/README.md; the CLI views."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sculpt.analysis.analyze import analyze
from sculpt.analysis.config import AnalyzeConfig, latest_analysis
from sculpt.cli.main import main
from sculpt.lake.store import Lake

N_GROUPS, GROUP_SIZE = 6, 8
"""The synthetic SAE: groups of co-firing features (what feature clusters should recover)."""
TOPIC: dict[str, int] = {}
"""pair_id → the planted prompt topic of the synthetic SAE lake."""


def _words(rng: np.random.Generator, count: int) -> str:
    return " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega"], size=count))


def write_pairs(lake: Lake, dataset: str, n: int, rng: np.random.Generator, longer: int) -> list:
    """Pairs whose chosen responses are `longer` words longer on average."""
    len_c = rng.integers(20, 60, size=n) + longer
    len_r = rng.integers(20, 60, size=n)
    rows = []
    for i in range(n):
        chosen, rejected = _words(rng, int(len_c[i])), _words(rng, int(len_r[i]))
        prompt = json.dumps([{"role": "user", "content": f"question {i}"}])
        pair_id = hashlib.sha256(f"{prompt}{chosen}{rejected}".encode()).hexdigest()[:16]
        rows.append(
            {
                "pair_id": pair_id,
                "row": i,
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "source": "synthetic.jsonl",
                "meta": "{}",
            }
        )
    lake.replace_partition("pairs", {"dataset": dataset}, pa.Table.from_pylist(rows))
    return [(r["pair_id"], len_c[i], len_r[i]) for i, r in enumerate(rows)]


def write_lexical(
    lake: Lake,
    dataset: str,
    pairs: list,
    rng: np.random.Generator,
    n_null: int,
    planted_share: float,
) -> np.ndarray:
    """Null binary concepts, `lex:planted` added to the chosen side of a share of pairs, and
    `lex:length` (words). Returns the planted pairs' mask."""
    n = len(pairs)
    planted = rng.random(n) < planted_share
    rows = []
    for c in range(n_null):
        rate = rng.uniform(0.05, 0.4)
        for side in ("chosen", "rejected"):
            for i in np.flatnonzero(rng.random(n) < rate):
                rows.append((f"lex:null{c:03d}", pairs[i][0], side, 1.0))
    for side in ("chosen", "rejected"):
        fires = (rng.random(n) < 0.05) | (planted if side == "chosen" else False)
        rows += [("lex:planted", pairs[i][0], side, 1.0) for i in np.flatnonzero(fires)]
        rows += [
            ("lex:length", p[0], side, float(p[1] if side == "chosen" else p[2])) for p in pairs
        ]
    table = pa.table(
        {
            "concept_id": [r[0] for r in rows],
            "pair_id": [r[1] for r in rows],
            "side": [r[2] for r in rows],
            "score": pa.array([r[3] for r in rows], pa.float32()),
        }
    )
    lake.replace_partition("concept_span_scores", {"dataset": dataset, "family": "lexical"}, table)
    ids = sorted(set(table.column("concept_id").to_pylist()))
    concepts = pa.table(
        {
            "concept_id": ids,
            "kind": ["lexical"] * len(ids),
            "members": ["[]"] * len(ids),
            "label": [i.split(":")[1] for i in ids],
            "source": ["{}"] * len(ids),
        }
    )
    lake.replace_partition("concepts", {"dataset": dataset, "family": "lexical"}, concepts)
    return planted


def write_sae(
    lake: Lake, dataset: str, pairs: list, rng: np.random.Generator, sae: str, topic_lean: bool
) -> np.ndarray:
    """span_features of groups of co-firing features. Prompts of topic 0 fire group 0; in those
    pairs (when `topic_lean`) the chosen response fires group 1 more often. Returns topics."""
    n = len(pairs)
    topic = rng.integers(0, 3, size=n)
    TOPIC.update({pair_id: int(t) for (pair_id, _, _), t in zip(pairs, topic, strict=True)})
    rows: list[tuple] = []
    for i, (pair_id, _, _) in enumerate(pairs):
        for side in ("prompt", "chosen", "rejected"):
            groups = {int(topic[i]) + (0 if side == "prompt" else 3)}
            if side != "prompt" and rng.random() < 0.3:
                groups.add(int(rng.integers(0, N_GROUPS)))
            if topic_lean and side == "chosen" and topic[i] == 0 and rng.random() < 0.6:
                groups.add(1)
            for g in groups:
                for f in range(g * GROUP_SIZE, (g + 1) * GROUP_SIZE):
                    if rng.random() < 0.8:
                        rows.append(
                            (pair_id, side, f, rng.uniform(0.5, 3.0), rng.uniform(0.05, 0.5))
                        )
    table = pa.table(
        {
            "pair_id": [r[0] for r in rows],
            "side": [r[1] for r in rows],
            "feature": pa.array([r[2] for r in rows], pa.int32()),
            "max_act": pa.array([r[3] for r in rows], pa.float32()),
            "freq": pa.array([r[4] for r in rows], pa.float32()),
            "sum_act": pa.array([r[3] * r[4] for r in rows], pa.float32()),
        }
    )
    lake.replace_partition("span_features", {"dataset": dataset, "sae": sae}, table)
    return topic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, np.ndarray]:
    lake = Lake.open(tmp_path_factory.mktemp("lake"))
    rng = np.random.default_rng(7)
    pairs = write_pairs(lake, "toy", 400, rng, longer=6)
    planted = write_lexical(lake, "toy", pairs, rng, n_null=40, planted_share=0.08)
    write_sae(lake, "toy", pairs, rng, "toy-sae", topic_lean=True)
    return lake, planted


FAST = AnalyzeConfig(n_boot=200, n_perm=2000)


def test_planted_lexical_concept_ranks_first_and_is_significant(synthetic) -> None:
    lake, _ = synthetic
    report = analyze(lake, "toy", FAST, progress=False)
    rows = lake.read("hypotheses", {"dataset": "toy", "analysis": report.analysis}).to_pylist()
    lexical = sorted(
        (
            r
            for r in rows
            if r["scope"] == "global" and r["kind"] == "lexical" and r["concept_id"] != "lex:length"
        ),
        key=lambda r: r["rank"],
    )
    top = lexical[0]
    assert top["concept_id"] == "lex:planted"
    assert top["q"] < 0.05 and top["lean"] == "chosen" and top["split_half_ok"]
    assert top["ci_lo"] > 0 and not top["length_only"]
    nulls = [r for r in lexical if r["concept_id"].startswith("lex:null")]
    assert sum(r["q"] < 0.05 for r in nulls) <= 0.05 * len(nulls)


def test_length_concept_is_marked_length_only(synthetic) -> None:
    lake, _ = synthetic
    key = analyze(lake, "toy", FAST, progress=False).analysis
    rows = lake.read("hypotheses", {"dataset": "toy", "analysis": key}).to_pylist()
    length = next(r for r in rows if r["concept_id"] == "lex:length")
    assert length["q"] < 0.05 and length["length_only"]
    assert abs(length["delta_len"]) < 0.25 * abs(length["delta"])


def test_conditional_view_finds_the_topic_lean(synthetic) -> None:
    lake, _ = synthetic
    key = analyze(lake, "toy", FAST, progress=False).analysis
    rows = lake.read("hypotheses", {"dataset": "toy", "analysis": key}).to_pylist()
    conditional = sorted((r for r in rows if r["scope"] == "conditional"), key=lambda r: r["rank"])
    assert conditional, "the planted topic lean should pass the filters"
    best = conditional[0]
    concepts = lake.read("concepts", {"dataset": "toy", "family": f"fc-{key}"}).to_pylist()
    members = {c["concept_id"]: json.loads(c["members"]) for c in concepts}
    assert set(members[best["concept_id"]]) == set(range(GROUP_SIZE, 2 * GROUP_SIZE))
    assert best["lean"] == "chosen" and best["split_half_ok"] and best["p"] is None
    clusters = lake.read("clusters", {"dataset": "toy", "analysis": key})
    assert clusters.num_rows == 400
    both_families = lake.read("concept_span_scores", {"dataset": "toy"})
    assert both_families.num_rows > 0
    in_view = (
        lake.sql(
            "select count(*) as n from concept_scores where concept_id = ? and side = 'chosen'",
            [best["concept_id"]],
        )
        .column("n")[0]
        .as_py()
    )
    assert in_view > 0
    prompt = min((r for r in rows if r["scope"] == "prompt"), key=lambda r: r["rank"])
    assert set(members[prompt["concept_id"]]) == set(members[best["concept_id"]])
    assert prompt["lean"] == "chosen"
    topics = dict(
        zip(
            clusters.column("pair_id").to_pylist(),
            clusters.column("prompt_cluster").to_pylist(),
            strict=True,
        )
    )
    in_cluster = [p for p, c in topics.items() if c == prompt["data_cluster"]]
    assert np.mean([TOPIC[p] == 0 for p in in_cluster]) > 0.9


def test_rerun_replaces_partition_and_is_deterministic(synthetic) -> None:
    lake, _ = synthetic
    first = analyze(lake, "toy", FAST, progress=False)
    part = {"dataset": "toy", "analysis": first.analysis}
    before = lake.read("hypotheses", part).drop(["schema_version"]).to_pylist()
    second = analyze(lake, "toy", FAST, progress=False)
    after = lake.read("hypotheses", part).drop(["schema_version"]).to_pylist()
    assert second.analysis == first.analysis and after == before
    assert len({r["hypothesis_id"] for r in after}) == len(after)
    assert latest_analysis(lake, "toy") == first.analysis
    other = analyze(lake, "toy", AnalyzeConfig(n_boot=200, n_perm=2000, seed=1), progress=False)
    assert other.analysis != first.analysis and latest_analysis(lake, "toy") == other.analysis


def test_hypotheses_command_formats(synthetic, capsys: pytest.CaptureFixture[str]) -> None:
    lake, _ = synthetic
    key = analyze(lake, "toy", FAST, progress=False).analysis
    base = ["hypotheses", "toy", "--lake", str(lake.root), "--analysis", key]
    assert main([*base, "--format", "json", "--top", "3", "--lean", "chosen"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and all(r["lean"] == "chosen" for r in records)
    assert [r["rank"] for r in records] == sorted(r["rank"] for r in records)
    assert main([*base, "--format", "csv", "--top", "0", "--kind", "lexical"]) == 0
    csv_lines = capsys.readouterr().out.strip().splitlines()
    assert csv_lines[0].startswith("hypothesis_id,scope,concept_id") and len(csv_lines) == 43
    assert main([*base, "--top", "50", "--kind", "lexical"]) == 0
    table = capsys.readouterr().out
    assert "Δ [95% CI]" in table and "split-half" in table and "lex:planted" in table
    assert "length-only" in table and "✓" in table
    assert main([*base, "--scope", "conditional"]) == 0
    assert "inflated" in capsys.readouterr().out


def test_analyze_command_and_missing_dataset(synthetic, capsys: pytest.CaptureFixture[str]) -> None:
    lake, _ = synthetic
    assert main(["analyze", "toy", "--lake", str(lake.root), "--n-boot", "200", "--quiet"]) == 0
    assert "sculpt hypotheses toy" in capsys.readouterr().out
    assert main(["analyze", "nope", "--lake", str(lake.root), "--quiet"]) == 2
    assert "no table 'pairs'" in capsys.readouterr().err


def test_lexical_only_lake_needs_no_sae(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path)
    rng = np.random.default_rng(3)
    pairs = write_pairs(lake, "lex", 150, rng, longer=0)
    write_lexical(lake, "lex", pairs, rng, n_null=5, planted_share=0.1)
    report = analyze(lake, "lex", FAST, progress=False)
    assert report.n_conditional == 0 and report.n_tested >= 6
    predictive = lake.read("predictive", {"dataset": "lex", "analysis": report.analysis})
    assert set(predictive.column("model").to_pylist()) == {"concepts", "length", "top5"}


def test_a_concept_equal_on_both_sides_of_every_pair_is_reported_untested(tmp_path: Path) -> None:
    """Scores identical on chosen and rejected carry no information: no crash, no BH test."""
    lake = Lake.open(tmp_path)
    rng = np.random.default_rng(4)
    pairs = write_pairs(lake, "same", 120, rng, longer=0)
    write_lexical(lake, "same", pairs, rng, n_null=5, planted_share=0.1)
    fires = [p[0] for p in pairs[:40]]
    scores = pa.table(
        {
            "concept_id": ["lex:zz_same"] * 80,
            "pair_id": fires * 2,
            "side": ["chosen"] * 40 + ["rejected"] * 40,
            "score": pa.array([1.0] * 80, pa.float32()),
        }
    )
    lake.replace_partition("concept_span_scores", {"dataset": "same", "family": "same"}, scores)
    report = analyze(lake, "same", FAST, progress=False)
    rows = lake.read("hypotheses", {"dataset": "same", "analysis": report.analysis}).to_pylist()
    same = next(r for r in rows if r["concept_id"] == "lex:zz_same")
    assert same["lean"] == "untested" and same["p"] is None and same["q"] is None
    assert report.n_tested == len(rows) - 1


HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


@pytest.mark.skipif(not HH.exists(), reason="the HH-RLHF sample is not in ../shared/data")
def test_planted_concepts_on_hh_rlhf_rank_in_top5_via_lexical_route(tmp_path: Path) -> None:
    """Real data, known answer: a concept planted into 8% of chosen responses is a top-5
    global hypothesis (the recovering hypothesis is matched by its per-pair gap)."""
    ingest = pytest.importorskip("sculpt.data.ingest")
    plant = pytest.importorskip("sculpt.testing.plant")
    lexical = pytest.importorskip("sculpt.concepts.lexical")
    from sculpt.analysis.known_answer import planted_ranks
    from sculpt.analysis.results import read_hypotheses
    from sculpt.concepts.registry import Concept, pair_spans, score_table, write_concepts

    lake = Lake.open(tmp_path)
    ingest.ingest(lake, HH, "hh")
    base = lake.read("pairs", {"dataset": "hh"}).drop(["schema_version"]).to_pylist()
    for name in ("markdown_bold", "apologetic_hedge"):
        rows, planted_ids = plant.plant(base, name, 0.08, seed=1)
        dataset = f"hh-{name}"
        lake.replace_partition("pairs", {"dataset": dataset}, pa.Table.from_pylist(rows))
        spans = pair_spans(lake, dataset, sides=("chosen", "rejected"))
        scores = lexical.score_texts(spans.texts)
        names = sorted(scores)
        write_concepts(
            lake,
            dataset,
            "lexical",
            [Concept(f"lex:{n}", "lexical", n) for n in names],
            score_table([f"lex:{n}" for n in names], spans, np.vstack([scores[n] for n in names])),
        )
        analyze(lake, dataset, AnalyzeConfig(n_boot=200, n_perm=2000), progress=False)
        top = read_hypotheses(lake, dataset, scope="global", top=5)
        found = planted_ranks(lake, dataset, top, top=5, planted=(plant.PLANTABLE[name],))[0]
        assert found.rank is not None, (name, [h["concept_id"] for h in top])
        assert len(planted_ids) == round(0.08 * len(base))


@pytest.mark.skipif(not HH.exists(), reason="the HH-RLHF sample is not in ../shared/data")
def test_several_planted_concepts_in_one_dataset_each_rank_in_top5(tmp_path: Path) -> None:
    """Five concepts planted into disjoint 8% shares of one dataset: each is found among the
    top 5 once the other planted concepts' hypotheses are set aside, and a detector that covers
    two of them (the flattering-opener detector also reads "Absolutely!") counts for both."""
    from sculpt.analysis.known_answer import planted_ranks
    from sculpt.analysis.results import read_hypotheses
    from sculpt.concepts import lexical
    from sculpt.data.ingest import ingest
    from sculpt.testing import plant

    lake = Lake.open(tmp_path)
    ingest(lake, HH, "hh")
    base = lake.read("pairs", {"dataset": "hh"}).drop(["schema_version"]).to_pylist()
    names = sorted(plant.PLANTABLE)
    rows, _ = plant.plant_many(base, names, 0.08, seed=0)
    lake.replace_partition("pairs", {"dataset": "planted"}, pa.Table.from_pylist(rows))
    lexical.score_dataset(lake, "planted")
    analyze(lake, "planted", AnalyzeConfig(n_boot=200, n_perm=2000), progress=False)
    top = read_hypotheses(lake, "planted", scope="global", top=20)
    specs = tuple(plant.PLANTABLE[n] for n in names)
    found = {r.name: r for r in planted_ranks(lake, "planted", top, top=20, planted=specs)}  # type: ignore[arg-type]
    assert all(r.distinct_rank is not None and r.distinct_rank <= 5 for r in found.values()), {
        n: (r.rank, r.distinct_rank, r.concept_id) for n, r in found.items()
    }
    assert found["absolutely"].concept_id == found["flattering_opener"].concept_id
