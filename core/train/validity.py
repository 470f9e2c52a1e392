"""Does the audit predict what training learns? Predicted Δ against observed change (DESIGN §4).

Across concepts, the audit's predicted Δ (global lean, and the feature-conditioned Δ of each data
cluster × feature cluster) is set against the observed change in generations (core/train/observed.py).
Both sides are put on one scale per concept — units of the spread of its per-pair difference in
the data, sd(u) = Δ/d from the hypotheses row — so that a feature with large activations does not
carry the fit by its units alone. Reported: R² (squared Pearson r) and Spearman ρ, each with a
percentile bootstrap interval over concepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from sculpt.lake.store import Lake
from sculpt.train.metrics import Metric
from sculpt.train.observed import (
    Change,
    GenerationScores,
    audit_concepts,
    finding_changes,
    observed_changes,
    score_generations,
)

MIN_CONCEPTS = 3


@dataclass
class Prediction:
    """One hypothesis's predicted Δ (with its interval) and the sd(u) that puts it on the
    common scale."""

    concept_id: str
    delta: float
    ci_lo: float
    ci_hi: float
    n: int
    spread: float
    q: float
    data_cluster: int | None = None


def r2(x: np.ndarray, y: np.ndarray) -> float:
    """Squared Pearson correlation (nan when either side is constant)."""
    if len(x) < MIN_CONCEPTS or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ: the Pearson correlation of the ranks (ties averaged)."""
    rx, ry = rankdata(x), rankdata(y)
    if len(x) < MIN_CONCEPTS or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def fit(
    name: str, x: Sequence[float], y: Sequence[float], seed: int = 0, reps: int = 2000
) -> list[Metric]:
    """R² and Spearman ρ of y on x with percentile intervals from resampling the concepts."""
    px, py = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(px)
    out = []
    for metric, stat in ((f"r2_{name}", r2), (f"spearman_{name}", spearman)):
        value = stat(px, py)
        lo = hi = float("nan")
        if np.isfinite(value):
            rng = np.random.default_rng([seed, 0xC0])
            draws = rng.integers(0, n, size=(reps, n))
            boot = np.array([stat(px[d], py[d]) for d in draws])
            boot = boot[np.isfinite(boot)]
            if boot.size:
                lo, hi = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
        out.append(Metric(metric, value, n, lo, hi))
    return out


def global_predictions(lake: Lake, dataset: str, analysis: str) -> dict[str, Prediction]:
    """The global hypotheses of one analysis: Δ and sd(u) = Δ/d per concept."""
    rows = lake.sql(
        "select concept_id, delta, ci_lo, ci_hi, n, d, q from hypotheses "
        "where dataset = ? and analysis = ? and scope = 'global'",
        [dataset, analysis],
    ).to_pylist()
    return {p.concept_id: p for p in (_prediction(r) for r in rows) if p is not None}


def conditional_predictions(lake: Lake, dataset: str, analysis: str) -> list[Prediction]:
    """The feature-conditioned hypotheses (data cluster B_k × feature cluster T_m)."""
    rows = lake.sql(
        "select concept_id, data_cluster, delta, ci_lo, ci_hi, n, d, q from hypotheses "
        "where dataset = ? and analysis = ? and scope = 'conditional'",
        [dataset, analysis],
    ).to_pylist()
    return [p for p in (_prediction(r) for r in rows) if p is not None]


def _prediction(row: dict[str, Any]) -> Prediction | None:
    delta, d = row.get("delta"), row.get("d")
    if delta is None or d is None or not np.isfinite(delta) or not np.isfinite(d) or d == 0:
        return None  # no spread to scale by (a concept whose gap is exactly zero)
    q = row.get("q")
    cluster = row.get("data_cluster")
    return Prediction(
        str(row["concept_id"]),
        float(delta),
        _float(row.get("ci_lo")),
        _float(row.get("ci_hi")),
        int(row.get("n") or 0),
        abs(float(delta) / float(d)),
        float(q) if q is not None else float("nan"),
        None if cluster is None else int(cluster),
    )


def global_fit(
    predictions: dict[str, Prediction],
    observed: dict[str, Change],
    seed: int = 0,
    max_q: float | None = None,
) -> tuple[list[Metric], list[tuple[str, float, float]]]:
    """Fits over the tested concepts seen in both (those with q ≤ `max_q` if given), and the
    points (concept, predicted, observed) on the common scale."""
    points = [
        (c, p.delta / p.spread, observed[c].value / p.spread)
        for c, p in predictions.items()
        if c in observed
        and np.isfinite(observed[c].value)
        and (max_q is None or (np.isfinite(p.q) and p.q <= max_q))
    ]
    name = "predicted_observed" if max_q is None else "predicted_observed_significant"
    return fit(name, [p[1] for p in points], [p[2] for p in points], seed), points


