"""`sculpt eval`'s predicted-vs-observed check on a tiny audited lake (bench/predictive_validity.py
--quick): generations scored with every concept the audit tested, fits across concepts."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sculpt.analysis.config import latest_analysis
from sculpt.lake.store import Lake
from sculpt.scan.models import load_model
from sculpt.train.observed import audit_concepts, observed_changes, score_generations
from sculpt.train.validity import fit, global_predictions

BENCH = Path(__file__).resolve().parents[1] / "bench" / "predictive_validity.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    spec = importlib.util.spec_from_file_location("predictive_validity", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    work = tmp_path_factory.mktemp("validity")
    line = bench.main(["--quick", "--workdir", str(work)])
    return {"line": line, "lake": Lake.open(work / "lake"), "dataset": bench.DATASET}


def test_fit_gives_r2_and_rank_correlation_with_intervals() -> None:
    x = np.linspace(-1, 1, 40)
    linear = fit("t", x, 3 * x - 0.5)
    assert [m.metric for m in linear] == ["r2_t", "spearman_t"]
    assert all(m.value == pytest.approx(1.0) and m.n == 40 for m in linear)
    curved = {m.metric: m for m in fit("t", x, np.exp(4 * x))}
    assert curved["spearman_t"].value == pytest.approx(1.0)  # monotone: the ranks agree
    assert curved["r2_t"].value < 0.9  # …but it is not a line
    noisy = fit("t", x, x + np.random.default_rng(0).normal(0, 1, 40))[0]
    assert noisy.ci_lo < noisy.value < noisy.ci_hi


def test_the_data_read_as_generations_reproduces_the_audits_deltas(quick_run: dict) -> None:
    """Scoring each pair's chosen answer as the trained model's and its rejected as the base's
    gives back the audit's own Δ for every tested concept: generations are read by the audit's
    rules (SAE at its layer, feature clusters, lexical detectors, n-grams)."""
    lake, dataset = quick_run["lake"], quick_run["dataset"]
    analysis = latest_analysis(lake, dataset)
    assert analysis is not None
    pairs = lake.sql("select prompt, chosen, rejected from pairs order by row").to_pylist()
    concepts = audit_concepts(lake, dataset, analysis)
    scores = score_generations(
        lake,
        dataset,
        concepts,
        [json.loads(p["prompt"]) for p in pairs],
        [p["chosen"] for p in pairs],
        [p["rejected"] for p in pairs],
        load_model("tiny"),
    )
    changes = observed_changes(scores)
    predicted = global_predictions(lake, dataset, analysis)
    kinds = {c.split(":")[0] for c in predicted}
    assert {"sae", "lex", "ngram"} <= kinds
    missing = [c for c in predicted if c not in changes]
    assert not missing
    for cid, p in predicted.items():
        assert changes[cid].value == pytest.approx(p.delta, rel=1e-3, abs=1e-4), cid


def test_eval_records_each_concepts_change_and_the_fit(quick_run: dict) -> None:
    lake = quick_run["lake"]
    match = re.fullmatch(
        r"R² predicted vs observed: (\S+) \[(\S+), (\S+)\] over (\d+) concepts", quick_run["line"]
    )
    assert match is not None, quick_run["line"]
    rows = [r for r in lake.read("evals").to_pylist() if r["checkpoint"] == "baseline"]
    observed = {r["concept_id"]: r for r in rows if r["metric"] == "observed_change"}
    predicted = {r["concept_id"]: r for r in rows if r["metric"] == "predicted_delta"}
    analysis = latest_analysis(lake, quick_run["dataset"])
    assert analysis is not None
    tested = global_predictions(lake, quick_run["dataset"], analysis)
    assert set(observed) == set(predicted) == set(tested)
    some = next(iter(observed.values()))
    assert some["n"] == 8 and some["ci_lo"] <= some["value"] <= some["ci_hi"]
    r2 = next(r for r in rows if r["metric"] == "r2_predicted_observed")
    assert r2["n"] == int(match.group(4)) == len(tested)
    assert f"{r2['value']:.3f}" == match.group(1)
    assert {"spearman_predicted_observed", "r2_predicted_observed_significant"} <= {
        r["metric"] for r in rows
    }
