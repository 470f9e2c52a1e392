"""Bootstrap sums of many concepts at once, compiled: the inner loop of the global lean's
intervals (DESIGN §4).

One resample matrix (how often each pair is drawn, per resample) is shared by every concept, so
a concept's resampled sums are its nonzero differences weighted by their pairs' draw counts:
work ∝ nonzeros × resamples, the largest term of the analysis at scale. scipy does this on one
core; here concepts are spread over every core, each sum accumulated in the same order and
precision as scipy's sparse product (float32, nonzeros in row order), so the results are the
same to the bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def resampled_sums(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, draws: np.ndarray
) -> np.ndarray:
    """C × B: Σ_j data[j] · draws[indices[j], b] over each row c of a C × N CSR matrix
    (`indptr`, `indices`, `data`, float32), for `draws` N × B (float32, C order)."""
    n_rows, n_resamples = indptr.size - 1, draws.shape[1]
    out = np.empty((n_rows, n_resamples), np.float32)
    for row in prange(n_rows):
        total = np.zeros(n_resamples, np.float32)  # its own array: the loop vectorizes
        for j in range(indptr[row], indptr[row + 1]):
            value, drawn = data[j], draws[indices[j]]
            for b in range(n_resamples):
                total[b] += value * drawn[b]
        out[row] = total
    return out
