"""Statistics of concept leans (DESIGN §4), vectorized over concepts, sparse-friendly, seeded.

Every function takes the per-pair differences of many concepts at once: `u` is an N × C matrix
(dense or scipy.sparse, absent = 0) with u[i, c] = a_c(chosen_i) − a_c(rejected_i).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp
from scipy import stats as scistats

Matrix: TypeAlias = np.ndarray | sp.spmatrix | sp.sparray

BOOT_CHUNK = 50
"""Bootstrap resamples applied per sparse matmul; bounds memory to BOOT_CHUNK × N floats."""

NORMAL_MIN_EFFECTIVE_N = 50.0
"""Below this effective number of nonzero differences, (Σu²)²/Σu⁴, the sign-flip p is Monte Carlo."""


def _csc(u: Matrix) -> sp.csc_matrix:
    if sp.issparse(u):
        return sp.csc_matrix(u, dtype=np.float64)
    arr = np.asarray(u, dtype=np.float64)
    return sp.csc_matrix(arr.reshape(len(arr), -1))


def _colsum(m: sp.csc_matrix) -> np.ndarray:
    return np.asarray(m.sum(axis=0)).ravel()


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH q-values (step-up, monotone); NaN p stays NaN and is not counted as a test."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * ok.size / np.arange(1, ok.size + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def mcnemar_exact(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p from discordant counts b (chosen only) and c (rejected only)."""
    b = np.asarray(b, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    n = b + c
    p = np.minimum(1.0, 2.0 * scistats.binom.cdf(np.minimum(b, c), np.maximum(n, 1), 0.5))
    return np.where(n == 0, 1.0, p)


def _resample_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """`size` bootstrap resamples of n pairs: row b holds how often each pair is drawn."""
    draws = rng.integers(0, n, size=(size, n))
    flat = (draws + (np.arange(size)[:, None] * n)).ravel()
    return np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float32)


