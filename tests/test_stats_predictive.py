"""Predictive power (DESIGN §4) on data with no signal: no model, top few included, beats chance."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sculpt.analysis.predictive import TOP_CONCEPTS, predictive_power


def test_top_concepts_are_chosen_inside_each_fold_so_null_data_stays_at_chance() -> None:
    rng = np.random.default_rng(0)
    n, c = 600, 400
    u = sp.csr_matrix(rng.normal(size=(n, c)) * (rng.random((n, c)) < 0.2))
    table = predictive_power(u, rng.normal(size=n), [f"c{i}" for i in range(c)], seed=0)
    auc = {row["model"]: row["auc"] for row in table.to_pylist()}
    assert auc[f"top{TOP_CONCEPTS}"] < 0.57
