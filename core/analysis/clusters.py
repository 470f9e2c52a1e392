"""Feature clusters (normalized-MI graph + Leiden) and data clusters (spherical k-means), DESIGN §4.

Scaling of the preprint's defaults for small datasets and small SAEs (the preprint used large SAEs
and tens of thousands of pairs); each is a function so the docs, the config and the tests agree:
- edges: the top 1% of feature pairs by normalized MI, but at least 4 per feature (mean degree ≥ 8), so a
  small SAE still has a connected enough graph for communities of ≥ 4;
- feature clusters kept for hypotheses: |T_m| ≥ clamp(F // 400, 4, 10) (10 at F ≥ 4,000);
- data clusters K = clamp(round(√(N / 25)), 2, 64), and at most N / n_min clusters;
- pairs per data cluster n_k ≥ clamp(N // 40, 8, 25) (25 at N ≥ 1,000).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

PRODUCT_ELEMENTS = 1 << 24
"""Feature pairs counted per task (a range of rows of the co-firing counts): bounds what one task
returns to a few hundred MB whatever the SAE width."""


def min_feature_cluster_size(n_features: int) -> int:
    """|T_m| filter: 10 for SAEs of ≥ 4,000 features, scaled down to 4 for small ones."""
    return int(min(10, max(4, n_features // 400)))


def default_n_data_clusters(n_pairs: int) -> int:
    """K grows like √N: 2 at a hundred pairs, 10 at 2,500, capped at 64."""
    return int(min(64, max(2, round(math.sqrt(n_pairs / 25)))))


def min_cluster_pairs(n_pairs: int) -> int:
    """n_k filter: 25 pairs (the preprint's) from 1,000 pairs on, down to 8 for tiny datasets."""
    return int(min(25, max(8, n_pairs // 40)))


def _xlogx(count: np.ndarray | float) -> np.ndarray:
    """c·ln c for counts c ≥ 0 (0 at 0)."""
    c = np.asarray(count, dtype=np.float64)
    return c * np.log(np.maximum(c, 1.0))


def _margin(count: np.ndarray, n: int) -> np.ndarray:
    """A feature's share of n·MI: xlogx(on) + xlogx(off); n·H = xlogx(n) − this."""
    return _xlogx(count) + _xlogx(n - np.asarray(count, dtype=np.float64))


def _cells(n11: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, n: int) -> np.ndarray:
    """Σ xlogx over the four cells of a pair's 2 × 2 table."""
    return _xlogx(n11) + _xlogx(n_a - n11) + _xlogx(n_b - n11) + _xlogx(n - n_a - n_b + n11)


def _mutual_information(n11: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, n: int) -> np.ndarray:
    """MI (nats) of two binary variables from counts: both on, a on, b on, out of n samples
    (n·MI = Σ_cells c ln c − Σ_margins m ln m + n ln n: four logs per pair, the rest per feature)."""
    total = _cells(n11, n_a, n_b, n) - _margin(n_a, n) - _margin(n_b, n) + _xlogx(n)
    return np.maximum(total / n, 0.0)


def normalized_mi(n11: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, n: int) -> np.ndarray:
    """MI / √(H_a·H_b) ∈ [0, 1], the preprint's edge weight (DESIGN §4): two features that always
    fire together score 1 however rare they are. 0 when either feature never varies."""
    return _normalized(n11, n_a, n_b, n, _margin(n_a, n), _margin(n_b, n))


def _normalized(
    n11: np.ndarray,
    n_a: np.ndarray,
    n_b: np.ndarray,
    n: int,
    margin_a: np.ndarray,
    margin_b: np.ndarray,
) -> np.ndarray:
    n_log_n = float(_xlogx(n))
    scale = np.sqrt(np.maximum(n_log_n - margin_a, 0.0) * np.maximum(n_log_n - margin_b, 0.0))
    mi = np.maximum(_cells(n11, n_a, n_b, n) - margin_a - margin_b + n_log_n, 0.0)
    return np.where(scale > 0, mi / np.where(scale > 0, scale, 1.0), 0.0)


def _fires_together(n11: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, n: int) -> np.ndarray:
    """More co-firing than chance (n11 > n_a·n_b / n): a co-activation edge candidate.

    An anti-correlated pair carries MI too, but is no co-activation edge. A pair that never
    co-fires (n11 = 0) is always anti-correlated, so only pairs in the sparse product's pattern
    can be edges: the F² pairs outside it need no closed form here.
    """
    return n11 * float(n) > n_a * n_b


def _binary(active: sp.spmatrix) -> sp.csc_matrix:
    """Samples × features firing indicator; float32 counts are exact below 2²⁴ samples."""
    x = sp.csc_matrix(active, copy=True)
    x.eliminate_zeros()
    x.sum_duplicates()
    dtype = np.float32 if x.shape[0] < 1 << 24 else np.float64
    return sp.csc_matrix((np.ones(x.nnz, dtype), x.indices, x.indptr), shape=x.shape)


def positive_mi(active: sp.spmatrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, MI) for feature pairs a ∈ rows, b > a that fire together more often than chance."""
    x = _binary(active)
    n, count = x.shape[0], np.diff(x.indptr).astype(np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    both = (x[:, rows].T.tocsr() @ x.tocsr()).tocsr()
    a = rows[np.repeat(np.arange(rows.size), np.diff(both.indptr))]
    b, n11 = both.indices.astype(np.int64), both.data.astype(np.float64)
    keep = (b > a) & _fires_together(n11, count[a], count[b], n)
    a, b, n11 = a[keep], b[keep], n11[keep]
    return a, b, _mutual_information(n11, count[a], count[b], n)


def threads() -> int:
    """Cores this process may run on: the co-firing counts use all of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _structure(active: sp.spmatrix) -> sp.csc_matrix:
    """Samples × features firing pattern (no values: 5 bytes per nonzero), duplicates summed,
    zeros dropped; never changes the caller's matrix."""
    x = sp.csc_matrix(active, copy=True)
    x.sum_duplicates()
    x.eliminate_zeros()
    return sp.csc_matrix((np.ones(x.nnz, bool), x.indices, x.indptr), shape=x.shape)


def _candidate_blocks(
    x: sp.csc_matrix, count: np.ndarray, top: _TopEdges
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(a, b, n11, pairs co-firing) per range of features a, from the compiled co-firing kernel
    over all cores. Each range is given the running floor of the best edges at its start, so what
    it returns stays small; the floor only drops pairs that can no longer enter, so the result
    does not depend on which range finishes first."""
    from sculpt.analysis.cofiring import cofiring_candidates

    by_sample = x.tocsr()
    by_sample.sort_indices()
    col_ptr, row_ptr = x.indptr.astype(np.int64), by_sample.indptr.astype(np.int64)
    n, n_features = x.shape
    count = count.astype(np.int64)
    xlogx = _xlogx(np.arange(n + 1))
    ranges, start = [], 0
    while start < n_features:
        stop = min(n_features, start + max(1, PRODUCT_ELEMENTS // (n_features - start)))
        ranges.append((start, stop))
        start = stop
    workers = threads()
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = deque()
        for first, stop in ranges:
            pending.append(
                pool.submit(
                    cofiring_candidates,
                    col_ptr,
                    x.indices,
                    row_ptr,
                    by_sample.indices,
                    first,
                    stop,
                    count,
                    xlogx,
                    top.floor,
                )
            )
            while len(pending) > 2 * workers or (pending and pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _TopEdges:
    """The `size` best (a, b, weight) seen so far, ties broken by (a, b); memory ≤ 2·size."""

    def __init__(self, size: int) -> None:
        self.size, self.floor = size, -np.inf
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.held = 0

    def add(self, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> None:
        keep = w >= self.floor  # below the size-th best so far: can never enter
        self.parts.append((a[keep], b[keep], w[keep]))
        self.held += int(keep.sum())
        if self.held > 2 * self.size:
            a, b, w = self._joined()
            self.floor = np.partition(w, w.size - self.size)[w.size - self.size]
            keep = w >= self.floor  # ties at the floor stay: the final order decides them
            self.parts, self.held = [(a[keep], b[keep], w[keep])], int(keep.sum())

    def _joined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
        a, b, w = (np.concatenate([part[i] for part in self.parts]) for i in range(3))
        return a, b, w

    def best(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kept edges in (a, b) order (a fixed order keeps the community search seeded)."""
        a, b, w = self._joined()
        top = np.lexsort((b, a, -w))[: self.size]
        top = top[np.lexsort((b[top], a[top]))]
        return a[top], b[top], w[top]


def mi_edges(
    active: sp.spmatrix, edge_fraction: float = 0.01, min_count: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, weight): the top `edge_fraction` of feature pairs (at least 4 per feature) among
    those that fire together more than chance, by normalized MI (DESIGN §4).

    Features active in fewer than `min_count` samples take no part. Equal weights are broken by
    the smaller (a, b).
    """
    x = _structure(active)
    n = x.shape[0]
    live = np.flatnonzero(np.diff(x.indptr) >= min_count)
    if live.size < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    sub = x[:, live]
    del x
    count = np.diff(sub.indptr).astype(np.float64)
    n_pairs = live.size * (live.size - 1) // 2
    top = _TopEdges(int(max(round(edge_fraction * n_pairs), 4 * live.size)))
    margin = _margin(count, n)
    for a, b, n11, _ in _candidate_blocks(sub, count, top):
        a, b, both = a.astype(np.int64), b.astype(np.int64), n11.astype(np.float64)
        top.add(a, b, _normalized(both, count[a], count[b], n, margin[a], margin[b]))
    a, b, w = top.best()
    return live[a], live[b], w


def communities(
    a: np.ndarray, b: np.ndarray, weight: np.ndarray, *, seed: int = 0
) -> list[np.ndarray]:
    """Leiden communities (modularity, seeded) of the weighted graph on the nodes of its edges."""
    if a.size == 0:
        return []
    nodes, index = np.unique(np.concatenate([a, b]), return_inverse=True)
    half = sp.coo_matrix(
        (weight, (index[: a.size], index[a.size :])), shape=(nodes.size, nodes.size)
    )
    from sknetwork.clustering import Leiden

    leiden = Leiden(
        modularity="newman",
        shuffle_nodes=True,
        random_state=seed,
        return_probs=False,
        return_aggregate=False,
    )
    labels = np.asarray(leiden.fit_predict((half + half.T).tocsr()))
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [np.sort(nodes[group]) for group in np.split(order, bounds)]


def feature_clusters(
    active: sp.spmatrix, *, seed: int = 0, edge_fraction: float = 0.01, min_size: int = 4
) -> list[np.ndarray]:
    """Communities of ≥ min_size features in the normalized-MI graph, DESIGN §4.

    Sorted by size, then smallest member; each holds sorted feature indices.
    """
    a, b, w = mi_edges(active, edge_fraction=edge_fraction)
    kept = [c.astype(np.int64) for c in communities(a, b, w, seed=seed) if c.size >= min_size]
    kept.sort(key=lambda c: (-c.size, int(c[0])))
    return kept


def membership(clusters: list[np.ndarray], n_features: int) -> sp.csr_matrix:
    """F × M indicator of which feature belongs to which cluster."""
    if not clusters:
        return sp.csr_matrix((n_features, 0))
    rows = np.concatenate(clusters)
    cols = np.concatenate([np.full(c.size, m) for m, c in enumerate(clusters)])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_features, len(clusters)))


def _row_norms(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    if sp.issparse(x):
        return np.sqrt(np.asarray(sp.csr_matrix(x).multiply(x).sum(axis=1), np.float64).ravel())
    return np.linalg.norm(np.asarray(x, np.float64).reshape(len(x), -1), axis=1)


def spherical_kmeans(
    x: np.ndarray | sp.spmatrix, k: int, seed: int = 0, max_iter: int = 50
) -> np.ndarray:
    """Labels of rows of x clustered by cosine (k-means++ init, seeded); rows must be nonzero.

    Dense or sparse x give the same labels: the rows are held sparse (memory ∝ nonzeros, the
    centers k × M dense). Stops when fewer than 0.1% of the rows change cluster (or after
    `max_iter` rounds).
    """
    norms = _row_norms(x)
    scale = sp.diags((1.0 / np.where(norms > 0, norms, 1.0)).astype(np.float32))
    unit = (scale @ sp.csr_matrix(x, dtype=np.float32)).tocsr()
    n = unit.shape[0]
    k = max(1, min(k, n))
    center = _kmeans_plus_plus(unit, k, np.random.default_rng([seed, 0xC1]))
    labels = np.full(n, -1)
    for _ in range(max_iter):
        similarity = np.asarray(unit @ center.T)
        new = similarity.argmax(axis=1)
        changed = np.count_nonzero(new != labels)
        labels = new
        onehot = sp.csr_matrix((np.ones(n, np.float32), (labels, np.arange(n))), shape=(k, n))
        sums = (onehot @ unit).toarray()
        empty = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        worst = np.argsort(similarity.max(axis=1), kind="stable")[: empty.size]
        sums[empty] = unit[worst].toarray()  # re-seed an empty cluster with the worst-fitting rows
        lengths = np.linalg.norm(sums, axis=1, keepdims=True)
        center = sums / np.where(lengths > 0, lengths, 1.0)
        if changed <= 0.001 * n:
            break
    return labels


def _kmeans_plus_plus(unit: sp.csr_matrix, k: int, rng: np.random.Generator) -> np.ndarray:
    """k seeds drawn with probability ∝ cosine distance to the nearest seed so far."""
    n = unit.shape[0]

    def distance(row: int) -> np.ndarray:
        return 1.0 - (unit @ unit[row].toarray().ravel())

    picks = [int(rng.integers(n))]
    closest = distance(picks[0])
    for _ in range(1, k):
        weights = np.maximum(closest, 0.0).astype(np.float64)
        total = weights.sum()
        pick = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        picks.append(pick)
        closest = np.minimum(closest, distance(pick))
    return unit[picks].toarray()


def data_clusters(
    activity: np.ndarray | sp.spmatrix, k: int, *, seed: int = 0, silent_quantile: float = 0.05
) -> np.ndarray:
    """Data clusters B_k: spherical k-means on activity rows; −1 marks the silent bucket.

    Silent = ‖s_i‖ below the `silent_quantile` quantile, or zero (a zero row has no direction).
    `activity` may be sparse (N × M, memory ∝ its nonzeros).
    """
    norms = _row_norms(activity)
    cutoff = np.quantile(norms, silent_quantile) if len(norms) else 0.0
    silent = (norms < cutoff) | (norms == 0)
    labels = np.full(len(norms), -1, dtype=np.int64)
    if (~silent).sum() >= 1:
        rows = sp.csr_matrix(activity)[np.flatnonzero(~silent)]
        labels[~silent] = spherical_kmeans(rows, k, seed=seed)
    return labels
