"""Plans: decisions compile to interventions; shaping does what each method says; bad plans fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.plan.compile import compile_plan
from sculpt.plan.decisions import Decision, record
from sculpt.plan.plan import load_plan
from sculpt.plan.shaping import shape_pairs

N = 20


def _lake(tmp_path) -> Lake:
    """20 pairs; concept lex:bold scores chosen = i, rejected = 0 (pair i); clusters = i % 2."""
    lake = Lake.open(tmp_path / "lake")
    pairs = [
        {
            "pair_id": f"{i:016x}",
            "row": i,
            "prompt": json.dumps([{"role": "user", "content": f"q{i}"}]),
            "chosen": f"chosen {i}",
            "rejected": f"rejected {i}",
            "source": "t",
            "meta": "{}",
        }
        for i in range(N)
    ]
    lake.replace_partition("pairs", {"dataset": "d"}, pa.Table.from_pylist(pairs))
    scores = [
        {"concept_id": "lex:bold", "pair_id": f"{i:016x}", "side": side, "score": float(v)}
        for i in range(N)
        for side, v in (("chosen", i), ("rejected", 0))
    ]
    lake.replace_partition(
        "concept_span_scores", {"dataset": "d", "family": "lexical"}, pa.Table.from_pylist(scores)
    )
    clusters = [
        {"pair_id": f"{i:016x}", "data_cluster": i % 2, "silent": False, "prompt_cluster": 0}
        for i in range(N)
    ]
    lake.replace_partition(
        "clusters", {"dataset": "d", "analysis": "a1"}, pa.Table.from_pylist(clusters)
    )
    return lake


def _pairs(lake: Lake) -> list[dict]:
    return lake.sql("select * from pairs order by row").to_pylist()


def _decide(lake: Lake, method: str, strength: float = 1.0, scope: str = "all", action="suppress"):
    record(
        lake,
        Decision(
            dataset="d",
            concept_id="lex:bold",
            action=action,
            method=method,
            strength=strength,
            scope=scope,
        ),
    )


def _zgap(i: int) -> float:
    values = np.array([*range(N), *([0] * N)], dtype=float)
    return i / values.std()


def test_empty_decisions_make_an_empty_plan_and_plain_rows(tmp_path):
    lake = _lake(tmp_path)
    plan = compile_plan(lake, "d", tmp_path / "plan.yaml")
    assert plan.interventions == [] and load_plan(tmp_path / "plan.yaml").interventions == []
    rows, summary = shape_pairs(_pairs(lake), plan)
    assert len(rows) == N and summary.dropped == 0
    assert all(r["weight"] == 1.0 and r["margin_offset"] == 0.0 for r in rows)
    assert rows[3]["chosen"] == [{"role": "assistant", "content": "chosen 3"}]


def test_reward_shaping_offset_is_lambda_times_z_gap(tmp_path):
    lake = _lake(tmp_path)
    _decide(lake, "reward_shaping", strength=0.5)
    plan = load_plan(compile_plan(lake, "d", tmp_path / "plan.yaml").path)
    rows, _ = shape_pairs(_pairs(lake), plan)
    assert [r["margin_offset"] for r in rows] == pytest.approx(
        [0.5 * _zgap(i) for i in range(N)], rel=1e-5
    )
    _decide(lake, "reward_shaping", strength=0.5, action="amplify")
    rows, _ = shape_pairs(_pairs(lake), compile_plan(lake, "d", tmp_path / "plan.yaml"))
    assert rows[4]["margin_offset"] == pytest.approx(-0.5 * _zgap(4), rel=1e-5)


def test_filter_drops_the_top_share_by_concept_gap(tmp_path):
    lake = _lake(tmp_path)
    _decide(lake, "filter", strength=0.25)
    plan = compile_plan(lake, "d", tmp_path / "plan.yaml")
    rows, summary = shape_pairs(_pairs(lake), plan)
    kept = {r["pair_id"] for r in rows}
    # 19 pairs have chosen > rejected; the top ceil(0.25 * 19) = 5 (i = 15..19) go.
    assert summary.dropped == 5 == plan.interventions[0].n_pairs
    assert kept == {f"{i:016x}" for i in range(15)}


def test_relabel_swaps_and_reweight_downweights_within_scope(tmp_path):
    lake = _lake(tmp_path)
    _decide(lake, "relabel", strength=0.1)
    _decide(lake, "reweight", strength=1.0, scope="cluster:1")
    rows, summary = shape_pairs(_pairs(lake), compile_plan(lake, "d", tmp_path / "plan.yaml"))
    by_id = {r["pair_id"]: r for r in rows}
    assert summary.relabelled == 2
    assert by_id[f"{19:016x}"]["chosen"][0]["content"] == "rejected 19"
    assert by_id[f"{18:016x}"]["rejected"][0]["content"] == "chosen 18"
    assert by_id[f"{4:016x}"]["weight"] == 1.0  # cluster 0: out of scope
    assert by_id[f"{5:016x}"]["weight"] == pytest.approx(np.exp(-_zgap(5)), rel=1e-5)
    # relabelled pair 19 (cluster 1): its chosen now lacks the concept, so it is up-weighted
    assert by_id[f"{19:016x}"]["weight"] == pytest.approx(np.exp(min(3.0, _zgap(19))), rel=1e-5)


def test_inoculation_changes_only_the_policy_prompt(tmp_path):
    lake = _lake(tmp_path)
    _decide(lake, "inoculation", scope="cluster:0")
    plan = compile_plan(lake, "d", tmp_path / "plan.yaml")
    rows, summary = shape_pairs(_pairs(lake), plan)
    assert summary.inoculated == N // 2
    assert plan.interventions[0].text in rows[0]["prompt"][0]["content"]
    assert rows[0]["ref_prompt"] == [{"role": "user", "content": "q0"}]
    assert rows[1]["prompt"] == rows[1]["ref_prompt"]


def test_ablation_of_a_lexical_concept_is_refused_with_a_way_out(tmp_path):
    lake = _lake(tmp_path)
    _decide(lake, "ablation")
    with pytest.raises(UserError, match="no residual-stream direction.*reward_shaping"):
        compile_plan(lake, "d", tmp_path / "plan.yaml")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("interventions: []\n", "missing dataset; add `dataset: ...`"),
        (
            "dataset: d\ninterventions:\n- {concept_id: x, method: filtr}\n",
            r"interventions\[0\]: method='filtr': expected one of",
        ),
        (
            "dataset: d\ninterventions:\n- {concept_id: x, method: filter, strength: 3}\n",
            r"filter strength 3.0: a share in \(0, 1\]",
        ),
        (
            "dataset: d\ninterventions:\n- {concept_id: x, method: steering}\n",
            "needs `layer` and `vector_file`",
        ),
        (
            "dataset: d\ninterventions:\n- {concept_id: x, method: reweight, colour: red}\n",
            "unknown key 'colour'",
        ),
        (
            "dataset: d\ninterventions:\n- {concept_id: x, method: reweight, scope: most}\n",
            "scope 'most'",
        ),
    ],
)
def test_bad_plans_fail_with_the_field_and_the_fix(tmp_path, body, message):
    path = tmp_path / "plan.yaml"
    path.write_text(body)
    with pytest.raises(UserError, match=message):
        load_plan(path)
