"""The feature-conditioned and prompt-conditioned views of DESIGN §4 on one SAE's span features.

Filters scale with the data (see core/analysis/clusters.py): |T_m| ≥ clamp(F // 400, 4, 10),
n_k ≥ clamp(N // 40, 8, 25), SC = 1; K = clamp(round(√(N/25)), 2, 64).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sculpt.analysis import clusters as clustering
from sculpt.analysis.inputs import HYPOTHESIS_SCHEMA, SIDES, Pairs, SaeSpans, hypothesis_table
from sculpt.analysis.stats import SHOWN_Z_95, in_out_contrast, lean_label

if TYPE_CHECKING:
    from sculpt.analysis.config import AnalyzeConfig


@dataclass
class Views:
    """Feature clusters of one SAE and the hypotheses conditioned on data and prompt clusters."""

    sae: str
    ids: list[str]
    """fc:<sae>:<m> for co-activation clusters T_m, then fc:<sae>:r<m> for response-delta R_m."""
    labels: list[str]
    members: list[np.ndarray]
    span_scores: dict[str, sp.csr_matrix]
    """Per side, N × len(ids): the share of a cluster's features firing on the span."""
    data_cluster: np.ndarray
    prompt_cluster: np.ndarray
    conditional: pa.Table
    prompt: pa.Table


@dataclass(frozen=True)
class ViewSettings:
    seed: int
    freq_threshold: float
    edge_fraction: float
    min_community: int
    silent_quantile: float
    n_clusters: int
    min_feature_cluster: int
    min_cluster_pairs: int


