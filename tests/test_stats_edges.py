"""Edge cases of the global lean with a known answer: empty, constant, perfect, noisy, broken u."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sculpt.analysis.stats import global_lean, in_out_contrast, split_half


def test_a_concept_equal_on_both_sides_of_every_pair_is_untested_not_a_crash() -> None:
    u = np.zeros((30, 3))
    u[:10, 0] = 1
    u[:5, 1] = 0.5
    lean = global_lean(sp.csc_matrix(u), n_boot=200)
    assert np.isclose(lean["p"][0], 2 * 0.5**10)  # McNemar on 10 discordant pairs, all chosen
    assert list(lean["lean"]) == ["chosen", "chosen", "untested"]
    assert np.isnan(lean["p"][2]) and np.isnan(lean["q"][2]) and not lean["split_half_ok"][2]


def test_a_nan_difference_makes_the_concept_untested_and_outside_the_bh_family() -> None:
    rng = np.random.default_rng(0)
    u = rng.normal(0.3, 1, size=(100, 3))
    clean = global_lean(u[:, :2], n_boot=200)
    u[7, 2] = np.nan
    lean = global_lean(u, n_boot=200)
    assert lean["lean"][2] == "untested"
    assert all(np.isnan(lean[k][2]) for k in ("p", "q", "z", "d", "ci_lo", "ci_hi", "delta"))
    assert np.allclose(lean["q"][:2], clean["q"])  # two tests, not three


def test_no_lean_is_labelled_none_not_chosen() -> None:
    u = np.array([[1.0], [-1.0]] * 20)
    lean = global_lean(u, n_boot=200)
    assert lean["lean"][0] == "none" and lean["p"][0] == 1.0


def test_a_concept_on_every_chosen_and_no_rejected_response_is_the_strongest_finding() -> None:
    rng = np.random.default_rng(1)
    n = 60
    lengths = np.column_stack([rng.integers(20, 200, n), rng.integers(20, 200, n)])
    noisy = (rng.random((n, 5)) < 0.6).astype(float) - (rng.random((n, 5)) < 0.2)
    u = np.column_stack([np.ones(n), noisy])
    lean = global_lean(u, lengths=lengths, n_boot=200)
    assert not lean["length_only"][0] and lean["lean"][0] == "chosen"
    assert np.argmax(lean["d"]) == 0 and np.argmin(lean["p"]) == 0
    assert 0 < lean["d"][0] <= np.sqrt(n + 1)  # the zero-variance rule caps |d| at √(n+1)
    assert lean["ci_lo"][0] < 1 < lean["ci_hi"][0]  # a perfect lean still has an interval


def test_perfect_separation_in_a_data_cluster_outranks_the_same_lean_with_noise() -> None:
    labels = np.repeat([0, 1, 2], 30)
    rng = np.random.default_rng(2)
    perfect = np.where(labels == 0, 1.0, 0.0)
    noisy = perfect + rng.normal(0, 0.3, labels.size)
    stats = in_out_contrast(np.column_stack([perfect, noisy]), labels, 3, seed=0)
    assert stats["z"][0, 0] > stats["z"][0, 1] > 0 and stats["d"][0, 0] > stats["d"][0, 1] > 0
    assert stats["se"][0, 0] > 0 and stats["split_half_ok"][0, 0]


def test_float_noise_is_not_a_lean_in_either_split_half_check() -> None:
    """Every active pair leans the same (no conditional lean): Δ is ~1e-16 of rounding, no sign."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 200)
    u = np.tile(rng.uniform(0.01, 1, 500), (200, 1))
    stats = in_out_contrast(u, labels, 4, seed=1)
    assert np.abs(stats["delta"]).max() < 1e-12 and not stats["split_half_ok"].any()
    tiny = np.full((200, 1), 1e-9)
    ok, delta_min = split_half(tiny, seed=0)
    assert not ok[0] and delta_min[0] == 0
    assert global_lean(tiny, n_boot=200)["lean"][0] == "none"
