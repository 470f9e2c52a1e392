"""Feature clusters (binary MI graph + Louvain) and data clusters (spherical k-means), DESIGN §4.

Scaling of the preprint's defaults for small datasets and small SAEs (the preprint used large SAEs
and tens of thousands of pairs); each is a function so the docs, the config and the tests agree:
- edges: the top 1% of feature pairs by MI, but at least 4 per feature (mean degree ≥ 8), so a
  small SAE still has a connected enough graph for communities of ≥ 4;
- feature clusters kept for hypotheses: |T_m| ≥ clamp(F // 400, 4, 10) (10 at F ≥ 4,000);
- data clusters K = clamp(round(√(N / 25)), 2, 64), and at most N / n_min clusters;
- pairs per data cluster n_k ≥ clamp(N // 40, 8, 25) (25 at N ≥ 1,000).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import scipy.sparse as sp

MI_ROW_CHUNK = 512
"""Feature rows of the MI matrix computed at once (bounds memory to chunk × F floats)."""


def min_feature_cluster_size(n_features: int) -> int:
    """|T_m| filter: 10 for SAEs of ≥ 4,000 features, scaled down to 4 for small ones."""
    return int(min(10, max(4, n_features // 400)))


def default_n_data_clusters(n_pairs: int) -> int:
    """K grows like √N: 2 at a hundred pairs, 10 at 2,500, capped at 64."""
    return int(min(64, max(2, round(math.sqrt(n_pairs / 25)))))


def min_cluster_pairs(n_pairs: int) -> int:
    """n_k filter: 25 pairs (the preprint's) from 1,000 pairs on, down to 8 for tiny datasets."""
    return int(min(25, max(8, n_pairs // 40)))


def _mutual_information(n11: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, n: int) -> np.ndarray:
    """MI (nats) of two binary variables from counts: both on, a on, b on, out of n samples."""
    cells = (
        (n11, n_a, n_b),
        (n_a - n11, n_a, n - n_b),
        (n_b - n11, n - n_a, n_b),
        (n - n_a - n_b + n11, n - n_a, n - n_b),
    )
    mi = np.zeros(n11.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for joint, marg_a, marg_b in cells:
            term = joint / n * np.log(joint * n / (marg_a * marg_b))
            mi += np.where(joint > 0, term, 0.0)
    return np.maximum(mi, 0.0)


def positive_mi(active: sp.spmatrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, MI) for feature pairs a ∈ rows, b > a that fire together more often than chance.

    An anti-correlated pair carries MI too, but is no co-activation edge, so it is left out.
    """
    x = sp.csc_matrix(active)
    n = x.shape[0]
    count = np.diff(x.indptr).astype(np.float64)
    both = np.asarray((x[:, rows].T @ x).todense())
    positive = both * n > count[rows][:, None] * count[None, :]
    positive &= np.arange(x.shape[1])[None, :] > rows[:, None]
    local, b = np.nonzero(positive)
    a = rows[local]
    return a, b, _mutual_information(both[local, b], count[a], count[b], n)


def mi_edges(
    active: sp.spmatrix, edge_fraction: float = 0.01, min_count: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, weight): the top `edge_fraction` of feature pairs by binary MI (at least 4F).

    Features active in fewer than `min_count` samples take no part.
    """
    x = sp.csc_matrix(active, dtype=np.float64)
    x.data[:] = 1.0
    live = np.flatnonzero(np.diff(x.indptr) >= min_count)
    if live.size < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    sub = x[:, live]
    blocks = [
        positive_mi(sub, np.arange(start, min(start + MI_ROW_CHUNK, live.size)))
        for start in range(0, live.size, MI_ROW_CHUNK)
    ]
    a, b, w = (np.concatenate([block[i] for block in blocks]) for i in range(3))
    n_pairs = live.size * (live.size - 1) // 2
    n_edges = min(w.size, max(round(edge_fraction * n_pairs), 4 * live.size))
    top = np.argpartition(-w, n_edges - 1)[:n_edges] if n_edges < w.size else np.arange(w.size)
    top = top[np.lexsort((b[top], a[top]))]  # a fixed edge order keeps Louvain deterministic
    return live[a[top]], live[b[top]], w[top]


def feature_clusters(
    active: sp.spmatrix, *, seed: int = 0, edge_fraction: float = 0.01, min_size: int = 4
) -> list[np.ndarray]:
    """Communities (Louvain, seeded) of ≥ min_size features in the binary MI graph, DESIGN §4.

    Sorted by size, then smallest member; each holds sorted feature indices.
    """
    a, b, w = mi_edges(active, edge_fraction=edge_fraction)
    graph = nx.Graph()
    graph.add_weighted_edges_from(zip(a.tolist(), b.tolist(), w.tolist(), strict=True))
    if graph.number_of_edges() == 0:
        return []
    communities = nx.community.louvain_communities(graph, weight="weight", seed=seed)
    kept = [np.array(sorted(c), dtype=np.int64) for c in communities if len(c) >= min_size]
    kept.sort(key=lambda c: (-c.size, int(c[0])))
    return kept


def membership(clusters: list[np.ndarray], n_features: int) -> sp.csr_matrix:
    """F × M indicator of which feature belongs to which cluster."""
    if not clusters:
        return sp.csr_matrix((n_features, 0))
    rows = np.concatenate(clusters)
    cols = np.concatenate([np.full(c.size, m) for m, c in enumerate(clusters)])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_features, len(clusters)))


def spherical_kmeans(x: np.ndarray, k: int, seed: int = 0, max_iter: int = 50) -> np.ndarray:
    """Labels of rows of x clustered by cosine (k-means++ init, seeded); rows must be nonzero.

    Stops when fewer than 0.1% of the rows change cluster (or after `max_iter` rounds).
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    n = len(unit)
    k = max(1, min(k, n))
    center = _kmeans_plus_plus(unit, k, np.random.default_rng([seed, 0xC1]))
    labels = np.full(n, -1)
    for _ in range(max_iter):
        similarity = unit @ center.T
        new = similarity.argmax(axis=1)
        changed = np.count_nonzero(new != labels)
        labels = new
        onehot = sp.csr_matrix((np.ones(n, np.float32), (labels, np.arange(n))), shape=(k, n))
        sums = np.asarray(onehot @ unit)
        empty = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        worst = np.argsort(similarity.max(axis=1), kind="stable")[: empty.size]
        sums[empty] = unit[worst]  # re-seed an empty cluster with the worst-fitting rows
        lengths = np.linalg.norm(sums, axis=1, keepdims=True)
        center = sums / np.where(lengths > 0, lengths, 1.0)
        if changed <= 0.001 * n:
            break
    return labels


def _kmeans_plus_plus(unit: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k seeds drawn with probability ∝ cosine distance to the nearest seed so far."""
    n = len(unit)
    picks = [int(rng.integers(n))]
    closest = 1.0 - unit @ unit[picks[0]]
    for _ in range(1, k):
        weights = np.maximum(closest, 0.0).astype(np.float64)
        total = weights.sum()
        pick = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        picks.append(pick)
        closest = np.minimum(closest, 1.0 - unit @ unit[pick])
    return unit[picks]


def data_clusters(
    activity: np.ndarray, k: int, *, seed: int = 0, silent_quantile: float = 0.05
) -> np.ndarray:
    """Data clusters B_k: spherical k-means on activity rows; −1 marks the silent bucket.

    Silent = ‖s_i‖ below the `silent_quantile` quantile, or zero (a zero row has no direction).
    """
    norms = np.linalg.norm(activity, axis=1)
    cutoff = np.quantile(norms, silent_quantile) if len(norms) else 0.0
    silent = (norms < cutoff) | (norms == 0)
    labels = np.full(len(activity), -1, dtype=np.int64)
    if (~silent).sum() >= 1:
        labels[~silent] = spherical_kmeans(activity[~silent], k, seed=seed)
    return labels
