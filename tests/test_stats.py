"""core/analysis/stats.py against cases with a known answer (DESIGN §4)."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
from scipy import stats as scistats

from sculpt.analysis.stats import (
    benjamini_hochberg,
    bootstrap_ci,
    global_lean,
    in_out_contrast,
    length_controlled,
    mcnemar_exact,
    sign_flip_p,
    split_halves,
)


def firing_pairs(
    n: int, n_concepts: int, seed: int, planted_share: float = 0.0
) -> tuple[sp.csc_matrix, sp.csc_matrix]:
    """Binary firing on chosen and rejected; concept 0 also fires on the chosen side of a
    `planted_share` of pairs (the planted lean)."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.3, size=n_concepts)
    chosen = rng.random((n, n_concepts)) < rates
    rejected = rng.random((n, n_concepts)) < rates
    chosen[:, 0] |= rng.random(n) < planted_share
    return sp.csc_matrix(chosen.astype(float)), sp.csc_matrix(rejected.astype(float))


def test_planted_concept_ranks_first_among_nulls() -> None:
    chosen, rejected = firing_pairs(1000, 200, seed=1, planted_share=0.08)
    lean = global_lean(
        chosen - rejected, fired_chosen=chosen, fired_rejected=rejected, n_boot=300, seed=0
    )
    assert np.argmax(np.abs(lean["z"])) == 0
    assert lean["q"][0] < 0.05 and lean["lean"][0] == "chosen" and lean["split_half_ok"][0]
    assert lean["ci_lo"][0] > 0 and lean["chosen_rate"][0] > lean["rejected_rate"][0]
    assert np.mean(lean["q"][1:] < 0.05) <= 0.05


