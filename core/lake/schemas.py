"""Arrow schemas of the lake's tables (lake/README.md documents them): one definition that
producers, readers and the sample lakes of tests and benchmarks share."""

from __future__ import annotations

import pyarrow as pa

PAIRS = pa.schema(
    [
        ("pair_id", pa.string()),
        ("row", pa.int64()),
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),
    ]
)
REJECTS = pa.schema(
    [
        ("row", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("pair_id", pa.string()),
        ("source", pa.string()),
    ]
)
SPAN_FEATURES = pa.schema(
    [
        ("pair_id", pa.string()),
        ("side", pa.string()),
        ("feature", pa.int32()),
        ("max_act", pa.float32()),
        ("freq", pa.float32()),
        ("sum_act", pa.float32()),
    ]
)
TOKEN_FEATURES = pa.schema(
    [
        ("pair_id", pa.string()),
        ("side", pa.string()),
        ("pos", pa.int32()),
        ("feature", pa.int32()),
        ("act", pa.float32()),
    ]
)
FEATURES = pa.schema(
    [
        ("feature", pa.int32()),
        ("density", pa.float32()),
        ("mean_act", pa.float32()),
        ("label", pa.string()),
        ("label_source", pa.string()),
        ("top_tokens", pa.string()),
        ("contexts", pa.string()),
    ]
)
CONCEPTS = pa.schema(
    [
        ("concept_id", pa.string()),
        ("kind", pa.string()),
        ("members", pa.string()),
        ("label", pa.string()),
        ("source", pa.string()),
    ]
)
CONCEPT_SPAN_SCORES = pa.schema(
    [
        ("concept_id", pa.string()),
        ("pair_id", pa.string()),
        ("side", pa.string()),
        ("score", pa.float32()),
    ]
)
HYPOTHESES = pa.schema(
    [
        ("hypothesis_id", pa.string()),
        ("scope", pa.string()),
        ("concept_id", pa.string()),
        ("label", pa.string()),
        ("kind", pa.string()),
        ("data_cluster", pa.int32()),
        ("n", pa.int32()),
        ("n_in", pa.int32()),
        *[(k, pa.float64()) for k in ("delta", "ci_lo", "ci_hi", "d", "z", "p", "q")],
        ("split_half_ok", pa.bool_()),
        ("delta_min", pa.float64()),
        ("delta_len", pa.float64()),
        ("length_only", pa.bool_()),
        ("lean", pa.string()),
        ("chosen_rate", pa.float64()),
        ("rejected_rate", pa.float64()),
        ("rank", pa.int32()),
    ]
)
PREDICTIVE = pa.schema(
    [
        ("model", pa.string()),
        ("auc", pa.float64()),
        ("auc_sd", pa.float64()),
        ("top_concepts", pa.string()),
    ]
)
FINDINGS = pa.schema(
    [
        ("finding_id", pa.string()),
        ("rank", pa.int32()),
        ("label", pa.string()),
        ("label_concept", pa.string()),
        ("kinds", pa.string()),
        ("members", pa.string()),
        ("n_members", pa.int32()),
        ("lean", pa.string()),
        ("n", pa.int32()),
        ("n_in", pa.int32()),
        *[(k, pa.float64()) for k in ("delta", "ci_lo", "ci_hi", "d", "z", "p", "q")],
        ("split_half_ok", pa.bool_()),
        ("delta_min", pa.float64()),
        ("delta_len", pa.float64()),
        ("length_only", pa.bool_()),
        ("chosen_share", pa.float64()),
        ("rejected_share", pa.float64()),
        ("dense", pa.bool_()),
        ("template", pa.bool_()),
    ]
)
FINDING_MEMBERS = pa.schema(
    [
        ("finding_id", pa.string()),
        ("concept_id", pa.string()),
        ("position", pa.int32()),
        ("role", pa.string()),
        ("kind", pa.string()),
        ("label", pa.string()),
        ("agreement", pa.float64()),
        ("hypothesis_id", pa.string()),
        *[(k, pa.float64()) for k in ("delta", "ci_lo", "ci_hi", "d", "q")],
        ("split_half_ok", pa.bool_()),
        ("lean", pa.string()),
        ("chosen_rate", pa.float64()),
        ("rejected_rate", pa.float64()),
        ("dense", pa.bool_()),
        ("template", pa.bool_()),
    ]
)

TABLES = (
    "pairs",
    "rejects",
    "acts",
    "spans",
    "span_features",
    "token_features",
    "features",
    "concepts",
    "concept_span_scores",
    "clusters",
    "hypotheses",
    "findings",
    "finding_members",
    "predictive",
    "decisions",
    "runs",
    "evals",
)
"""Every table a lake holds (lake/README.md); only these become DuckDB views, so a folder (or a
pushed lake's `_lake.json` key) named otherwise is never spliced into SQL."""
