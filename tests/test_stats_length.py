"""Length control (DESIGN §4): any function of response length is explained away, and a lean that
does not depend on length is never marked length-only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sculpt.analysis.stats import global_lean, length_controlled

N = 600


def lengths(seed: int) -> np.ndarray:
    """Words in (chosen, rejected): chosen responses ~35% longer, as in preference data."""
    rng = np.random.default_rng(seed)
    rejected = rng.lognormal(4.5, 0.6, N)
    return np.column_stack([rejected * rng.lognormal(0.3, 0.4, N), rejected])


def test_a_real_lean_that_loses_power_after_adjustment_is_not_marked_length_only() -> None:
    words = lengths(5)
    u = 0.15 + np.random.default_rng(5).normal(0, 1, (N, 200))
    lean = global_lean(u, lengths=words, n_boot=200)
    significant = lean["q"] < 0.05
    assert significant.sum() > 150
    assert np.mean(lean["length_only"][significant]) <= 0.03


SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda words: words / 100,
    "threshold": lambda words: (words > 150).astype(float),
    "saturating": lambda words: 1 - np.exp(-words / 60),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_concept_that_is_any_function_of_length_is_marked_length_only(shape: str) -> None:
    words = lengths(6)
    g = SHAPES[shape]
    noise = np.random.default_rng(6).normal(0, 0.5, (N, 40))
    u = (g(words[:, 0]) - g(words[:, 1]))[:, None] + noise
    lean = global_lean(u, lengths=words, n_boot=200)
    significant = lean["q"] < 0.05
    assert significant.sum() >= 30
    assert np.mean(lean["length_only"][significant]) >= 0.9
    delta_len, _ = length_controlled(u, words[:, 0], words[:, 1])
    assert abs(delta_len.mean()) < 0.15 * abs(lean["delta"].mean())  # no bias left
