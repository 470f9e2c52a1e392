"""Vector concepts: a planted direction is recovered; spans are scored and the direction stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_sae import LAYER, scanned_lake

from sculpt.cli.main import main
from sculpt.concepts.registry import read_concepts
from sculpt.concepts.vectors import (
    VectorConfig,
    build_vector,
    fit_direction,
    load_vector,
    span_scores,
)
from sculpt.scan.models import tiny_model


@pytest.mark.parametrize("probe", [False, True])
def test_planted_direction_is_recovered(probe: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    planted = torch.randn(64, generator=generator)
    planted /= planted.norm()
    noise = torch.randn(800, 64, generator=generator)
    strength = torch.rand(400, 1, generator=generator) + 0.5
    positive, negative = noise[:400] + 2.0 * strength * planted, noise[400:]
    direction = fit_direction(positive, negative, probe)
    assert float(direction.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float(direction @ planted) > 0.85  # a random direction: ~0.12


def test_span_score_is_the_max_token_projection() -> None:
    direction = torch.tensor([1.0, 0.0])
    spans = [torch.tensor([[1.0, 5.0], [3.0, 0.0]]), torch.zeros(0, 2), torch.tensor([[-2.0, 1.0]])]
    assert span_scores(spans, direction).tolist() == [3.0, 0.0, -2.0]


def test_vector_concept_scores_spans_and_stores_its_direction(tmp_path: Path) -> None:
    lake = scanned_lake(tmp_path / "lake", n=16)
    positive = ["I am sorry, but I cannot help with that."] * 3 + ["Sorry, I cannot help."]
    negative = ["Mix flour, sugar and eggs, then bake.", "Paris is the capital of France."]
    meta = build_vector(
        lake, "toy", "refusal", positive, negative, VectorConfig(layer=LAYER), tiny_model()
    )
    assert meta["concept_id"] == "vec:refusal"
    direction, stored = load_vector(lake, "toy", "refusal")
    stored_files = sorted(p.name for p in (lake.root / "vectors" / "toy").iterdir())
    assert stored_files == ["refusal.json", "refusal.safetensors"]  # tensors only, no pickle
    assert stored["layer"] == LAYER and direction.shape == (tiny_model().d_model,)
    assert float(direction.norm()) == pytest.approx(1.0, abs=1e-5)
    scores = lake.sql("select score from concept_scores where concept_id = 'vec:refusal'")
    values = np.array(scores.column("score").to_pylist())
    assert len(values) == 16 * 3
    assert values.mean() == pytest.approx(0.0, abs=1e-4) and values.std() == pytest.approx(
        1, abs=1e-3
    )
    assert [c["kind"] for c in read_concepts(lake, "toy")] == ["vector"]
    missing = tmp_path / "none.txt"
    assert (
        main(
            [
                "concept",
                "vector",
                "toy",
                "x",
                "--positive",
                str(missing),
                "--negative",
                str(missing),
                "--lake",
                str(lake.root),
                "--model",
                "tiny",
            ]
        )
        == 2
    )
