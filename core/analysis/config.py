"""What `sculpt analyze` computes (its hash is the `analysis` key), and which analysis is the latest.

Light on purpose (no numpy or scipy): the TUI, the report, `plan` and the CLI import it to agree on
one analysis.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sculpt.lake.store import slug

if TYPE_CHECKING:
    from sculpt.lake.remote import RemoteLake
    from sculpt.lake.store import Lake

STAGE = "analyze"


@dataclass
class AnalyzeConfig:
    """What `sculpt analyze` computes; its hash is the `analysis` partition key."""

    seed: int = 0
    """Seed of every random step (bootstrap, permutations, halves, clustering, CV)."""
    sae: str | None = None
    """SAE whose features enter the analysis (default: every SAE with span_features; the
    conditional views need exactly one)."""
    score: Literal["max_act", "freq"] = "max_act"
    """Span summary of an SAE feature used by the global lean."""
    freq_threshold: float = 0.01
    """A feature fires on a span when freq > this (conditional views, DESIGN §4)."""
    n_boot: int = 1000
    """Bootstrap resamples for the CI of Δ."""
    n_perm: int = 10000
    """Sign flips for concepts with few nonzero differences (the rest use the exact limit)."""
    alpha: float = 0.05
    """FDR level for `length_only` marks."""
    length_share: float = 0.5
    """A significant concept is marked length-only when response length explains at least this
    share of its lean (1 − Δ_len/Δ, Δ_len adjusted for any function of each response's length)."""
    min_support: int | None = None
    """Pairs where a concept fires (either side) needed to test it; None: min(10, 1% of N),
    at least 5."""
    edge_fraction: float = 0.01
    """Share of feature pairs kept as MI edges (the preprint's top 1%)."""
    min_community: int = 4
    """Smallest feature community kept as a feature cluster."""
    min_feature_cluster: int | None = None
    """|T_m| filter for conditional hypotheses; None: scaled by SAE width (4–10)."""
    n_data_clusters: int | None = None
    """K of the data (and prompt) clusters; None: scaled by N (2–64)."""
    min_cluster_pairs: int | None = None
    """n_k filter for conditional hypotheses; None: scaled by N (8–25)."""
    silent_quantile: float = 0.05
    """Pairs whose activity norm is below this quantile form the silent bucket."""
    predictive_folds: int = 5
    """Cross-validation folds of the predictive model."""
    predictive_max_pairs: int = 10000
    """Pairs sampled (seeded) for the predictive model."""

    def __post_init__(self) -> None:
        if self.n_boot < 100:
            raise ValueError("n_boot must be ≥ 100 for a 95% percentile interval; raise it")
        if not 0 < self.edge_fraction <= 1:
            raise ValueError("edge_fraction must be in (0, 1]; the preprint uses 0.01")
        if not 0 <= self.silent_quantile < 0.5:
            raise ValueError("silent_quantile must be in [0, 0.5); the preprint uses 0.05")
        if not 0 < self.length_share <= 1:
            raise ValueError("length_share must be in (0, 1]; 0.5 marks 'mostly length'")
        if self.predictive_folds < 2:
            raise ValueError("predictive_folds must be ≥ 2")

    def key(self) -> str:
        """A short hash of the config: the `analysis` partition key."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


_ANALYSIS_DIR = re.compile(r"(?:^|/)analysis=([^/]+)/")


def latest_analysis(lake: Lake | RemoteLake, dataset: str) -> str | None:
    """The analysis every reader uses: the newest `analyze` run in the manifest whose hypotheses
    partition exists, else the most recently written hypotheses partition."""
    runs = [
        m
        for m in lake.manifest()
        if m.get("stage") == STAGE
        and m.get("dataset") == dataset
        and lake.has("hypotheses", {"dataset": dataset, "analysis": str(m.get("analysis"))})
    ]
    if runs:
        return slug(str(max(runs, key=lambda m: m.get("ts", 0))["analysis"]))
    newest: dict[str, float] = {}
    for order, file in enumerate(lake.files("hypotheses", {"dataset": dataset})):
        match = _ANALYSIS_DIR.search(str(file).replace("\\", "/"))
        if match:
            stamp = Path(file).stat().st_mtime if isinstance(file, Path) else float(order)
            newest[match.group(1)] = max(newest.get(match.group(1), stamp), stamp)
    return max(newest, key=lambda key: newest[key]) if newest else None
