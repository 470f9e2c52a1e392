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

SIGN_FLOOR = 1e-6
"""|Δ| at or below this has no sign (the preprint's floor): float noise is not a lean, in the
lean label and in both split-half checks."""

LENGTH_KNOTS = 12
"""Knots (quantiles of response length) of the length basis; fewer when there are few pairs."""

Z_95 = 1.959963984540054
"""z of a two-sided 95% normal interval."""

SHOWN_Z_95 = float(scistats.norm.ppf(1 - (1 - 0.95) / 4))
"""z (2.24) of the conditional 95% interval, valid among the rows shown: a row is shown only after
its split-half check, which a cell with no lean passes half the time and one with a lean more often
(p² + (1 − p)² ≥ ½), so P(miss | shown) ≤ 2·P(miss); the interval is built at 97.5%. Measured by
bench/honesty.py (with a plain ±1.96 SE, 9% of the null rows shown exclude 0)."""


def _csc(u: Matrix) -> sp.csc_matrix:
    if sp.issparse(u):
        return sp.csc_matrix(u, dtype=np.float64)
    arr = np.asarray(u, dtype=np.float64)
    return sp.csc_matrix(arr.reshape(len(arr), -1))


def _colsum(m: sp.csc_matrix) -> np.ndarray:
    return np.asarray(m.sum(axis=0)).ravel()


def informative(m: sp.csc_matrix) -> np.ndarray:
    """Columns that carry information: every difference finite and at least one nonzero. The rest
    are reported as untested and are not counted among the BH tests."""
    bad = ~np.isfinite(m.data)
    broken = _count_by_column(m, bad) > 0
    return (_count_by_column(m, ~bad & (m.data != 0)) > 0) & ~broken


def _finite(m: sp.csc_matrix) -> sp.csc_matrix:
    """m with non-finite entries zeroed (their columns are untested; this keeps the rest exact)."""
    bad = ~np.isfinite(m.data)
    if not bad.any():
        return m
    m = m.copy()
    m.data[bad] = 0.0
    return m


def signed(delta: np.ndarray) -> np.ndarray:
    """sign(Δ) with |Δ| ≤ SIGN_FLOOR (and NaN) as 0: one floor for every lean and split-half."""
    delta = np.asarray(delta, dtype=np.float64)
    return np.where(np.abs(np.nan_to_num(delta)) > SIGN_FLOOR, np.sign(np.nan_to_num(delta)), 0.0)


def lean_label(delta: np.ndarray, tested: np.ndarray | None = None) -> np.ndarray:
    """ "chosen" / "rejected" by the sign of Δ, "none" when Δ has no sign, "untested" when the
    concept carries no information."""
    label = np.array(["rejected", "none", "chosen"], dtype=object)[signed(delta).astype(int) + 1]
    if tested is not None:
        label[~np.asarray(tested, dtype=bool)] = "untested"
    return label.astype(str)


def variance_floor(delta: np.ndarray, n: np.ndarray | float) -> np.ndarray:
    """Zero-variance rule: a group's variance is taken as at least Δ²/(n+1), the variance it would
    have if one more of its pairs sat at the other side's mean (0 for a paired Δ). So |d| ≤ √(n+1):
    a perfect separation is the strongest lean its n allows, never d = z = 0, and its interval has
    width. Ordinary data (variance above that) is untouched."""
    return np.asarray(delta, dtype=np.float64) ** 2 / (np.asarray(n, dtype=np.float64) + 1.0)


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
    from sculpt.analysis.resample import resampled_sums

    for start in range(0, n_boot, BOOT_CHUNK):
        size = min(BOOT_CHUNK, n_boot - start)
        draws = np.ascontiguousarray(_resample_counts(rng, n, size).T)
        sums = resampled_sums(rows.indptr, rows.indices, rows.data, draws)
        means[start : start + size] = sums.T / n
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


def split_half(u: Matrix, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ok, delta_min): both halves' Δ agree in sign with the full Δ, every one beyond SIGN_FLOOR."""
    m = _csc(u)
    half = split_halves(m.shape[0], seed)
    n_a, n_b = half.sum(), (~half).sum()
    total = _colsum(m)
    in_a = m.T @ half.astype(np.float64)
    delta_a, delta_b = in_a / max(n_a, 1), (total - in_a) / max(n_b, 1)
    sign = signed(total / max(m.shape[0], 1))
    ok = (signed(delta_a) == sign) & (signed(delta_b) == sign) & (sign != 0)
    delta_min = np.minimum(np.abs(delta_a), np.abs(delta_b))
    return ok, np.where(ok, delta_min, 0.0)


