"""Is the analysis honest? Simulations with fixed seeds and a known answer, printed as one table:
null false-finding rates (global and conditional), coverage of every interval a person is shown,
and how well length-only marks separate length from real leans.

    .venv/bin/python bench/honesty.py            # the README table (a few minutes on 2 cores)
    .venv/bin/python bench/honesty.py --quick    # fewer datasets, same rows
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sculpt.analysis import clusters
from sculpt.analysis.conditional import Views, ViewSettings, conditional_views
from sculpt.analysis.inputs import SIDES, Pairs, SaeSpans
from sculpt.analysis.predictive import predictive_power
from sculpt.analysis.stats import global_lean, in_out_contrast

ALPHA = 0.05


@dataclass
class Row:
    group: str
    measure: str
    value: str
    target: str


def fraction(hits: float, total: float) -> str:
    return f"{100 * hits / max(total, 1):.1f}% ({int(hits)}/{int(total)})"


# ---- global: coin-flip null and interval coverage -------------------------------------------


def mixed_concepts(rng: np.random.Generator, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Chosen and rejected scores: half binary firing, half gamma activations when firing."""
    rate = rng.uniform(0.02, 0.4, c)
    fires_c, fires_r = rng.random((n, c)) < rate, rng.random((n, c)) < rate
    scale = np.where(np.arange(c) < c // 2, 0.0, 1.0)
    act_c = 1 + scale * (rng.gamma(2.0, 1.0, (n, c)) - 1)
    act_r = 1 + scale * (rng.gamma(2.0, 1.0, (n, c)) - 1)
    return fires_c * act_c, fires_r * act_r


def global_null(datasets: int) -> list[Row]:
    """Real leans in half the concepts, destroyed by swapping chosen and rejected by coin flip."""
    found = tested = any_found = 0
    for seed in range(datasets):
        rng = np.random.default_rng([seed, 1])
        chosen, rejected = mixed_concepts(rng, 2000, 300)
        chosen[:, :150] *= 1.5
        swap = rng.random(len(chosen)) < 0.5
        chosen[swap], rejected[swap] = rejected[swap].copy(), chosen[swap].copy()
        lean = global_lean(sp.csc_matrix(chosen - rejected), n_boot=200, seed=seed)
        hits = int(np.sum(lean["q"] < ALPHA))
        found, tested, any_found = found + hits, tested + len(lean["q"]), any_found + (hits > 0)
    return [
        Row("null, global", "concepts with q < 0.05", fraction(found, tested), "≤ 5%"),
        Row("null, global", "datasets with any q < 0.05", fraction(any_found, datasets), "≤ 5%"),
    ]


def global_coverage(datasets: int) -> list[Row]:
    """Bootstrap 95% CI of Δ against the true Δ of firing rates and activations (known)."""
    covered = total = sig_covered = sig_total = 0
    for seed in range(datasets):
        rng = np.random.default_rng([seed, 2])
        n, c = 1000, 200
        rate_r = rng.uniform(0.02, 0.4, c)
        lift = rng.choice([0.0, 0.02, 0.05, 0.1], c)
        rate_c = np.minimum(rate_r + lift, 1.0)
        binary = np.arange(c) < c // 2
        mean_act = np.where(binary, 1.0, 2.0)  # gamma(2, 1) activations
        fires_c, fires_r = rng.random((n, c)) < rate_c, rng.random((n, c)) < rate_r
        act_c = np.where(binary, 1.0, rng.gamma(2.0, 1.0, (n, c)))
        act_r = np.where(binary, 1.0, rng.gamma(2.0, 1.0, (n, c)))
        u = fires_c * act_c - fires_r * act_r
        truth = (rate_c - rate_r) * mean_act
        lean = global_lean(sp.csc_matrix(u), n_boot=1000, seed=seed)
        inside = (lean["ci_lo"] <= truth) & (truth <= lean["ci_hi"])
        shown = lean["q"] < ALPHA
        covered, total = covered + inside.sum(), total + c
        sig_covered, sig_total = sig_covered + inside[shown].sum(), sig_total + shown.sum()
    return [
        Row("coverage", "global Δ 95% CI, every concept", fraction(covered, total), "95%"),
        Row("coverage", "global Δ 95% CI, q < 0.05", fraction(sig_covered, sig_total), "95%"),
    ]


# ---- conditional: the full feature-conditioned pipeline on a synthetic SAE ------------------


N_TOPICS, N_GROUPS, GROUP_SIZE = 6, 24, 10
"""Synthetic SAE: prompt topics, groups of co-firing features (the feature clusters to find)."""


def synthetic_sae(
    rng: np.random.Generator, n: int, lean: float, swap: bool
) -> tuple[Pairs, SaeSpans]:
    """Spans of a synthetic SAE.

    Topic t's responses turn on group t (prob 0.7) and any group (prob 0.04); a group's features
    then fire with prob 0.7. Topic 0's chosen response also turns on group N_TOPICS with prob
    `lean` (a conditional lean). With `swap`, chosen and rejected are swapped by coin flip.
    """
    n_features = N_GROUPS * GROUP_SIZE
    topic = rng.integers(0, N_TOPICS, n)
    group_p = np.full((n, N_GROUPS), 0.04)
    group_p[np.arange(n), topic] = 0.7
    p_side = {"prompt": group_p, "chosen": group_p.copy(), "rejected": group_p.copy()}
    p_side["chosen"][:, N_TOPICS] += np.where(topic == 0, lean, 0.0) * (1 - 0.04)
    if swap:
        flip = rng.random(n) < 0.5
        chosen, rejected = p_side["chosen"].copy(), p_side["rejected"].copy()
        p_side["chosen"][flip], p_side["rejected"][flip] = rejected[flip], chosen[flip]
    freq = {}
    for side in SIDES:
        on = rng.random((n, N_GROUPS)) < p_side[side]
        fire = np.repeat(on, GROUP_SIZE, axis=1) & (rng.random((n, n_features)) < 0.7)
        freq[side] = sp.csr_matrix(fire * rng.uniform(0.05, 0.5, (n, n_features)))
    words = rng.integers(20, 200, (n, 2)).astype(float)
    pairs = Pairs(np.array([f"{i:016x}" for i in range(n)]), words[:, 0] - words[:, 1], words)
    sae = SaeSpans("synthetic", n_features, max_act=freq, freq=freq, labels={})
    return pairs, sae


def settings(n: int, seed: int) -> ViewSettings:
    return ViewSettings(
        seed=seed,
        freq_threshold=0.01,
        edge_fraction=0.01,
        min_community=4,
        silent_quantile=0.05,
        n_clusters=clusters.default_n_data_clusters(n),
        min_feature_cluster=4,
        min_cluster_pairs=clusters.min_cluster_pairs(n),
    )


def _activity(sae: SaeSpans, views: Views) -> tuple[np.ndarray, np.ndarray]:
    """Per pair and co-activation cluster T_m: activity s (what data clusters are fitted on) and
    u (the share of T_m's features firing on chosen minus on rejected), as the pipeline has them."""
    n_t = sum(":r" not in concept for concept in views.ids)
    member = clusters.membership(views.members[:n_t], sae.n_features)
    size = np.maximum(np.asarray(member.sum(axis=0)).ravel(), 1.0)
    fired = {side: (sae.freq[side] > 0.01).astype(np.float64) for side in ("chosen", "rejected")}
    u = ((fired["chosen"] - fired["rejected"]) @ member).toarray() / size
    activity = ((sae.freq["chosen"] + sae.freq["rejected"]) @ member).toarray()
    return activity, u


def population_truth(views: Views, sample: SaeSpans, population: SaeSpans) -> np.ndarray:
    """K × M true Δ: fresh pairs from the same population, put in the data clusters the pipeline
    fitted (nearest center by cosine, the same silent cutoff), compared in minus rest of active."""
    fitted, _ = _activity(sample, views)
    labels = views.data_cluster
    norms = np.linalg.norm(fitted, axis=1)
    cutoff = np.quantile(norms, 0.05)
    unit = fitted / np.where(norms > 0, norms, 1.0)[:, None]
    k = labels.max() + 1
    centers = np.array([unit[labels == j].sum(axis=0) for j in range(k)])
    centers /= np.maximum(np.linalg.norm(centers, axis=1, keepdims=True), 1e-12)
    activity, u = _activity(population, views)
    norms = np.linalg.norm(activity, axis=1)
    assigned = np.argmax(activity @ centers.T, axis=1)
    assigned[(norms < cutoff) | (norms == 0)] = -1
    return in_out_contrast(u, assigned, k)["delta"]


def conditional(datasets: int) -> list[Row]:
    """Null (coin-flip swaps): rows shown and rows whose interval excludes 0. Planted lean:
    coverage of the interval of every row shown, against the truth of `population_truth`."""
    n = 3000
    null_rows = null_excluding = null_top = null_top_excluding = 0
    covered = shown = top_covered = top_shown = 0
    planted_top = 0
    for seed in range(datasets):
        for lean, swap in ((0.0, True), (0.5, False)):
            rng = np.random.default_rng([seed, 3, int(swap)])
            pairs, sae = synthetic_sae(rng, n, lean, swap)
            views = conditional_views(pairs, sae, settings(n, seed))
            rows = views.conditional.to_pylist()
            if swap:
                null_rows += len(rows)
                excludes = [(r["ci_lo"] > 0) or (r["ci_hi"] < 0) for r in rows]
                null_excluding += sum(excludes)
                null_top, null_top_excluding = (
                    null_top + len(excludes[:10]),
                    null_top_excluding + sum(excludes[:10]),
                )
                continue
            truth_of = population_truth(views, sae, synthetic_sae(rng, 10 * n, lean, swap)[1])
            for rank, r in enumerate(rows):
                truth = truth_of[r["data_cluster"], views.ids.index(r["concept_id"])]
                inside = r["ci_lo"] <= truth <= r["ci_hi"]
                covered, top_covered = covered + inside, top_covered + (inside and rank < 10)
            shown, top_shown = shown + len(rows), top_shown + min(10, len(rows))
            if rows:
                top = views.members[views.ids.index(rows[0]["concept_id"])]
                planted_top += bool(np.all(top // GROUP_SIZE == N_TOPICS))
    return [
        Row(
            "null, conditional",
            "rows shown per dataset (SC = 1, filters)",
            f"{null_rows / datasets:.1f}",
            "—",
        ),
        Row(
            "null, conditional",
            "rows shown whose 95% CI excludes 0",
            fraction(null_excluding, null_rows),
            "≤ 5%",
        ),
        Row(
            "null, conditional",
            "top 10 rows whose 95% CI excludes 0",
            fraction(null_top_excluding, null_top),
            "≤ 5%",
        ),
        Row("coverage", "conditional Δ 95% CI, rows shown", fraction(covered, shown), "95%"),
        Row(
            "coverage",
            "conditional Δ 95% CI, top 10 rows",
            fraction(top_covered, top_shown),
            "95%",
        ),
        Row(
            "planted, conditional",
            "datasets whose top row is the planted lean",
            fraction(planted_top, datasets),
            "100%",
        ),
    ]


# ---- length-only marks ------------------------------------------------------------------------


SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda words: words / 100,
    "threshold (> 150 words)": lambda words: (words > 150).astype(float),
    "saturating (1 − e^−len/60)": lambda words: 1 - np.exp(-words / 60),
}


def response_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    rejected = rng.lognormal(4.5, 0.6, n)
    return np.column_stack([rejected * rng.lognormal(0.3, 0.4, n), rejected])


def length_marks(datasets: int) -> list[Row]:
    """Sensitivity: concepts that are a function of length, g(len⁺) − g(len⁻) + noise, marked
    among the significant ones. Specificity: length-independent leans (Δ = 0.15) not marked."""
    n = 600
    marked = {name: [0, 0] for name in SHAPES}
    real_marked = real_sig = 0
    for seed in range(datasets):
        rng = np.random.default_rng([seed, 4])
        words = response_lengths(rng, n)
        for name, g in SHAPES.items():
            u = (g(words[:, 0]) - g(words[:, 1]))[:, None] + rng.normal(0, 0.5, (n, 40))
            lean = global_lean(u, lengths=words, n_boot=200, seed=seed)
            sig = lean["q"] < ALPHA
            marked[name][0] += int(lean["length_only"][sig].sum())
            marked[name][1] += int(sig.sum())
        u = 0.15 + rng.normal(0, 1, (n, 100))
        lean = global_lean(u, lengths=words, n_boot=200, seed=seed)
        sig = lean["q"] < ALPHA
        real_marked, real_sig = real_marked + lean["length_only"][sig].sum(), real_sig + sig.sum()
    rows = [
        Row("length-only", f"sensitivity, {name}", fraction(*marked[name]), "high")
        for name in SHAPES
    ]
    rows.append(
        Row(
            "length-only",
            "specificity, length-independent leans",
            fraction(real_sig - real_marked, real_sig),
            "high",
        )
    )
    return rows


def predictive_null(datasets: int) -> list[Row]:
    """Concept differences with no signal: the cross-validated AUC of each model stays at chance."""
    auc: dict[str, list[float]] = {}
    for seed in range(datasets):
        rng = np.random.default_rng([seed, 5])
        n, c = 1000, 400
        u = sp.csr_matrix(rng.normal(size=(n, c)) * (rng.random((n, c)) < 0.2))
        ids = [f"c{i}" for i in range(c)]
        for row in predictive_power(u, rng.normal(size=n), ids, seed=seed).to_pylist():
            auc.setdefault(row["model"], []).append(row["auc"])
    return [
        Row("null, predictive", f"AUC of the {model} model", f"{np.mean(v):.3f}", "≈ 0.5")
        for model, v in auc.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer simulated datasets")
    args = parser.parse_args()
    scale = 1 if args.quick else 5
    rows = [
        *global_null(5 * scale),
        *conditional(2 * scale),
        *global_coverage(2 * scale),
        *length_marks(2 * scale),
        *predictive_null(scale),
    ]
    print("| simulation | measure | result | target |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row.group} | {row.measure} | {row.value} | {row.target} |")


if __name__ == "__main__":
    main()