def settings_for(config: AnalyzeConfig, pairs: Pairs, sae: SaeSpans) -> ViewSettings:
    """Resolve the config's scaled defaults (None) for this dataset and SAE."""
    min_pairs = config.min_cluster_pairs or clustering.min_cluster_pairs(pairs.n)
    k = config.n_data_clusters or clustering.default_n_data_clusters(pairs.n)
    return ViewSettings(
        seed=config.seed,
        freq_threshold=config.freq_threshold,
        edge_fraction=config.edge_fraction,
        min_community=config.min_community,
        silent_quantile=config.silent_quantile,
        n_clusters=int(max(1, min(k, pairs.n // min_pairs))),
        min_feature_cluster=config.min_feature_cluster
        or clustering.min_feature_cluster_size(sae.n_features),
        min_cluster_pairs=min_pairs,
    )


def conditional_views(pairs: Pairs, sae: SaeSpans, settings: ViewSettings) -> Views:
    """Feature clusters T_m (co-activation over spans), response-delta clusters R_m
    (co-discordance over pairs), data clusters B_k, prompt clusters A_k; B_k × T_m and A_k ⇝ R_m."""
    fired = {side: (sae.freq[side] > settings.freq_threshold).tocsr() for side in SIDES}
    together, delta_columns, members = _feature_clusters(fired, settings)
    n_t = len(together)
    ids = [f"fc:{sae.sae}:{m}" for m in range(n_t)]
    ids += [f"fc:{sae.sae}:r{m}" for m in range(len(members) - n_t)]
    labels = [_cluster_label(c, sae.labels) for c in members]
    member_matrix = clustering.membership(members, sae.n_features)
    sizes = np.array([c.size for c in members], dtype=np.float64)
    scale = sp.diags(1.0 / np.maximum(sizes, 1.0)) if members else sp.csr_matrix((0, 0))
    span_scores = {side: (fired[side] @ member_matrix @ scale).tocsr() for side in SIDES}
    u = (span_scores["chosen"] - span_scores["rejected"]).tocsc()  # N × M: sparse throughout
    on_t = member_matrix[:, :n_t]
    activity = sae.freq["chosen"] @ on_t + sae.freq["rejected"] @ on_t
    prompt_activity = sae.freq["prompt"] @ on_t
    k, seed, quantile = settings.n_clusters, settings.seed, settings.silent_quantile
    data_cluster = clustering.data_clusters(activity, k, seed=seed, silent_quantile=quantile)
    prompt_cluster = clustering.data_clusters(
        prompt_activity, k, seed=seed, silent_quantile=quantile
    )
    fires = {s: (span_scores[s] > 0).astype(np.float64).tocsc() for s in ("chosen", "rejected")}
    shared = (ids, labels, sizes, fires, settings)
    conditional = contrast_table("conditional", u, data_cluster, list(range(n_t)), *shared)
    prompt = contrast_table("prompt", u, prompt_cluster, delta_columns, *shared)
    return Views(
        sae.sae,
        ids,
        labels,
        members,
        span_scores,
        data_cluster,
        prompt_cluster,
        conditional,
        prompt,
    )


def _feature_clusters(
    fired: dict[str, sp.csr_matrix], settings: ViewSettings
) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """(T, columns of R in the member list, T + the R that differ from every T).

    T_m: MI of firing over every span (prompt, chosen, rejected); R_m: MI of discordance
    (fires on one response only) over pairs. An R_m equal to some T_m reuses its concept.
    """
    find: dict[str, Any] = {
        "seed": settings.seed,
        "edge_fraction": settings.edge_fraction,
        "min_size": settings.min_community,
    }
    together = clustering.feature_clusters(sp.vstack([fired[s] for s in SIDES]), **find)
    discordant = fired["chosen"] != fired["rejected"]
    deltas = clustering.feature_clusters(discordant, **find)
    members = list(together)
    known = {tuple(c.tolist()): m for m, c in enumerate(together)}
    columns = []
    for cluster in deltas:
        key = tuple(cluster.tolist())
        if key not in known:
            known[key] = len(members)
            members.append(cluster)
        columns.append(known[key])
    return together, columns, members


def _cluster_label(features: np.ndarray, names: dict[int, str]) -> str:
    shown = [names.get(int(f), f"#{int(f)}") for f in features[:3]]
    more = f" +{features.size - 3}" if features.size > 3 else ""
    return f"{features.size} features: " + ", ".join(shown) + more


def contrast_table(
    scope: str,
    u_all: sp.csc_matrix,
    labels: np.ndarray,
    columns: list[int],
    ids: list[str],
    names: list[str],
    sizes: np.ndarray,
    fires: dict[str, sp.csc_matrix],
    settings: ViewSettings,
) -> pa.Table:
    """Hypotheses (cluster k, concept m) passing the filters, ranked by Δ^min (DESIGN §4).

    p and q are left null: the data clusters were fitted on these same pairs and rows are shown
    after a selection, so z ranks and is not a p-value. The interval is Δ ± SHOWN_Z_95 · Welch SE,
    a 95% interval among the rows shown (its coverage is measured in bench/honesty.py).
    """
    k = settings.n_clusters
    if not columns:
        return HYPOTHESIS_SCHEMA.empty_table()
    stats = in_out_contrast(u_all[:, columns], labels, k, seed=settings.seed)
    n_k = np.bincount(labels[labels >= 0], minlength=k)
    keep = (
        (n_k[:, None] >= settings.min_cluster_pairs)
        & (sizes[columns][None, :] >= settings.min_feature_cluster)
        & stats["split_half_ok"]
    )
    ks, ms = np.nonzero(keep)
    order = np.argsort(-stats["delta_min"][ks, ms], kind="stable")
    ks, ms = ks[order], ms[order]
    rate = _firing_rates(labels, n_k, {s: fires[s][:, columns] for s in fires})
    delta, z = stats["delta"][ks, ms], stats["z"][ks, ms]
    half_width = SHOWN_Z_95 * stats["se"][ks, ms]  # 95% among rows that passed the split half
    concept = [ids[columns[m]] for m in ms]
    nan = np.full(len(ks), np.nan)
    return hypothesis_table(
        {
            "hypothesis_id": [f"{scope}/{c}/{kk}" for c, kk in zip(concept, ks, strict=True)],
            "scope": [scope] * len(ks),
            "concept_id": concept,
            "label": [names[columns[m]] for m in ms],
            "kind": ["feature_cluster"] * len(ks),
            "data_cluster": ks,
            "n": np.full(len(ks), len(labels)),
            "n_in": n_k[ks],
            "delta": delta,
            "ci_lo": delta - half_width,
            "ci_hi": delta + half_width,
            "d": stats["d"][ks, ms],
            "z": z,
            "p": nan,
            "q": nan,
            "split_half_ok": np.ones(len(ks), bool),
            "delta_min": stats["delta_min"][ks, ms],
            "delta_len": nan,
            "length_only": np.zeros(len(ks), bool),
            "lean": lean_label(delta).tolist(),
            "chosen_rate": rate["chosen"][ks, ms],
            "rejected_rate": rate["rejected"][ks, ms],
            "rank": np.arange(1, len(ks) + 1),
        }
    )


def _firing_rates(
    labels: np.ndarray, n_k: np.ndarray, fires: dict[str, sp.csc_matrix]
) -> dict[str, np.ndarray]:
    """Per side, K × M: the share of a data cluster's pairs where the concept fires."""
    inside = labels >= 0
    onehot = sp.csr_matrix(
        (np.ones(int(inside.sum())), (labels[inside], np.flatnonzero(inside))),
        shape=(len(n_k), len(labels)),
    )
    scale = np.maximum(n_k, 1)[:, None]
    return {side: np.asarray((onehot @ f).todense()) / scale for side, f in fires.items()}


def concept_rows(views: Views, analysis: str) -> pa.Table:
    """`concepts` rows of the feature clusters (family fc-<analysis>)."""
    return pa.table(
        {
            "concept_id": views.ids,
            "kind": ["feature_cluster"] * len(views.ids),
            "members": [json.dumps([int(f) for f in c]) for c in views.members],
            "label": views.labels,
            "source": [
                json.dumps({"sae": views.sae, "analysis": analysis, "view": _view_name(cid)})
                for cid in views.ids
            ],
        }
    )


def _view_name(concept_id: str) -> str:
    return "response-delta" if concept_id.rsplit(":", 1)[-1].startswith("r") else "co-activation"
