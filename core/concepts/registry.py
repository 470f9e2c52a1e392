"""Register concepts and their per-span scores uniformly, whatever their source (DESIGN §3).

Every producer writes two partitions keyed by [dataset, family]: `concepts` (what the concept is)
and, for non-SAE concepts, `concept_span_scores` (one score per span, dense: absent is not zero
for z-scored vectors). SAE features get their scores from `span_features` through the
`concept_scores` view.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sculpt.errors import UserError
from sculpt.lake import schemas
from sculpt.lake.store import Lake

SIDES = ("prompt", "chosen", "rejected")
KINDS = ("sae_feature", "feature_cluster", "lexical", "ngram", "vector", "probe")

CONCEPT_SCHEMA = schemas.CONCEPTS
SCORE_SCHEMA = schemas.CONCEPT_SPAN_SCORES


@dataclass
class Concept:
    """One concept row: `concept_id` (e.g. `lex:bold`), its kind, members, label and source."""

    concept_id: str
    kind: str
    label: str
    members: list[Any] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        if self.kind not in KINDS:
            raise ValueError(f"concept kind {self.kind!r}: use one of {', '.join(KINDS)}")
        return {
            "concept_id": self.concept_id,
            "kind": self.kind,
            "label": self.label,
            "members": json.dumps(self.members, ensure_ascii=False),
            "source": json.dumps(self.source, ensure_ascii=False, default=str),
        }


@dataclass
class Spans:
    """The spans a producer scored: parallel lists of pair ids, sides and texts."""

    pair_ids: list[str]
    sides: list[str]
    texts: list[str]


def pair_spans(lake: Lake, dataset: str, sides: Sequence[str] = SIDES) -> Spans:
    """Every span of `pairs` [dataset] as text; a prompt is its messages' contents joined."""
    pairs = lake.read("pairs", {"dataset": dataset}).to_pylist()
    if not pairs:
        raise UserError(f"dataset {dataset}: no pairs; run `sculpt ingest` first")
    spans = Spans([], [], [])
    for side in sides:
        for row in pairs:
            spans.pair_ids.append(row["pair_id"])
            spans.sides.append(side)
            spans.texts.append(prompt_text(row["prompt"]) if side == "prompt" else row[side])
    return spans


def prompt_text(prompt: str) -> str:
    """The text of a `pairs.prompt` (JSON list of {role, content}), one message per paragraph."""
    try:
        messages = json.loads(prompt)
    except (TypeError, json.JSONDecodeError):
        return str(prompt or "")
    if not isinstance(messages, list):
        return str(prompt)
    return "\n\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))


def score_table(concept_ids: Sequence[str], spans: Spans, scores: np.ndarray) -> pa.Table:
    """Long table from a [n_concepts, n_spans] score matrix."""
    n_concepts, n_spans = scores.shape
    return pa.table(
        {
            "concept_id": pa.array(np.repeat(np.asarray(concept_ids, dtype=object), n_spans)),
            "pair_id": pa.array(np.tile(np.asarray(spans.pair_ids, dtype=object), n_concepts)),
            "side": pa.array(np.tile(np.asarray(spans.sides, dtype=object), n_concepts)),
            "score": pa.array(scores.reshape(-1).astype(np.float32)),
        },
        schema=SCORE_SCHEMA,
    )


def write_concepts(
    lake: Lake,
    dataset: str,
    family: str,
    concepts: Sequence[Concept],
    scores: pa.Table | None = None,
) -> None:
    """Replace the [dataset, family] partitions of `concepts` (and `concept_span_scores`)."""
    partition = {"dataset": dataset, "family": family}
    if scores is not None:
        lake.replace_partition("concept_span_scores", partition, scores.cast(SCORE_SCHEMA))
    table = pa.Table.from_pylist([c.row() for c in concepts], schema=CONCEPT_SCHEMA)
    lake.replace_partition("concepts", partition, table)


def read_concepts(lake: Lake, dataset: str, family: str | None = None) -> list[dict[str, Any]]:
    """Concept rows of a dataset (optionally one family), with `family` added."""
    base = lake.partition_dir("concepts", {"dataset": dataset})
    rows: list[dict[str, Any]] = []
    for folder in sorted(base.glob("family=*")):
        name = folder.name[len("family=") :]
        if family is not None and name != family:
            continue
        for row in lake.read("concepts", {"dataset": dataset, "family": name}).to_pylist():
            row.pop("schema_version", None)
            rows.append({**row, "family": name})
    return rows
