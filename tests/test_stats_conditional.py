"""The conditional contrast (DESIGN §4): a data cluster against the rest of the *active* pool,
with an interval whose coverage is measured here."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sculpt.analysis.conditional import ViewSettings, contrast_table
from sculpt.analysis.stats import Z_95, in_out_contrast


def test_silent_pairs_are_in_neither_group() -> None:
    labels = np.array([0] * 4 + [1] * 4 + [-1] * 4)
    u = np.array([3.0, 1, 2, 2, 1, 1, 0, 2, 0, 0, 0, 0])[:, None]
    stats = in_out_contrast(u, labels, 2, seed=0)
    assert np.allclose(stats["delta"][:, 0], [2.0 - 1.0, 1.0 - 2.0])
    assert list(stats["n_in"][:, 0]) == [4, 4]


def test_sparse_differences_give_the_dense_contrast() -> None:
    """The conditional views hold u sparse (N × M dense does not fit at 260k pairs): same numbers."""
    rng = np.random.default_rng(3)
    n, m, k = 3000, 40, 6
    labels = rng.integers(-1, k, n)
    u = rng.normal(0, 1, (n, m)) * (rng.random((n, m)) < 0.1)
    dense, sparse = (
        in_out_contrast(u, labels, k, seed=1),
        in_out_contrast(sp.csr_matrix(u), labels, k, seed=1),
    )
    assert dense.keys() == sparse.keys()
    for name, values in dense.items():
        np.testing.assert_allclose(sparse[name], values, rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_purely_global_lean_shows_no_stable_conditional_lean() -> None:
    """Every active pair leans chosen alike; the silent 5% (u = 0) must not make each cluster lean."""
    rng = np.random.default_rng(7)
    n, k = 20000, 20
    labels = rng.integers(0, k, n)
    labels[rng.random(n) < 0.05] = -1
    active = (labels >= 0)[:, None]
    u = (1.0 + rng.normal(0, 0.5, (n, 1))) * active
    stats = in_out_contrast(u, labels, k, seed=0)
    flagged = stats["split_half_ok"][:, 0] & (np.abs(stats["z"][:, 0]) > 3)
    assert flagged.sum() <= 1


def test_the_conditional_95_interval_covers_the_true_contrast() -> None:
    """Clusters of unequal size, mean and spread; pairs drawn at random (seeded), 300 datasets."""
    rng = np.random.default_rng(11)
    share = np.array([0.05, 0.1, 0.2, 0.25, 0.4])
    mean = np.array([0.3, -0.1, 0.0, 0.05, 0.1])
    spread = np.array([1.0, 0.5, 2.0, 1.0, 0.7])
    k, n, columns = share.size, 1200, 20
    active = 0.95
    truth = np.array(
        [mean[j] - (share @ mean - share[j] * mean[j]) / (1 - share[j]) for j in range(k)]
    )
    covered = []
    for _ in range(300):
        labels = rng.choice(k, size=n, p=share)
        labels[rng.random(n) > active] = -1
        u = mean[labels][:, None] + spread[labels][:, None] * rng.standard_t(5, (n, columns))
        u[labels < 0] = 0.0
        stats = in_out_contrast(u, labels, k, seed=0)
        half = Z_95 * stats["se"]
        covered.append(np.abs(stats["delta"] - truth[:, None]) <= half)
    coverage = np.mean(covered)
    assert 0.93 <= coverage <= 0.97, coverage


def test_rows_shown_after_the_split_half_check_keep_95_percent_coverage() -> None:
    """No cell leans (truth 0); a row is shown only if its halves agree, which selects extreme Δ:
    the interval on the rows shown must still exclude 0 for at most ~5% of them."""
    rng = np.random.default_rng(12)
    n, k, m = 1000, 5, 40
    excluded = shown = 0
    for seed in range(60):
        labels = rng.integers(0, k, n)
        u = rng.normal(0, 1, (n, m)) * rng.uniform(0.5, 2, m)
        fires = {s: sp.csc_matrix((n, m)) for s in ("chosen", "rejected")}
        ids, names = [f"fc:t:{c}" for c in range(m)], [f"cluster {c}" for c in range(m)]
        settings = ViewSettings(seed, 0.01, 0.01, 4, 0.05, k, 4, 25)
        rows = contrast_table(
            "conditional", u, labels, list(range(m)), ids, names, np.full(m, 10.0), fires, settings
        ).to_pylist()
        shown += len(rows)
        excluded += sum(r["ci_lo"] > 0 or r["ci_hi"] < 0 for r in rows)
    assert shown > 3000
    assert excluded / shown <= 0.055, excluded / shown
