"""Feature clusters: sparse co-firing counts and normalized MI equal a dense all-pairs reference;
normalized MI ranks a rare always-together pair first; planted groups come out as clusters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import entropy
from sklearn.metrics import mutual_info_score

from sculpt.analysis import clusters
from sculpt.analysis.clusters import communities, data_clusters, feature_clusters, mi_edges


def dense_reference_edges(
    active: np.ndarray, edge_fraction: float, min_count: int = 3
) -> dict[tuple[int, int], float]:
    """Every feature pair scored from a dense F × F table (pairs that never co-fire included),
    kept when it co-fires above chance, the top share by MI / √(H_a·H_b), ties by (a, b)."""
    fires = active.astype(bool)
    n = len(fires)
    live = np.flatnonzero(fires.sum(axis=0) >= min_count)
    together = fires.T.astype(np.int64) @ fires.astype(np.int64)
    count = fires.sum(axis=0)
    scored = []
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if together[a, b] * n <= count[a] * count[b]:
                continue
            h_a = entropy([count[a], n - count[a]])
            h_b = entropy([count[b], n - count[b]])
            mi = mutual_info_score(fires[:, a], fires[:, b])
            scored.append((-mi / np.sqrt(h_a * h_b), int(a), int(b)))
    scored.sort()
    n_pairs = live.size * (live.size - 1) // 2
    size = int(max(round(edge_fraction * n_pairs), 4 * live.size))
    return {(a, b): -negative for negative, a, b in scored[:size]}


def planted(n: int, n_groups: int, group: int, n_noise: int, seed: int) -> np.ndarray:
    """Samples × features: groups of `group` features that fire together (each member with
    prob. 0.7 when its group is on), then independent noise features, some rare."""
    rng = np.random.default_rng(seed)
    on = rng.random((n, n_groups)) < rng.uniform(0.03, 0.3, n_groups)
    grouped = np.repeat(on, group, axis=1) & (rng.random((n, n_groups * group)) < 0.7)
    noise = rng.random((n, n_noise)) < rng.uniform(0.002, 0.4, n_noise)
    exclusive = rng.random(n) < 0.5  # two features that never co-fire, each on half the samples
    return np.column_stack([grouped, noise, exclusive, ~exclusive])


def as_edges(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> dict[tuple[int, int], float]:
    return {(int(i), int(j)): float(v) for i, j, v in zip(a, b, w, strict=True)}


@pytest.mark.parametrize(
    ("seed", "edge_fraction", "block"),
    [(0, 0.01, 1 << 24), (1, 0.05, 97), (2, 0.2, 13), (3, 0.01, 1)],
)
def test_sparse_edges_equal_the_dense_all_pairs_reference(
    monkeypatch: pytest.MonkeyPatch, seed: int, edge_fraction: float, block: int
) -> None:
    monkeypatch.setattr(clusters, "PRODUCT_ELEMENTS", block)  # many blocks, running top-k
    active = planted(400, n_groups=5, group=6, n_noise=20, seed=seed)
    got = as_edges(*mi_edges(sp.csr_matrix(active.astype(float)), edge_fraction=edge_fraction))
    expected = dense_reference_edges(active, edge_fraction)
    assert got.keys() == expected.keys()
    for pair, weight in expected.items():
        assert got[pair] == pytest.approx(weight, rel=1e-7), pair
    n_features = active.shape[1]
    assert (n_features - 2, n_features - 1) not in got  # never co-fire: no edge, however strong


def test_clusters_are_the_communities_of_the_reference_graph() -> None:
    active = planted(600, n_groups=6, group=8, n_noise=12, seed=4)
    matrix = sp.csr_matrix(active.astype(float))
    reference = dense_reference_edges(active, 0.01)
    a, b = (np.array([pair[i] for pair in reference]) for i in (0, 1))
    w = np.array(list(reference.values()))
    expected = sorted(
        (c for c in communities(a, b, w, seed=5) if c.size >= 4),
        key=lambda c: (-c.size, int(c[0])),
    )
    got = feature_clusters(matrix, seed=5)
    assert [c.tolist() for c in got] == [c.tolist() for c in expected]
    # each planted group is whole inside one cluster of its own (noise features may join it)
    holding = [
        [m for m, c in enumerate(got) if set(range(g * 8, g * 8 + 8)) <= set(c)] for g in range(6)
    ]
    assert sorted(len(h) for h in holding) == [1] * 6
    assert len({h[0] for h in holding}) == 6


def test_rare_features_that_always_fire_together_outrank_weak_links_of_common_ones() -> None:
    """Issue 15 item 9: MI alone prefers any link between common features; MI / √(H·H) puts
    two rare features that always fire together first (1.0) and keeps them in the top share."""
    rng = np.random.default_rng(0)
    n = 1000
    latent = rng.random(n) < 0.5
    common = latent[:, None] ^ (rng.random((n, 20)) < 0.1)  # noisy copies: NMI ≈ 0.3 each pair
    rare = np.zeros((n, 2), dtype=bool)
    rare[rng.choice(n, 20, replace=False)] = True  # 2% of samples, always both
    active = np.column_stack([rare, common])
    edges = as_edges(*mi_edges(sp.csr_matrix(active.astype(float))))
    assert edges[(0, 1)] == pytest.approx(1.0)
    assert max(edges.values()) == edges[(0, 1)]
    assert max(w for pair, w in edges.items() if pair != (0, 1)) < 0.5


def test_data_clusters_accept_sparse_activity() -> None:
    rng = np.random.default_rng(1)
    activity = rng.random((300, 12)) * (rng.random((300, 12)) < 0.3)
    activity[:5] = 0  # silent rows
    dense = data_clusters(activity, 4, seed=2)
    assert np.array_equal(data_clusters(sp.csr_matrix(activity), 4, seed=2), dense)
    assert (dense[:5] == -1).all()