def test_null_coin_flip_swaps_keep_false_discoveries_below_5_percent() -> None:
    """Real leans in half the concepts, destroyed by swapping chosen/rejected at random."""
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        n, c = 600, 150
        chosen = rng.gamma(1.0, 1.0, size=(n, c)) * (rng.random((n, c)) < 0.2)
        rejected = rng.gamma(1.0, 1.0, size=(n, c)) * (rng.random((n, c)) < 0.2)
        chosen[:, : c // 2] *= 1.6  # a real lean, before the coin flips
        swap = rng.random(n) < 0.5
        chosen[swap], rejected[swap] = rejected[swap].copy(), chosen[swap].copy()
        lean = global_lean(sp.csc_matrix(chosen - rejected), n_boot=200, seed=seed)
        assert np.mean(lean["q"] < 0.05) <= 0.05, seed


def test_bootstrap_interval_matches_the_normal_interval_of_a_mean() -> None:
    rng = np.random.default_rng(0)
    u = rng.normal(0.3, 1.0, size=(2000, 3))
    lo, hi = bootstrap_ci(u, n_boot=1000, seed=5)
    se = u.std(axis=0, ddof=1) / np.sqrt(len(u))
    assert np.allclose(lo, u.mean(axis=0) - 1.96 * se, atol=0.25 * se.max())
    assert np.allclose(hi, u.mean(axis=0) + 1.96 * se, atol=0.25 * se.max())
    again = bootstrap_ci(sp.csr_matrix(u), n_boot=1000, seed=5)
    assert np.allclose(again[0], lo) and np.allclose(again[1], hi)


def test_sign_flip_p_matches_exact_enumeration_for_few_pairs() -> None:
    u = np.array([0.9, 1.4, 0.3, -0.2, 1.1, 0.7, 0.5, 2.0, -0.4, 0.8])
    observed = abs(u.sum())
    flips = np.array(list(itertools.product([-1, 1], repeat=u.size)))
    exact = np.mean(np.abs(flips @ u) >= observed - 1e-12)
    p, z = sign_flip_p(u, n_perm=20000, seed=0)
    assert abs(p[0] - exact) < 0.01
    assert np.isclose(z[0], u.sum() / np.sqrt((u**2).sum()))


def test_mcnemar_and_bh_agree_with_reference_values() -> None:
    assert np.isclose(
        mcnemar_exact(np.array([3]), np.array([15]))[0], scistats.binomtest(3, 18, 0.5).pvalue
    )
    assert mcnemar_exact(np.array([0]), np.array([0]))[0] == 1.0
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    q = benjamini_hochberg(p)
    assert np.allclose(q[:4], [0.02, 0.04, 0.04, 0.02]) and np.isnan(q[4])


def test_length_control_explains_away_a_length_only_concept() -> None:
    rng = np.random.default_rng(2)
    words = np.column_stack([rng.integers(30, 90, 800), rng.integers(20, 80, 800)]).astype(float)
    length_diff = words[:, 0] - words[:, 1]
    only_length = 0.05 * length_diff + rng.normal(0, 1, size=800)
    real = 0.4 + rng.normal(0, 1, size=800)
    u = np.column_stack([only_length, real])
    delta_len, p_len = length_controlled(u, words[:, 0], words[:, 1])
    assert abs(delta_len[0]) < 0.15 and p_len[0] > 0.01
    assert abs(delta_len[1] - 0.4) < 0.15 and p_len[1] < 1e-6
    lean = global_lean(u, lengths=words, n_boot=200)
    assert list(lean["length_only"]) == [True, False]


def _numpy_loop_contrast(u: np.ndarray, labels: np.ndarray, k: int, m: int) -> dict:
    """Δ, Welch z, pooled d of cluster k vs the other active pairs for column m, one at a time."""
    inside = [u[i, m] for i in range(len(u)) if labels[i] == k]
    outside = [u[i, m] for i in range(len(u)) if labels[i] != k and labels[i] >= 0]
    a, b = np.array(inside), np.array(outside)
    delta = a.mean() - b.mean()
    welch = delta / np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    pooled = np.sqrt(
        ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    )
    return {"delta": delta, "z": welch, "d": delta / pooled}


def test_conditional_contrast_equals_a_direct_numpy_loop() -> None:
    rng = np.random.default_rng(4)
    n, k, m = 90, 3, 4
    labels = rng.integers(-1, k, size=n)
    u = rng.normal(size=(n, m)) + (labels[:, None] == 1) * np.array([0.8, 0, -0.5, 0])
    stats = in_out_contrast(u, labels, k, seed=9)
    half = split_halves(n, 9)
    for cluster, column in itertools.product(range(k), range(m)):
        expected = _numpy_loop_contrast(u, labels, cluster, column)
        for name in ("delta", "z", "d"):
            assert np.isclose(stats[name][cluster, column], expected[name]), name
        part_a = _numpy_loop_contrast(u[half], labels[half], cluster, column)["delta"]
        part_b = _numpy_loop_contrast(u[~half], labels[~half], cluster, column)["delta"]
        sign = np.sign(expected["delta"])
        consistent = np.sign(part_a) == sign and np.sign(part_b) == sign
        assert stats["split_half_ok"][cluster, column] == consistent
        assert np.isclose(stats["delta_min"][cluster, column], min(abs(part_a), abs(part_b)))
    assert stats["n_in"][1, 0] == np.sum(labels == 1)


def test_global_lean_is_deterministic_for_a_seed() -> None:
    chosen, rejected = firing_pairs(300, 20, seed=3, planted_share=0.1)
    first = global_lean(chosen - rejected, n_boot=200, seed=11)
    second = global_lean(chosen - rejected, n_boot=200, seed=11)
    for key, value in first.items():
        assert np.array_equal(value, second[key]), key


def test_feature_cluster_edges_use_the_mutual_information_of_co_firing() -> None:
    from sklearn.metrics import mutual_info_score

    from sculpt.analysis.clusters import positive_mi

    rng = np.random.default_rng(0)
    active = rng.random((500, 6)) < 0.3
    active[:, 1] |= active[:, 0] & (rng.random(500) < 0.5)  # 0 and 1 fire together
    active[:, 3] = ~active[:, 2] & (rng.random(500) < 0.5)  # 2 and 3 never do
    a, b, mi = positive_mi(sp.csc_matrix(active.astype(float)), np.arange(6))
    for i, j, value in zip(a, b, mi, strict=True):
        assert np.isclose(value, mutual_info_score(active[:, i], active[:, j]))
    edges = set(zip(a.tolist(), b.tolist(), strict=True))
    assert (0, 1) in edges and (2, 3) not in edges


def test_heavy_tailed_null_differences_are_not_overconfident() -> None:
    """Few, wild differences (the Monte Carlo + Hoeffding path) keep the null rejection rate."""
    rng = np.random.default_rng(8)
    u = np.zeros((400, 300))
    for c in range(u.shape[1]):
        rows = rng.choice(400, size=30, replace=False)
        u[rows, c] = rng.standard_cauchy(30)
    p, _ = sign_flip_p(sp.csc_matrix(u), n_perm=2000, seed=1)
    assert np.mean(p < 0.05) <= 0.07
    assert np.mean(benjamini_hochberg(p) < 0.05) <= 0.01