def length_basis(chosen_len: np.ndarray, rejected_len: np.ndarray) -> np.ndarray:
    """N × K: B(len⁺) − B(len⁻) for a basis B of length (linear, plus a hinge and a step at each
    knot, knots at quantiles of every response's length), so that any function of length,
    g(len⁺) − g(len⁻) (linear, a threshold, a saturation), lies close to its span."""
    chosen_len = np.asarray(chosen_len, dtype=np.float64)
    rejected_len = np.asarray(rejected_len, dtype=np.float64)
    n = chosen_len.size
    both = np.concatenate([chosen_len, rejected_len])
    knots = int(np.clip(n // 100, 1, LENGTH_KNOTS))
    quantiles = np.linspace(0, 1, knots + 2)[1:-1]
    inner = np.unique(np.quantile(both, quantiles)) if n else np.zeros(0)
    scale = max(float(np.std(both)), 1.0) if n else 1.0

    def basis(length: np.ndarray) -> np.ndarray:
        over = length[:, None] - inner[None, :]
        return np.column_stack([length, np.maximum(over, 0.0), scale * (over > 0)]) / scale

    return basis(chosen_len) - basis(rejected_len)


def length_controlled(
    u: Matrix, chosen_len: np.ndarray, rejected_len: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Δ_len, p_len): intercept of u ~ 1 + B(len⁺) − B(len⁻) (OLS, `length_basis`) and its
    two-sided normal p.

    The intercept is the lean expected between two responses of equal length (DESIGN §4,
    length control): a concept that is only a function of length has Δ_len ≈ 0.
    """
    m = _csc(u)
    n = m.shape[0]
    x = np.column_stack([np.ones(n), length_basis(chosen_len, rejected_len)])
    # einsum, not BLAS: these products take milliseconds either way, and threaded BLAS on a tall
    # thin matrix stalls for seconds when the cores are shared
    gram = np.einsum("nk,nj->kj", x, x)
    inv = np.linalg.pinv(gram, rcond=1e-10, hermitian=True)
    rank = int(np.linalg.matrix_rank(gram, hermitian=True))
    s2 = _colsum(m.power(2))
    xtu = np.asarray(m.T @ x).T  # K × C
    coef = np.einsum("kj,jc->kc", inv, xtu)
    rss = np.maximum(s2 - np.einsum("kc,kc->c", coef, xtu), 0.0)
    se = np.sqrt(rss / max(n - rank, 1) * max(inv[0, 0], 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, coef[0] / se, np.where(coef[0] != 0, np.inf, 0.0))
    p = 2.0 * scistats.norm.sf(np.abs(z))
    return coef[0], p


def global_lean(
    u: Matrix,
    *,
    fired_chosen: Matrix | None = None,
    fired_rejected: Matrix | None = None,
    lengths: np.ndarray | None = None,
    binary: np.ndarray | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    n_perm: int = 10000,
    alpha: float = 0.05,
    length_share: float = 0.5,
) -> dict[str, Any]:
    """Global lean of every column of u (DESIGN §4): Δ, bootstrap CI, d_z, p, BH q, split-half,
    length-controlled Δ, firing rates. Binary concepts (u ∈ {−1, 0, 1}) get the exact McNemar p.

    `lengths` (N × 2, words in chosen and rejected) turns on the length control: a significant
    concept is `length_only` when length explains at least `length_share` of its lean
    (Δ_len / Δ ≤ 1 − length_share), not when the adjusted test merely has less power. Columns with
    no information (all zero, or any NaN) are untested: NaN p, q, z, d and interval, lean
    "untested", outside the BH family. Returns a dict of arrays of length C.
    """
    raw = _csc(u)
    tested = informative(raw)
    m = _finite(raw)
    n, n_concepts = m.shape
    s1, s2 = _colsum(m), _colsum(m.power(2))
    delta = s1 / n
    var = np.maximum(s2 - n * delta**2, 0.0) / max(n - 1, 1)
    sd = np.sqrt(np.maximum(var, variance_floor(delta, n)))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sd > 0, delta / sd, 0.0)
    p, z = sign_flip_p(m, n_perm=n_perm, seed=seed)
    if binary is None:
        binary = _is_binary(m)
    if np.any(binary):
        pos = _colsum((m > 0).astype(np.float64).tocsc())
        neg = _colsum((m < 0).astype(np.float64).tocsc())
        p = np.where(binary, mcnemar_exact(pos, neg), p)
    ci_lo, ci_hi = bootstrap_ci(m, n_boot=n_boot, seed=seed)
    width = Z_95 * np.sqrt(variance_floor(delta, n) / n)  # the interval of a perfect lean
    ci_lo, ci_hi = np.minimum(ci_lo, delta - width), np.maximum(ci_hi, delta + width)
    ok, delta_min = split_half(m, seed=seed)
    chosen_rate, rejected_rate, n_in = _rates(m, fired_chosen, fired_rejected)
    delta_len = delta.copy() if lengths is None else _length_adjusted(m, lengths)
    nan = np.where(tested, 1.0, np.nan)
    p, z, d, ci_lo, ci_hi, delta_len = (x * nan for x in (p, z, d, ci_lo, ci_hi, delta_len))
    delta = np.where(np.isfinite(_colsum(raw)), delta, np.nan)
    q = benjamini_hochberg(p)
    significant = np.nan_to_num(q, nan=1.0) < alpha
    length_only = significant & (_share_kept(delta, delta_len) <= 1.0 - length_share)
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
        "split_half_ok": ok & tested,
        "delta_min": np.where(tested, delta_min, 0.0),
        "delta_len": delta_len,
        "length_only": length_only & (lengths is not None),
        "lean": lean_label(delta, tested),
        "chosen_rate": chosen_rate,
        "rejected_rate": rejected_rate,
    }


def _length_adjusted(m: sp.csc_matrix, lengths: np.ndarray) -> np.ndarray:
    """Δ_len of every column, from the N × 2 words in (chosen, rejected)."""
    words = np.asarray(lengths, dtype=np.float64).reshape(m.shape[0], 2)
    return length_controlled(m, words[:, 0], words[:, 1])[0]


def _share_kept(delta: np.ndarray, delta_len: np.ndarray) -> np.ndarray:
    """Δ_len / Δ in the direction of Δ: 1 when length explains nothing, ≤ 0 when it explains all."""
    with np.errstate(invalid="ignore", divide="ignore"):
        along = np.nan_to_num(delta_len * signed(delta))
        return along / np.where(delta != 0, np.abs(delta), 1.0)


def _is_binary(m: sp.csc_matrix) -> np.ndarray:
    """Columns whose nonzero differences are all ±1 (a firing indicator's difference)."""
    data = m.data
    off_unit = _count_by_column(m, (data != 0) & (np.abs(data) != 1.0))
    return (off_unit == 0) & (_count_by_column(m, data != 0) > 0)


def _count_by_column(m: sp.csc_matrix, mask: np.ndarray) -> np.ndarray:
    """Per column, how many of its stored entries `mask` marks (empty columns count 0)."""
    running = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    return np.diff(running[m.indptr])


def _rates(
    m: sp.csc_matrix, fired_chosen: Matrix | None, fired_rejected: Matrix | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chosen and rejected firing rates and the number of pairs where the concept is present."""
    n = m.shape[0]
    if fired_chosen is None or fired_rejected is None:
        pos = _colsum((m > 0).astype(np.float64).tocsc())
        neg = _colsum((m < 0).astype(np.float64).tocsc())
        return pos / n, neg / n, np.diff(m.indptr).astype(np.int64)
    fc, fr = sp.csc_matrix(fired_chosen) != 0, sp.csc_matrix(fired_rejected) != 0
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

    `labels` holds each pair's cluster; "out" is the rest of the *active* pool: silent pairs
    (label −1) are in neither group. Returns K × M arrays: n_in, delta, z (Welch), d (Cohen,
    pooled sd), se (Welch), split_half_ok (SC = 1: both seeded halves agree in sign with Δ, all
    beyond SIGN_FLOOR), delta_min = min(|Δ^A|, |Δ^B|). Zero variances follow `variance_floor`.
    """
    u = sp.csr_matrix(u, dtype=np.float64) if sp.issparse(u) else np.asarray(u, dtype=np.float64)
    full = _contrast(u, labels, n_clusters)
    half = split_halves(len(labels), seed)
    part_a = _contrast(u[half], labels[half], n_clusters)["delta"]
    part_b = _contrast(u[~half], labels[~half], n_clusters)["delta"]
    sign = signed(full["delta"])
    ok = (signed(part_a) == sign) & (signed(part_b) == sign) & (sign != 0)
    full["split_half_ok"] = ok
    full["delta_min"] = np.minimum(np.abs(part_a), np.abs(part_b))
    return full


def _dense(m: Any) -> np.ndarray:
    return np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)


def _contrast(u: Matrix, labels: np.ndarray, n_clusters: int) -> dict[str, np.ndarray]:
    """The K × M contrast of u (N × M, dense or sparse: only K × M is ever dense)."""
    keep = labels >= 0
    onehot = sp.csr_matrix(
        (np.ones(keep.sum()), (labels[keep], np.flatnonzero(keep))),
        shape=(n_clusters, u.shape[0]),
    )
    squares = sp.csr_matrix(u).multiply(u) if sp.issparse(u) else np.asarray(u) * u
    n_in = np.asarray(onehot.sum(axis=1)).ravel()[:, None]
    n_out = int(keep.sum()) - n_in
    sum_in, sq_in = _dense(onehot @ u), _dense(onehot @ squares)
    sum_out = _dense(u[keep].sum(axis=0)).reshape(1, -1) - sum_in
    sq_out = _dense(squares[keep].sum(axis=0)).reshape(1, -1) - sq_in
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_in, mean_out = sum_in / n_in, sum_out / n_out
        delta = mean_in - mean_out
        var_in = np.maximum(sq_in - n_in * mean_in**2, 0.0) / (n_in - 1)
        var_out = np.maximum(sq_out - n_out * mean_out**2, 0.0) / (n_out - 1)
        var_in = np.maximum(var_in, variance_floor(delta, n_in))
        var_out = np.maximum(var_out, variance_floor(delta, n_out))
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
        "se": np.where(valid, welch_se, np.nan),
    }
