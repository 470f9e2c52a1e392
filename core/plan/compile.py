"""Compile the decisions in force for a dataset into a plan: interventions, the z-scored concept
scores of every pair, scope flags, and the directions hooks need (DESIGN §5)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.plan.plan import (
    HOOK_METHODS,
    PLAN_METHODS,
    SCORED_METHODS,
    Intervention,
    Plan,
    save_plan,
)
from sculpt.plan.shaping import touched_pairs
from sculpt.plan.targets import in_force, is_finding, resolve

if TYPE_CHECKING:
    from sculpt.plan.decisions import Decision


def compile_plan(lake: Lake, dataset: str, out: str | Path) -> Plan:
    """The decisions in force for `dataset` → plan file + sidecars next to `out`."""
    from sculpt.plan.decisions import current

    target = Path(out)
    decisions = [
        d
        for d in current(lake, dataset)
        if d.action in ("suppress", "amplify") and d.method != "none"
    ]
    decisions = in_force(lake, dataset, decisions)
    labels = _concept_labels(lake, dataset)
    interventions = [
        _intervention(lake, dataset, d, labels) for d in decisions if d.method in PLAN_METHODS
    ]
    plan = Plan(
        dataset=dataset,
        interventions=interventions,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        decisions_ts=max((d.ts for d in decisions), default=None),
    )
    for index, item in enumerate(interventions):
        if item.method == "inoculation":
            item.text = f"(For this reply, it is fine to show: {item.label}.)"
        if item.method in HOOK_METHODS:
            _attach_direction(lake, dataset, item, target, index)
    if interventions:
        scores = _score_table(lake, dataset, interventions)
        sidecar = target.with_name(target.stem + ".scores.parquet")
        pq.write_table(scores, sidecar)
        plan.scores_file = sidecar.name
        _count_touched(plan, scores)
    save_plan(plan, target)
    return plan


def _intervention(lake: Lake, dataset: str, d: Decision, labels: dict[str, str]) -> Intervention:
    """One decision made concrete; one on a finding acts through the member that drives it."""
    concept, label, finding, driver = d.concept_id, labels.get(d.concept_id, d.concept_id), None, ""
    if is_finding(d.concept_id):
        target = resolve(lake, dataset, d.concept_id, d.method)
        concept, label, finding, driver = target.driver, target.label, target.finding_id, target.why
    return Intervention(
        concept_id=concept,
        method=d.method,  # type: ignore[arg-type]
        action=d.action,  # type: ignore[arg-type]
        strength=_default_strength(d.method, d.strength),
        scope=d.scope,
        label=label,
        note=d.note,
        finding=finding,
        driver=driver,
    )


def _default_strength(method: str, strength: float) -> float:
    if method in ("filter", "relabel"):
        return min(max(strength, 1e-6), 1.0)
    return strength


def _concept_labels(lake: Lake, dataset: str) -> dict[str, str]:
    if not lake.has("concepts"):
        return {}
    rows = lake.sql(
        "select concept_id, label from concepts where dataset = ?", [dataset]
    ).to_pylist()
    return {r["concept_id"]: r["label"] or r["concept_id"] for r in rows}


def _score_table(lake: Lake, dataset: str, interventions: list[Intervention]) -> pa.Table:
    """Per intervention and pair: z-scored chosen/rejected concept scores and the scope flag."""
    pair_ids = lake.sql("select pair_id from pairs where dataset = ?", [dataset])
    ids = pair_ids.column("pair_id").to_pylist()
    if not ids:
        raise UserError(f"plan {dataset}: no pairs in the lake; run `sculpt ingest` first")
    clusters = _clusters(lake, dataset) if any(i.scope != "all" for i in interventions) else {}
    columns: dict[str, list[Any]] = {
        "intervention": [],
        "pair_id": [],
        "z_chosen": [],
        "z_rejected": [],
        "in_scope": [],
    }
    for index, item in enumerate(interventions):
        z = _zscores(lake, dataset, item.concept_id) if item.method in SCORED_METHODS else {}
        cluster = int(item.scope[8:]) if item.scope != "all" else None
        for pair_id in ids:
            zc, zr = z.get(pair_id, (0.0, 0.0)) if z else (None, None)
            columns["intervention"].append(index)
            columns["pair_id"].append(pair_id)
            columns["z_chosen"].append(zc)
            columns["z_rejected"].append(zr)
            columns["in_scope"].append(cluster is None or clusters.get(pair_id) == cluster)
    return pa.table(
        {
            "intervention": pa.array(columns["intervention"], pa.int32()),
            "pair_id": pa.array(columns["pair_id"], pa.string()),
            "z_chosen": pa.array(columns["z_chosen"], pa.float32()),
            "z_rejected": pa.array(columns["z_rejected"], pa.float32()),
            "in_scope": pa.array(columns["in_scope"], pa.bool_()),
        }
    )


def _zscores(lake: Lake, dataset: str, concept_id: str) -> dict[str, tuple[float, float]]:
    """s̃ = (s − mean)/sd over every chosen and rejected span of the dataset; absent = 0."""
    import numpy as np

    if "concept_scores" not in _views(lake):
        raise UserError(f"plan {dataset}: no concept scores; run `sculpt scan` / `sculpt concepts`")
    rows = lake.sql(
        "select p.pair_id, coalesce(c.score, 0) as sc, coalesce(r.score, 0) as sr from pairs p "
        "left join concept_scores c on c.pair_id = p.pair_id and c.side = 'chosen' "
        "and c.concept_id = ? and c.dataset = ? "
        "left join concept_scores r on r.pair_id = p.pair_id and r.side = 'rejected' "
        "and r.concept_id = ? and r.dataset = ? where p.dataset = ?",
        [concept_id, dataset, concept_id, dataset, dataset],
    ).to_pylist()
    both = np.array([[r["sc"], r["sr"]] for r in rows], dtype=np.float64)
    if both.size == 0 or not both.any():
        raise UserError(f"plan {dataset}: concept {concept_id} has no scores; check its id")
    mean, sd = both.mean(), both.std() or 1.0
    return {r["pair_id"]: ((r["sc"] - mean) / sd, (r["sr"] - mean) / sd) for r in rows}


def _views(lake: Lake) -> set[str]:
    con = lake.connect()
    try:
        return {row[0] for row in con.execute("select view_name from duckdb_views()").fetchall()}
    finally:
        con.close()


def _clusters(lake: Lake, dataset: str) -> dict[str, int]:
    if not lake.has("clusters"):
        raise UserError(
            f"plan {dataset}: a decision is scoped to a cluster but there are no "
            "clusters; run `sculpt analyze` first"
        )
    analysis = None
    try:
        from sculpt.analysis.config import latest_analysis

        analysis = latest_analysis(lake, dataset)
    except ImportError:
        pass
    query = "select pair_id, data_cluster from clusters where dataset = ?"
    params: list[Any] = [dataset]
    if analysis is not None:
        query += " and analysis = ?"
        params.append(analysis)
    return {r["pair_id"]: r["data_cluster"] for r in lake.sql(query, params).to_pylist()}


def _attach_direction(
    lake: Lake, dataset: str, item: Intervention, target: Path, index: int
) -> None:
    """Resolve the concept's residual-stream direction(s) and save them beside the plan."""
    from sculpt.concepts.vectors import save_direction

    directions, layer = concept_directions(lake, dataset, item.concept_id)
    folder = target.with_name(target.stem + ".directions")
    path = folder / f"intervention-{index}.safetensors"
    save_direction(directions, path)
    item.vector_file = f"{folder.name}/{path.name}"
    item.layer = layer