def conditional_fit(
    predictions: list[Prediction],
    scores: GenerationScores,
    prompt_clusters: np.ndarray,
    seed: int = 0,
    min_prompts: int = 3,
) -> tuple[list[Metric], list[tuple[str, float, float]]]:
    """For each B_k × T_m: observed = mean of u over held-out prompts in B_k − over the other
    active prompts (silent ones, cluster < 0, in neither), as the audit contrasts pairs."""
    active = prompt_clusters >= 0
    points = []
    for p in predictions:
        if p.concept_id not in scores.concept_ids or p.data_cluster is None:
            continue
        inside = prompt_clusters == p.data_cluster
        outside = active & ~inside
        if inside.sum() < min_prompts or outside.sum() < min_prompts:
            continue
        u = scores.column(p.concept_id)
        change = float(u[inside].mean() - u[outside].mean())
        points.append((f"{p.concept_id}@{p.data_cluster}", p.delta / p.spread, change / p.spread))
    found = fit(
        "conditional_predicted_observed", [x for _, x, _ in points], [y for _, _, y in points], seed
    )
    return found, points


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def prompt_clusters(
    lake: Lake, dataset: str, analysis: str, pair_ids: Sequence[str] | None
) -> np.ndarray | None:
    """The audit's data cluster of each prompt's pair (−1 silent, −2 unknown); None without."""
    partition = {"dataset": dataset, "analysis": analysis}
    if pair_ids is None or not lake.has("clusters", partition):
        return None
    table = lake.read("clusters", partition).select(["pair_id", "data_cluster"]).to_pylist()
    known = {r["pair_id"]: r["data_cluster"] for r in table}
    return np.array([known.get(p, -2) for p in pair_ids], dtype=np.int64)


def audit_metrics(
    lake: Lake,
    dataset: str,
    generations: dict[str, list[str]],
    prompts: Sequence[list[dict[str, str]]],
    pair_ids: Sequence[str] | None,
    model_spec: str | None,
    seed: int = 0,
) -> dict[str, list[Metric]]:
    """Per trained checkpoint: each tested concept's predicted Δ and observed change, each
    finding's, and the fits across them (R², Spearman ρ; global, significant, conditional)."""
    from sculpt.analysis.config import latest_analysis
    from sculpt.scan.models import load_model

    analysis = latest_analysis(lake, dataset)
    if analysis is None:
        print(f"eval: {dataset} has no analysis; audit it for predicted vs observed change")
        return {}
    concepts = audit_concepts(lake, dataset, analysis)
    loaded = load_model(model_spec)
    predictions = global_predictions(lake, dataset, analysis)
    conditional = conditional_predictions(lake, dataset, analysis)
    clusters = prompt_clusters(lake, dataset, analysis, pair_ids)
    out: dict[str, list[Metric]] = {}
    for name, texts in generations.items():
        if name == "base":
            continue
        scores = score_generations(
            lake, dataset, concepts, prompts, texts, generations["base"], loaded
        )
        changes = observed_changes(scores, seed)
        metrics = _concept_rows(predictions, changes)
        metrics += global_fit(predictions, changes, seed)[0]
        metrics += global_fit(predictions, changes, seed, max_q=0.05)[0]
        if clusters is not None and conditional:
            metrics += conditional_fit(conditional, scores, clusters, seed)[0]
        found, predicted = finding_changes(lake, dataset, analysis, scores, seed)
        for finding_id, change in found.items():
            metrics.append(_metric("finding_observed_change", change, finding_id))
        if found:
            metrics += fit(
                "findings_predicted_observed",
                [predicted[f] for f in found],
                [found[f].value for f in found],
                seed,
            )
        out[name] = metrics
    return out


def _metric(metric: str, change: Change, concept_id: str, scale: float = 1.0) -> Metric:
    return Metric(
        metric,
        change.value / scale,
        change.n,
        change.ci_lo / scale,
        change.ci_hi / scale,
        concept_id,
    )


def _concept_rows(predictions: dict[str, Prediction], changes: dict[str, Change]) -> list[Metric]:
    """predicted_delta and observed_change_sd on the common scale (sd(u) units: the points of
    the scatter), and observed_change in the concept's own units."""
    rows = []
    for cid, p in predictions.items():
        if cid not in changes:
            continue
        scale = p.spread
        rows.append(
            Metric("predicted_delta", p.delta / scale, p.n, p.ci_lo / scale, p.ci_hi / scale, cid)
        )
        rows.append(_metric("observed_change", changes[cid], cid))
        rows.append(_metric("observed_change_sd", changes[cid], cid, scale))
    return rows
