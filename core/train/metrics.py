"""An eval measurement: a value with its n and 95% bootstrap interval, per metric and concept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PER_CONCEPT = (
    "predicted_delta",
    "observed_change",
    "observed_change_sd",
    "finding_observed_change",
)
"""The per-concept (per-finding) rows of `evals`: the points behind each fit
(here, away from torch, so the report can tell them apart)."""


@dataclass
class Metric:
    metric: str
    value: float
    n: int
    ci_lo: float
    ci_hi: float
    concept_id: str | None = None


def bootstrap_ci(values: Sequence[float], seed: int = 0, reps: int = 1000) -> tuple[float, float]:
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, (reps, data.size))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarize(metric: str, values: Sequence[float], concept_id: str | None = None) -> Metric:
    lo, hi = bootstrap_ci(values)
    mean = float(np.mean(values)) if len(values) else float("nan")
    return Metric(metric, mean, len(values), lo, hi, concept_id)
