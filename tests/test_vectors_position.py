"""Vector concepts read at the last prompt token (a refusal direction) and scored by mean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_sae import LAYER, scanned_lake

from sculpt.cli.main import main
from sculpt.concepts.vectors import (
    VectorConfig,
    build_vector,
    load_vector,
    span_scores,
    span_summary,
)
from sculpt.scan.models import tiny_model

HARMFUL = ["How do I pick a lock?", "Tell me how to steal a car.", "How can I hurt someone?"]
BENIGN = ["How do I bake bread?", "What is the capital of France?", "Write a poem about cats."]


def last_prompt_state(text: str) -> torch.Tensor:
    """The residual after block LAYER at the prompt's last token, straight from the model."""
    loaded = tiny_model()
    ids = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    with torch.no_grad():
        out = loaded.model(input_ids=ids, output_hidden_states=True)
    return out.hidden_states[LAYER + 1][0, -1].float()


def test_last_prompt_direction_is_the_difference_of_means_at_the_last_prompt_token(
    tmp_path: Path,
) -> None:
    lake = scanned_lake(tmp_path / "lake", n=8)
    config = VectorConfig(layer=LAYER, position="last_prompt")
    meta = build_vector(lake, "toy", "refusal", HARMFUL, BENIGN, config, tiny_model())
    direction, stored = load_vector(lake, "toy", "refusal")
    expected = torch.stack([last_prompt_state(t) for t in HARMFUL]).mean(0) - torch.stack(
        [last_prompt_state(t) for t in BENIGN]
    ).mean(0)
    expected /= expected.norm()
    assert float(direction @ expected) == pytest.approx(1.0, abs=1e-4)
    assert stored["config"]["position"] == "last_prompt" and meta["concept_id"] == "vec:refusal"
    # the default reads every token of the examples as replies: a different direction
    build_vector(lake, "toy", "reply", HARMFUL, BENIGN, VectorConfig(layer=LAYER), tiny_model())
    reply, _ = load_vector(lake, "toy", "reply")
    assert float(reply @ expected) < 0.99


def test_mean_span_score_averages_the_token_projections() -> None:
    direction = torch.tensor([1.0, 0.0])
    spans = [torch.tensor([[1.0, 5.0], [3.0, 0.0]]), torch.zeros(0, 2), torch.tensor([[-2.0, 1.0]])]
    assert span_scores(spans, direction, "mean").tolist() == [2.0, 0.0, -2.0]
    assert span_scores(spans, direction).tolist() == [3.0, 0.0, -2.0]


def test_the_summary_a_vector_was_scored_with_is_kept_for_its_generations(tmp_path: Path) -> None:
    lake = scanned_lake(tmp_path / "lake", n=8)
    config = VectorConfig(layer=LAYER, position="last_prompt", score="mean")
    build_vector(lake, "toy", "refusal", HARMFUL, BENIGN, config, tiny_model())
    _, meta = load_vector(lake, "toy", "refusal")
    assert span_summary(meta) == "mean"
    assert span_summary({"config": {"layer": 2}}) == "max"  # an older sculpt's meta
    scores = np.array(
        lake.sql("select score from concept_scores where concept_id = 'vec:refusal'")
        .column("score")
        .to_pylist()
    )
    assert scores.std() == pytest.approx(1.0, abs=1e-3)


def test_a_bad_position_is_refused_with_the_choices(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="last_prompt"):
        VectorConfig(position="first")  # type: ignore[arg-type]
    examples = tmp_path / "ex.txt"
    examples.write_text("a\nb\n")
    argv = ["concept", "vector", "toy", "x", "--positive", str(examples), "--negative"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, str(examples), "--position", "first", "--lake", str(tmp_path / "lake")])
    assert exit_info.value.code == 2
    assert "last_prompt" in capsys.readouterr().err


def test_cli_builds_a_last_prompt_vector(tmp_path: Path) -> None:
    lake = scanned_lake(tmp_path / "lake", n=8)
    harmful, benign = tmp_path / "harmful.txt", tmp_path / "benign.txt"
    harmful.write_text("\n".join(HARMFUL))
    benign.write_text("\n".join(BENIGN))
    argv = ["concept", "vector", "toy", "refusal", "--positive", str(harmful), "--negative"]
    flags = ["--position", "last_prompt", "--score", "mean", "--layer", str(LAYER)]
    assert main([*argv, str(benign), *flags, "--lake", str(lake.root), "--model", "tiny"]) == 0
    meta = json.loads((lake.root / "vectors" / "toy" / "refusal.json").read_text())
    assert meta["config"]["position"] == "last_prompt" and meta["config"]["score"] == "mean"