def bootstrap_ci(
    u: Matrix, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI of mean(u) per concept; one seeded resample matrix shared by all concepts."""
    # C × N in float32: one sparse matmul per chunk of resamples, at half the memory traffic
    rows = _csc(u).T.tocsr().astype(np.float32)
    n = rows.shape[1]
    means = np.empty((n_boot, rows.shape[0]))
    rng = np.random.default_rng([seed, 0xB007])
    for start in range(0, n_boot, BOOT_CHUNK):
        size = min(BOOT_CHUNK, n_boot - start)
        means[start : start + size] = (rows @ _resample_counts(rng, n, size).T).T / n
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail], axis=0)
    return lo, hi


def sign_flip_p(u: Matrix, n_perm: int = 10000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided sign-flip permutation p of mean(u) = 0, and the standardized z = Σu/√Σu².

    Under random sign flips Σu has mean 0 and variance Σu², so z is the permutation statistic
    standardized; its normal tail is the infinite-permutation limit, used when the effective
    number of nonzero differences is ≥ NORMAL_MIN_EFFECTIVE_N. Smaller cases (few pairs, or a
    few huge differences) get a seeded Monte Carlo over `n_perm` flips, shared by all such
    concepts; below its resolution 1/(n_perm+1), Hoeffding's bound 2·exp(−z²/2), which holds for
    the exact sign-flip p whatever u is, takes over.
    """
    m = _csc(u)
    s1, s2, s4 = _colsum(m), _colsum(m.power(2)), _colsum(m.power(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s2 > 0, s1 / np.sqrt(s2), 0.0)
        effective = np.where(s4 > 0, s2**2 / s4, 0.0)
    p = 2.0 * scistats.norm.sf(np.abs(z))
    p[s2 == 0] = 1.0
    small = np.flatnonzero((s2 > 0) & (effective < NORMAL_MIN_EFFECTIVE_N))
    if small.size:
        monte_carlo = _monte_carlo_sign_flip(m[:, small], np.abs(s1[small]), n_perm, seed)
        p[small] = np.minimum(monte_carlo, 2.0 * np.exp(-(z[small] ** 2) / 2.0))
    return p, z


def _monte_carlo_sign_flip(
    m: sp.csc_matrix, observed: np.ndarray, n_perm: int, seed: int
) -> np.ndarray:
    """(1 + #{|Σ s·u| ≥ |Σu|}) / (n_perm + 1) with one seeded sign matrix shared by all columns."""
    by_concept = m.T.tocsr()
    used = np.unique(by_concept.indices)  # only pairs with a nonzero difference matter
    by_concept = by_concept[:, used]
    rng = np.random.default_rng([seed, 0x5F11])
    chunk = int(max(1, min(1000, 4_000_000 // max(used.size, 1))))
    exceed = np.zeros(by_concept.shape[0])
    for start in range(0, n_perm, chunk):
        size = min(chunk, n_perm - start)
        signs = rng.integers(0, 2, size=(used.size, size), dtype=np.int8) * 2.0 - 1.0
        null = np.abs(by_concept @ signs)
        exceed += np.count_nonzero(null >= observed[:, None] - 1e-12, axis=1)
    return (1.0 + exceed) / (n_perm + 1.0)


def split_halves(n: int, seed: int) -> np.ndarray:
    """A seeded random half of the n pairs (boolean mask, ⌊n/2⌋ true)."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng([seed, 0x5A17]).permutation(n)[: n // 2]] = True
    return mask


def split_half(u: Matrix, seed: int = 0, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """(ok, delta_min): both halves' Δ agree in sign with the full Δ and exceed eps."""
    m = _csc(u)
    half = split_halves(m.shape[0], seed)
    n_a, n_b = half.sum(), (~half).sum()
    total = _colsum(m)
    in_a = m.T @ half.astype(np.float64)
    delta_a, delta_b = in_a / max(n_a, 1), (total - in_a) / max(n_b, 1)
    sign = np.sign(total)
    ok = (np.sign(delta_a) == sign) & (np.sign(delta_b) == sign) & (sign != 0)
    delta_min = np.minimum(np.abs(delta_a), np.abs(delta_b))
    ok &= delta_min > eps
    return ok, np.where(ok, delta_min, 0.0)


def length_controlled(u: Matrix, length_diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Δ_len, p_len): intercept of u ~ 1 + length_diff (OLS) and its two-sided normal p.

    The intercept is the lean expected between two responses of equal length (DESIGN §4,
    length control), so a concept that is only "longer text" has Δ_len ≈ 0.
    """
    m = _csc(u)
    n = m.shape[0]
    x = np.asarray(length_diff, dtype=np.float64)
    gram = np.array([[n, x.sum()], [x.sum(), x @ x]])
    s1, s2 = _colsum(m), _colsum(m.power(2))
    if n < 3 or np.linalg.matrix_rank(gram) < 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 0) / max(n - 1, 1))
            p = 2 * scistats.norm.sf(np.abs(np.where(se > 0, (s1 / n) / se, 0.0)))
        return s1 / n, np.where(s2 > 0, p, 1.0)
    xtu = np.vstack([s1, m.T @ x])
    inv = np.linalg.inv(gram)
    coef = inv @ xtu
    rss = np.maximum(s2 - np.einsum("kc,kc->c", coef, xtu), 0.0)
    se = np.sqrt(rss / (n - 2) * inv[0, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, coef[0] / se, 0.0)
    p = 2.0 * scistats.norm.sf(np.abs(z))
    return coef[0], np.where((se > 0) | (coef[0] != 0), p, 1.0)


def global_lean(
    u: Matrix,
    *,
    fired_chosen: Matrix | None = None,
    fired_rejected: Matrix | None = None,
    length_diff: np.ndarray | None = None,
    binary: np.ndarray | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    n_perm: int = 10000,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Global lean of every column of u (DESIGN §4): Δ, bootstrap CI, d_z, p, BH q, split-half,
    length-controlled Δ, firing rates. Binary concepts (u ∈ {−1, 0, 1}) get the exact McNemar p.

    Returns a dict of arrays of length C (scalars' arrays of length 1 for a 1-D u).
    """
    m = _csc(u)
    n, n_concepts = m.shape
    s1, s2 = _colsum(m), _colsum(m.power(2))
    delta = s1 / n
    sd = np.sqrt(np.maximum(s2 - n * delta**2, 0.0) / max(n - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sd > 0, delta / sd, 0.0)
    p, z = sign_flip_p(m, n_perm=n_perm, seed=seed)
    if binary is None:
        binary = _is_binary(m)
    if np.any(binary):
        pos = _colsum((m > 0).astype(np.float64).tocsc())
        neg = _colsum((m < 0).astype(np.float64).tocsc())
        p = np.where(binary, mcnemar_exact(pos, neg), p)
    q = benjamini_hochberg(p)
    ci_lo, ci_hi = bootstrap_ci(m, n_boot=n_boot, seed=seed)
    ok, delta_min = split_half(m, seed=seed)
    chosen_rate, rejected_rate, n_in = _rates(m, fired_chosen, fired_rejected)
    if length_diff is not None:
        delta_len, p_len = length_controlled(m, length_diff)
        q_len = benjamini_hochberg(p_len)
        length_only = (q < alpha) & ((q_len >= alpha) | (np.sign(delta_len) != np.sign(delta)))
    else:
        delta_len, length_only = delta.copy(), np.zeros(n_concepts, dtype=bool)
    return {
        "n": np.full(n_concepts, n, dtype=np.int64),
        "n_in": n_in,
        "delta": delta,
        "ci_lo": ci_lo,
        "ci_hi": ci_hi,
        "d": d,
        "z": z,
        "p": p,
        "q": q,
        "split_half_ok": ok,
        "delta_min": delta_min,
        "delta_len": delta_len,
        "length_only": length_only,
        "lean": np.where(delta >= 0, "chosen", "rejected"),
        "chosen_rate": chosen_rate,
        "rejected_rate": rejected_rate,
    }


def _is_binary(m: sp.csc_matrix) -> np.ndarray:
    """Columns whose nonzero differences are all ±1 (a firing indicator's difference)."""
    is_unit = (np.abs(m.data) == 1.0).astype(np.int64)
    counts = np.diff(m.indptr)
    unit_counts = np.add.reduceat(is_unit, m.indptr[:-1]) if m.data.size else counts * 0
    unit_counts = np.where(counts > 0, unit_counts, 0)
    return (unit_counts == counts) & (counts > 0)


def _rates(
    m: sp.csc_matrix, fired_chosen: Matrix | None, fired_rejected: Matrix | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chosen and rejected firing rates and the number of pairs where the concept is present."""
    n = m.shape[0]
    if fired_chosen is None or fired_rejected is None:
        pos = _colsum((m > 0).astype(np.float64).tocsc())
        neg = _colsum((m < 0).astype(np.float64).tocsc())
        return pos / n, neg / n, np.diff(m.indptr).astype(np.int64)
    fc, fr = _csc(fired_chosen) != 0, _csc(fired_rejected) != 0
    either = (fc + fr).tocsc()
    return (
        _colsum(fc.astype(np.float64).tocsc()) / n,
        _colsum(fr.astype(np.float64).tocsc()) / n,
        np.diff(either.indptr).astype(np.int64),
    )


def in_out_contrast(
    u: np.ndarray, labels: np.ndarray, n_clusters: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Δ = mean_in(u) − mean_out(u) for every (data cluster k, column m), DESIGN §4 conditional.

    `labels` holds each pair's cluster (−1 = silent: always "out"). Returns K × M arrays: n_in,
    delta, z (Welch), d (Cohen, pooled sd), split_half_ok (SC = 1: both seeded halves agree in
    sign with Δ), delta_min = min(|Δ^A|, |Δ^B|). z is inflated by the coupling of pairs: rank with
    it, don't read it as a p-value.
    """
    u = np.asarray(u, dtype=np.float64)
    full = _contrast(u, labels, n_clusters)
    half = split_halves(len(labels), seed)
    part_a = _contrast(u[half], labels[half], n_clusters)["delta"]
    part_b = _contrast(u[~half], labels[~half], n_clusters)["delta"]
    sign = np.sign(full["delta"])
    ok = (np.sign(part_a) == sign) & (np.sign(part_b) == sign) & (sign != 0)
    full["split_half_ok"] = ok
    full["delta_min"] = np.minimum(np.abs(part_a), np.abs(part_b))
    return full


def _contrast(u: np.ndarray, labels: np.ndarray, n_clusters: int) -> dict[str, np.ndarray]:
    keep = labels >= 0
    onehot = sp.csr_matrix(
        (np.ones(keep.sum()), (labels[keep], np.flatnonzero(keep))), shape=(n_clusters, len(u))
    )
    n_in = np.asarray(onehot.sum(axis=1)).ravel()[:, None]
    n_out = len(u) - n_in
    sum_in, sq_in = onehot @ u, onehot @ (u * u)
    sum_out, sq_out = u.sum(axis=0)[None, :] - sum_in, (u * u).sum(axis=0)[None, :] - sq_in
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_in, mean_out = sum_in / n_in, sum_out / n_out
        var_in = np.maximum(sq_in - n_in * mean_in**2, 0.0) / (n_in - 1)
        var_out = np.maximum(sq_out - n_out * mean_out**2, 0.0) / (n_out - 1)
        delta = mean_in - mean_out
        welch_se = np.sqrt(var_in / n_in + var_out / n_out)
        pooled = np.sqrt(((n_in - 1) * var_in + (n_out - 1) * var_out) / (n_in + n_out - 2))
        z = np.where(welch_se > 0, delta / welch_se, 0.0)
        d = np.where(pooled > 0, delta / pooled, 0.0)
    valid = (n_in > 1) & (n_out > 1)
    return {
        "n_in": np.broadcast_to(n_in, delta.shape).astype(np.int64),
        "delta": np.where(valid, delta, 0.0),
        "z": np.where(valid, z, 0.0),
        "d": np.where(valid, d, 0.0),
    }
