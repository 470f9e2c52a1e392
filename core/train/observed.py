"""What training changed in each concept: the audit's own scores on generations (DESIGN §4, §5).

The base and a trained checkpoint answer the same held-out prompts; the two answers to prompt i
are read the way the audit read the data — as one pair (trained answer in the chosen slot, base
answer in the rejected slot) through the *base* model at the SAE's layer — so every concept the
audit tested gets the same per-span score, and u_i = score(trained_i) − score(base_i) is the
audit's own statistic. Its mean over prompts (bootstrap interval) is the observed change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from sculpt.analysis.config import AnalyzeConfig
from sculpt.analysis.stats import bootstrap_ci
from sculpt.concepts.registry import read_concepts
from sculpt.lake.store import Lake, slug

TEXT_KINDS = ("lexical", "ngram")


@dataclass
class AuditConcepts:
    """The concepts of one analysis that can be scored on new text, grouped by how."""

    analysis: str
    config: AnalyzeConfig
    sae: str | None
    tested: list[str]
    """Concept ids of the analysis's global hypotheses, in its rank order."""
    text: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Lexical and n-gram concepts: concept id → its `concepts` row."""
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Vector and probe concepts: concept id → its `concepts` row."""
    clusters: dict[str, np.ndarray] = field(default_factory=dict)
    """Feature clusters of the analysis: concept id → member features."""


@dataclass
class GenerationScores:
    """Per-prompt scores of each concept: rows are prompts, columns `concept_ids`."""

    concept_ids: list[str]
    trained: np.ndarray
    base: np.ndarray

    def column(self, concept_id: str) -> np.ndarray:
        """u_i = score(trained_i) − score(base_i) of one concept."""
        j = self.concept_ids.index(concept_id)
        return self.trained[:, j] - self.base[:, j]


@dataclass
class Change:
    """Observed change of one concept: mean of u over prompts with its 95% bootstrap interval."""

    concept_id: str
    value: float
    ci_lo: float
    ci_hi: float
    n: int


def audit_concepts(lake: Lake, dataset: str, analysis: str) -> AuditConcepts:
    """What the analysis `analysis` of `dataset` tested, with what scoring each needs."""
    record = lake.done("analyze", f"{dataset}/{analysis}") or {}
    known = set(AnalyzeConfig.__dataclass_fields__)
    config = AnalyzeConfig(**{k: v for k, v in (record.get("config") or {}).items() if k in known})
    tested = [
        str(r["concept_id"])
        for r in lake.sql(
            "select concept_id from hypotheses where dataset = ? and analysis = ? "
            "and scope = 'global' order by rank",
            [dataset, analysis],
        ).to_pylist()
    ]
    found = AuditConcepts(analysis, config, config.sae, tested)
    for row in read_concepts(lake, dataset):
        kind, cid = row["kind"], row["concept_id"]
        if kind in TEXT_KINDS:
            found.text[cid] = row
        elif kind in ("vector", "probe"):
            found.vectors[cid] = row
        elif kind == "feature_cluster" and row["family"] == f"fc-{analysis}":
            found.clusters[cid] = np.asarray(json.loads(row["members"] or "[]"), dtype=np.int64)
            found.sae = found.sae or json.loads(row["source"] or "{}").get("sae")
    if found.sae is None:
        saes = {c.split(":")[1] for c in tested if c.startswith("sae:")}
        found.sae = saes.pop() if len(saes) == 1 else None
    return found


def score_generations(
    lake: Lake,
    dataset: str,
    concepts: AuditConcepts,
    prompts: Sequence[list[dict[str, str]]],
    trained: Sequence[str],
    base: Sequence[str],
    loaded: Any = None,
) -> GenerationScores:
    """Every scorable concept on both sets of answers (`loaded`: the audit's model, for the SAE,
    feature-cluster and vector concepts; without it only text concepts are scored)."""
    ids: list[str] = []
    columns: dict[str, list[np.ndarray]] = {"chosen": [], "rejected": []}
    for side, texts in (("chosen", trained), ("rejected", base)):
        text_ids, matrix = _text_scores(concepts.text, texts)
        columns[side].append(matrix)
        if side == "chosen":
            ids += text_ids
    if loaded is not None and (concepts.sae or concepts.vectors):
        model_ids, by_side = _model_scores(lake, dataset, concepts, prompts, trained, base, loaded)
        ids += model_ids
        for side in columns:
            columns[side].append(by_side[side])
    return GenerationScores(ids, np.hstack(columns["chosen"]), np.hstack(columns["rejected"]))


