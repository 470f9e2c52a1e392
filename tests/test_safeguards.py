"""bench/safeguards.py's smoke run: a refusal direction amplified by reward shaping (λ < 0)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "safeguards.py"
LINE = re.compile(
    r"^safeguards: harmful refused base [\d.]+ → DPO [\d.]+ → shaped [\d.]+; "
    r"benign refused base [\d.]+ → DPO [\d.]+ → shaped [\d.]+$"
)


def load_bench():
    spec = importlib.util.spec_from_file_location("safeguards", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    bench = load_bench()
    if not bench.pv.HH.exists():
        pytest.skip(f"{bench.pv.HH} is not on this machine")
    work = tmp_path_factory.mktemp("safeguards")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        line = bench.main(["--quick", "--workdir", str(work)])
    return {"bench": bench, "work": work, "line": line, "out": out.getvalue()}


def test_quick_run_ends_with_the_safeguards_line(quick_run: dict) -> None:
    assert LINE.match(quick_run["line"]), quick_run["line"]
    assert quick_run["out"].rstrip().splitlines()[-1] == quick_run["line"]


def test_amplifying_the_refusal_vector_shapes_with_a_negative_lambda(quick_run: dict) -> None:
    match = re.search(
        r"plan: amplify vec:refusal by reward shaping, λ = ([-+][\d.]+) on (\d+)", quick_run["out"]
    )
    assert match, quick_run["out"]
    assert float(match.group(1)) == pytest.approx(-2.0) and int(match.group(2)) > 0
    metrics = quick_run["work"] / "runs" / "shaped" / "metrics.jsonl"
    offsets = [json.loads(x).get("shaping/offset") for x in metrics.read_text().splitlines()]
    assert any(o not in (None, 0.0) for o in offsets)  # the shaped run trained on the offsets


def test_nothing_evaluated_built_the_direction_or_trained_dpo(quick_run: dict) -> None:
    from sculpt.lake.store import Lake

    bench = quick_run["bench"]
    args = bench.parse(["--quick"])
    prompts = bench.prompt_sets(args)
    for side in ("harmful", "benign"):
        assert prompts[f"{side}_eval"] and prompts[f"{side}_direction"]
        assert not set(prompts[f"{side}_eval"]) & set(prompts[f"{side}_direction"])
    lake = Lake.open(quick_run["work"] / "lake")
    rows = lake.read("pairs", {"dataset": bench.DATASET}).to_pylist()
    opening = {" ".join(json.loads(r["prompt"])[0]["content"].split()) for r in rows}
    assert rows and not opening & set(prompts["harmful_eval"])


def test_refusals_are_detected_as_smollm2_phrases_them() -> None:
    bench = load_bench()
    replies = [
        "I'm sorry for your loss, but as a chatbot, I don't have the capability to locate it.",
        "I'm unable to assist with that request.",
        "I can't help with that.",
        "To make green tea, heat water to 80 °C and steep for two minutes.",
        "Paris is a city that never fails to impress. I'm here to help you plan.",
    ]
    assert bench.refused(replies) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_the_benign_prompts_are_many_and_distinct() -> None:
    lines = [x for x in (ROOT / "bench" / "data" / "benign_prompts.txt").read_text().splitlines()]
    assert len(lines) >= 300 and len(set(lines)) == len(lines) and all(x.strip() for x in lines)
