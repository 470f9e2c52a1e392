"""Predictive power of concept differences (DESIGN §4 [beyond], after WIMHF): can a sparse
logistic model tell which side was chosen, and is it more than a length-only model?"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sculpt.lake import schemas

TOP_CONCEPTS = 5
"""How many concepts the `top` model keeps (the share of AUC they explain is reported)."""

PREDICTIVE_SCHEMA = schemas.PREDICTIVE


def _l1_logistic(c: float, seed: int) -> Any:
    """An L1 logistic regression; sklearn ≥ 1.8 spells L1 as l1_ratio=1 (penalty deprecated)."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        return LogisticRegression(l1_ratio=1.0, solver="liblinear", C=c, random_state=seed)
    return LogisticRegression(penalty="l1", solver="liblinear", C=c, random_state=seed)


def _top(coef: np.ndarray, k: int) -> np.ndarray:
    """Columns of the k largest nonzero |coefficients|."""
    top = np.argsort(-np.abs(coef), kind="stable")[:k]
    return top[coef[top] != 0]


def _cv_auc(
    x: sp.csr_matrix, y: np.ndarray, folds: int, seed: int, c: float, top: int | None = None
) -> list[tuple[float, float]]:
    """Held-out AUC (mean, sd over stratified folds) of the model on every column; with `top`, also
    of a model on the top concepts chosen inside each fold from its training rows (nested: held-out
    rows never pick them; the fold's full fit makes the choice)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if x.shape[1] == 0:
        return [(0.5, 0.0)] * (1 if top is None else 2)
    full, best = [], []
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in split.split(np.zeros(len(y)), y):
        model = _l1_logistic(c, seed).fit(x[train], y[train])
        full.append(roc_auc_score(y[test], model.decision_function(x[test])))
        if top is None:
            continue
        columns = _top(model.coef_.ravel(), top)
        if columns.size == 0:
            best.append(0.5)
            continue
        small = _l1_logistic(c, seed).fit(x[train][:, columns], y[train])
        best.append(roc_auc_score(y[test], small.decision_function(x[test][:, columns])))
    out = [(float(np.mean(full)), float(np.std(full)))]
    return out + ([(float(np.mean(best)), float(np.std(best)))] if top is not None else [])


def _standardize(x: sp.csr_matrix) -> sp.csr_matrix:
    """Scale columns to unit RMS without centering (flips make the mean ≈ 0; sparsity kept)."""
    rms = np.sqrt(np.asarray(x.power(2).mean(axis=0)).ravel())
    return (x @ sp.diags(1.0 / np.where(rms > 0, rms, 1.0))).tocsr()


def predictive_power(
    u: sp.spmatrix,
    length_diff: np.ndarray,
    concept_ids: list[str],
    *,
    seed: int = 0,
    folds: int = 5,
    max_pairs: int = 10000,
    c: float = 0.1,
) -> pa.Table:
    """Cross-validated AUC (mean ± sd over folds) of an L1 logistic regression predicting the
    chosen side from concept differences, beside a length-only baseline and a top-k model.

    Each pair's orientation is flipped at random (seeded): x = ±u, y = 1 when not flipped, so the
    model cannot learn the side from the order. Rows: `concepts`, `length`, `top<k>`; the
    `top_concepts` JSON holds [concept_id, coefficient] of the largest |coefficient|s.
    """
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng([seed, 0x9D])
    n = u.shape[0]
    rows = np.sort(rng.choice(n, size=min(n, max_pairs), replace=False))
    flip = rng.integers(0, 2, size=rows.size) * 2 - 1
    y = (flip > 0).astype(int)
    if rows.size < 2 * folds or y.min() == y.max():
        return pa.Table.from_pylist([], schema=PREDICTIVE_SCHEMA)
    x = _standardize(sp.diags(flip.astype(np.float64)) @ sp.csr_matrix(u)[rows])
    length = sp.csr_matrix((flip * np.asarray(length_diff, np.float64)[rows])[:, None])
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        (auc, sd), top_auc = _cv_auc(x, y, folds, seed, c, top=TOP_CONCEPTS)
        full = _l1_logistic(c, seed)
        coef = full.fit(x, y).coef_.ravel() if x.shape[1] else np.zeros(0)
        top = _top(coef, TOP_CONCEPTS)
        named = json.dumps([[concept_ids[i], round(float(coef[i]), 4)] for i in top])
        out.append(("concepts", auc, sd, named))
        out.append(("length", *_cv_auc(_standardize(length), y, folds, seed, 1.0)[0], "[]"))
        out.append((f"top{TOP_CONCEPTS}", *top_auc, named))
    return pa.Table.from_pylist(
        [dict(zip(PREDICTIVE_SCHEMA.names, row, strict=True)) for row in out],
        schema=PREDICTIVE_SCHEMA,
    )