def observed_changes(scores: GenerationScores, seed: int = 0) -> dict[str, Change]:
    """Mean of u per concept over prompts, with its bootstrap interval (one resample for all)."""
    u = scores.trained - scores.base
    n = u.shape[0]
    if n < 2:
        nan = float("nan")
        return {
            c: Change(c, float(u[:, j].mean()) if n else nan, nan, nan, n)
            for j, c in enumerate(scores.concept_ids)
        }
    lo, hi = bootstrap_ci(sp.csc_matrix(u), seed=seed)
    means = u.mean(axis=0)
    return {
        c: Change(c, float(means[j]), float(lo[j]), float(hi[j]), n)
        for j, c in enumerate(scores.concept_ids)
    }


# ---- scorers -------------------------------------------------------------------------------------


def text_detector(row: dict[str, Any]) -> Any:
    """The lexical detector a `concepts` row describes: the built-in itself, or its pattern."""
    from sculpt.concepts.lexical import BUILTIN, Detector

    source = json.loads(row["source"] or "{}")
    members = json.loads(row["members"] or "[]")
    name = str(members[0]) if members else str(row["concept_id"]).removeprefix("lex:")
    if source.get("builtin") and name in BUILTIN:
        return BUILTIN[name]
    if not source.get("pattern"):
        return None
    return Detector(name, source["pattern"], "", bool(source.get("skip_code")))