def concept_directions(lake: Lake, dataset: str, concept_id: str) -> tuple[Any, int]:
    """Directions [k, d_model] and layer for sae:/fc:/vec: concepts (lexical ones have none)."""
    kind, _, rest = concept_id.partition(":")
    if kind == "sae":
        from sculpt.sae.registry import load_sae

        sae_id, _, feature = rest.rpartition(":")
        sae, meta = load_sae(lake, sae_id)
        return sae.W_dec[int(feature)][None, :], int(meta["layer"])
    if kind == "fc":
        from sculpt.sae.registry import load_sae

        sae_id, _, _ = rest.rpartition(":")
        members = lake.sql(
            "select members from concepts where dataset = ? and concept_id = ?",
            [dataset, concept_id],
        ).to_pylist()
        if not members:
            raise UserError(f"plan: feature cluster {concept_id} is not in `concepts`")
        sae, meta = load_sae(lake, sae_id)
        features = [int(f) for f in json.loads(members[0]["members"])]
        return sae.W_dec[features], int(meta["layer"])
    if kind == "vec":
        from sculpt.concepts.vectors import load_vector

        vector, meta = load_vector(lake, dataset, rest)
        return vector[None, :], int(meta["layer"])
    raise UserError(
        f"plan: {concept_id} has no residual-stream direction for ablation/steering; "
        "use reward_shaping, filter or relabel for it, or make a vector concept (vec:)"
    )


def _count_touched(plan: Plan, scores: pa.Table) -> None:
    for index, item in enumerate(plan.interventions):
        item.n_pairs = len(touched_pairs(item, index, scores))