def _text_scores(
    rows: dict[str, dict[str, Any]], texts: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Lexical concepts by their detector, n-grams by their count (as the audit scored them)."""
    from sculpt.concepts.lexical import score_texts
    from sculpt.concepts.ngrams import NgramConfig, span_counts

    detectors: dict[str, Any] = {}
    grams: dict[str, str] = {}
    for cid, row in rows.items():
        members = json.loads(row["members"] or "[]")
        if row["kind"] == "lexical" and (found := text_detector(row)) is not None:
            detectors[cid] = found
        elif row["kind"] == "ngram" and members:
            grams[cid] = str(members[0])
    lexical = score_texts(list(texts), detectors)
    counts = span_counts(list(texts), list(grams.values()), NgramConfig().max_n)
    ids = [*detectors, *grams]
    parts = [lexical[c] for c in detectors] + list(counts)
    matrix = np.stack(parts, axis=1) if parts else np.zeros((len(texts), 0))
    return ids, matrix


def _model_scores(
    lake: Lake,
    dataset: str,
    concepts: AuditConcepts,
    prompts: Sequence[list[dict[str, str]]],
    trained: Sequence[str],
    base: Sequence[str],
    loaded: Any,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """SAE features (the analysis's span summary), feature clusters (share of members firing) and
    vectors (max projection, z-scored as over the dataset), from one forward pass per layer."""
    from sculpt.concepts.vectors import load_vector

    rows = [
        {"pair_id": f"gen{i:09d}", "prompt": json.dumps(p), "chosen": t, "rejected": b, "row": i}
        for i, (p, t, b) in enumerate(zip(prompts, trained, base, strict=True))
    ]
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {"chosen": [], "rejected": []}
    layers: dict[int, list[Any]] = {}
    if concepts.sae:
        sae_part = _SaeScorer(lake, concepts)
        layers.setdefault(sae_part.layer, []).append(sae_part)
    for cid, row in concepts.vectors.items():
        direction, meta = load_vector(lake, dataset, json.loads(row["members"])[0])
        layers.setdefault(int(meta["layer"]), []).append(_VectorScorer(cid, direction, meta))
    for layer, scorers in layers.items():
        for batch in _span_batches(loaded, rows, layer):
            for scorer in scorers:
                scorer.consume(batch)
        for scorer in scorers:
            ids += scorer.ids
            for side in parts:
                parts[side].append(scorer.matrix(side, len(rows)))
    return ids, {side: np.hstack(p) if p else np.zeros((len(rows), 0)) for side, p in parts.items()}


def _span_batches(loaded: Any, rows: list[dict[str, Any]], layer: int) -> Any:
    from sculpt.scan.run import ScanConfig, iter_span_batches

    return iter_span_batches(loaded, rows, ScanConfig(layer=layer, sample_tokens=0))


def _row_of(pair_id: str) -> int:
    return int(pair_id[3:])


class _SaeScorer:
    """SAE features and the analysis's feature clusters on each answer."""

    def __init__(self, lake: Lake, concepts: AuditConcepts) -> None:
        from sculpt.sae.encode import fast_encoder
        from sculpt.sae.registry import load_sae

        assert concepts.sae is not None
        self.sae, info = load_sae(lake, concepts.sae, "cpu")
        self.layer = int(info["layer"])
        self.norm_cap = info.get("norm_cap")
        self.encoder = fast_encoder(self.sae)
        self.width = int(self.sae.cfg.d_sae)
        self.summary = concepts.config.score
        self.threshold = concepts.config.freq_threshold
        self.name = slug(concepts.sae)
        self.clusters = concepts.clusters
        self.entries: dict[str, list[tuple[np.ndarray, ...]]] = {"chosen": [], "rejected": []}
        self.ids = [f"sae:{self.name}:{f}" for f in range(self.width)] + list(self.clusters)

    @torch.no_grad()
    def consume(self, batch: Any) -> None:
        from sculpt.sae.encode import encode_tokens, span_reduce

        nz = encode_tokens(self.sae, batch.acts, self.norm_cap, self.encoder)
        span, feature, maxima, freq, _ = (t.cpu().numpy() for t in span_reduce(nz, batch.offsets))
        rows = np.array([_row_of(p) for p in batch.pair_ids])
        sides = np.asarray(batch.sides, dtype=object)
        for side in self.entries:
            keep = sides[span] == side
            self.entries[side].append((rows[span[keep]], feature[keep], maxima[keep], freq[keep]))

    def matrix(self, side: str, n: int) -> np.ndarray:
        parts = self.entries[side]
        row, feature, maxima, freq = (
            np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i in range(4)
        )
        shape = (n, self.width)
        row, feature = row.astype(np.int64), feature.astype(np.int64)
        summary = maxima if self.summary == "max_act" else freq
        features = sp.csr_matrix((summary, (row, feature)), shape=shape).toarray()
        fired = sp.csr_matrix(((freq > self.threshold).astype(float), (row, feature)), shape=shape)
        shares = [
            np.asarray(fired[:, members].sum(axis=1)).ravel() / max(len(members), 1)
            for members in self.clusters.values()
        ]
        return np.hstack([features, np.stack(shares, axis=1) if shares else np.zeros((n, 0))])


class _VectorScorer:
    """One vector concept: a span's token projection (max or mean, as its dataset was scored),
    z-scored by the dataset's spans."""

    def __init__(self, concept_id: str, direction: torch.Tensor, meta: dict[str, Any]) -> None:
        self.ids = [concept_id]
        self.direction = direction.float()
        self.mean, self.sd = float(meta["score_mean"]), float(meta["score_sd"])
        from sculpt.concepts.vectors import span_summary

        self.summary = span_summary(meta)
        self.scores: dict[str, dict[int, float]] = {"chosen": {}, "rejected": {}}

    def consume(self, batch: Any) -> None:
        from sculpt.concepts.vectors import span_scores

        acts = [
            batch.acts[batch.offsets[i] : batch.offsets[i + 1]].float().cpu()
            for i in range(len(batch.pair_ids))
        ]
        raw = span_scores(acts, self.direction, self.summary)
        for i, (pair_id, side) in enumerate(zip(batch.pair_ids, batch.sides, strict=True)):
            if side in self.scores:
                self.scores[side][_row_of(pair_id)] = (raw[i] - self.mean) / (self.sd + 1e-12)

    def matrix(self, side: str, n: int) -> np.ndarray:
        return np.array([[self.scores[side].get(i, 0.0)] for i in range(n)])


def finding_changes(
    lake: Lake, dataset: str, analysis: str, scores: GenerationScores, seed: int = 0
) -> tuple[dict[str, Change], dict[str, float]]:
    """Each finding's observed change and its predicted Δ, both as shares of prompts / pairs.

    A finding's evidence on a pair is the sign of its anchor's and echoes' summed signs of gap
    (lake/README.md, Findings); on generations the same rule gives e_i per prompt, and the
    observed change is mean(e) (the finding's Δ = chosen share − rejected share). Empty when the
    analysis has no findings.
    """
    partition = {"dataset": dataset, "analysis": analysis}
    if not (lake.has("findings", partition) and lake.has("finding_members", partition)):
        return {}, {}
    predicted = {
        str(r["finding_id"]): float(r["delta"])
        for r in lake.read("findings", partition).to_pylist()
        if r.get("delta") is not None
    }
    members: dict[str, list[str]] = {}
    for row in lake.read("finding_members", partition).to_pylist():
        if row.get("role") in ("anchor", "echo") and row["concept_id"] in scores.concept_ids:
            members.setdefault(str(row["finding_id"]), []).append(str(row["concept_id"]))
    ids = [f for f in predicted if f in members]
    if not ids:
        return {}, {}
    evidence = np.stack(
        [np.sign(sum(np.sign(scores.column(c)) for c in members[f])) for f in ids], axis=1
    )
    changes = observed_changes(GenerationScores(ids, evidence, np.zeros_like(evidence)), seed=seed)
    return changes, {f: predicted[f] for f in ids}
