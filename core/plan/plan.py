"""Plans: the operator's decisions compiled into interventions a training run applies (DESIGN §5).

A plan is a YAML file a person can read and edit, plus a sidecar Parquet file of the z-scored
concept scores (from the frozen reference model, computed at scan time) and scope flags per pair,
and one `.pt` direction per hook. `load_plan` validates every field with a message that says how
to fix it; `sculpt.plan.shaping.shape_pairs` turns a plan into per-pair training columns.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import pyarrow as pa
import pyarrow.parquet as pq

from sculpt.errors import UserError
from sculpt.lake.store import Lake

PlanMethod = Literal[
    "reward_shaping", "filter", "relabel", "reweight", "ablation", "steering", "inoculation"
]
PLAN_METHODS: tuple[str, ...] = get_args(PlanMethod)
SCORED_METHODS = ("reward_shaping", "filter", "relabel", "reweight")
"""Methods that read per-pair concept scores."""
HOOK_METHODS = ("ablation", "steering")
PLAN_VERSION = 1


@dataclass
class Intervention:
    """One decision, made concrete: which pairs it touches and how."""

    concept_id: str
    method: PlanMethod
    action: Literal["suppress", "amplify"] = "suppress"
    """suppress: the model should not learn the concept; amplify: it should learn it more."""
    strength: float = 1.0
    """reward_shaping: λ; filter/relabel: share ρ of the concept-favoured pairs touched;
    reweight: slope of w = exp(−strength·gap); steering: m; ablation: unused."""
    scope: str = "all"
    """`all`, or `cluster:<k>` to gate the intervention to one data cluster."""
    label: str = ""
    """A human name for the concept (used by inoculation text and reports)."""
    layer: int | None = None
    """Hooks: the decoder block whose output is changed."""
    vector_file: str | None = None
    """Hooks: a .pt tensor of directions [k, d_model] or [d_model], relative to the plan file."""
    side: Literal["both", "chosen", "rejected"] = "both"
    """Steering/ablation: which sequences of a pair the hook touches."""
    text: str | None = None
    """Inoculation: the instruction appended to the prompt the policy sees."""
    n_pairs: int = 0
    """Pairs this intervention touches (filled by `sculpt plan`; informational)."""
    note: str = ""


@dataclass
class Plan:
    """Interventions for one dataset; an empty plan is plain DPO (the baseline)."""

    dataset: str
    interventions: list[Intervention] = field(default_factory=list)
    scores_file: str | None = None
    """Sidecar Parquet (intervention, pair_id, z_chosen, z_rejected, in_scope), relative to the plan."""
    created: str = ""
    decisions_ts: float | None = None
    """Timestamp of the newest decision compiled in (what the plan reflects)."""
    version: int = PLAN_VERSION
    path: Path | None = field(default=None, repr=False, compare=False)
    """Where the plan was loaded from (not saved)."""

    def resolve(self, relative: str) -> Path:
        base = self.path.parent if self.path is not None else Path(".")
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else base / candidate

    def scores(self) -> pa.Table | None:
        if self.scores_file is None:
            return None
        path = self.resolve(self.scores_file)
        if not path.exists():
            raise UserError(f"plan: scores_file {path} is missing; re-run `sculpt plan`")
        return pq.read_table(path)


# ---- YAML I/O and validation --------------------------------------------------------------


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    data = dataclasses.asdict(plan)
    data.pop("path", None)
    data["interventions"] = [
        {k: v for k, v in dataclasses.asdict(i).items() if v is not None and v != ""}
        for i in plan.interventions
    ]
    return data


def save_plan(plan: Plan, path: str | Path) -> Path:
    import yaml

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# sculpt plan: edit freely; `sculpt train --plan THIS` validates it.\n"
        f"# methods: {', '.join(PLAN_METHODS)}; scope: all | cluster:<k>\n"
    )
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(plan_to_dict(plan), sort_keys=False))
    tmp.replace(target)
    plan.path = target
    return target


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; every error names the field and how to fix it."""
    import yaml

    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{source}: no such plan; make one with `sculpt plan DATASET -o {source}`"
        ) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with `dataset` and `interventions`")
    plan = plan_from_dict(data, str(source))
    plan.path = source
    return plan


def plan_from_dict(data: dict[str, Any], source: str = "plan") -> Plan:
    values = _typed(Plan, {k: v for k, v in data.items() if k != "interventions"}, source)
    if not values.get("dataset"):
        raise UserError(f"{source}: `dataset` is missing; name the lake dataset the plan is for")
    if values.get("version", PLAN_VERSION) > PLAN_VERSION:
        raise UserError(f"{source}: plan version {values['version']} is newer than this sculpt")
    raw = data.get("interventions") or []
    if not isinstance(raw, list):
        raise UserError(f"{source}: `interventions` must be a list")
    items = []
    for index, entry in enumerate(raw):
        where = f"{source}: interventions[{index}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a mapping (concept_id, method, ...)")
        item = Intervention(**_typed(Intervention, entry, where))
        _check_intervention(item, where)
        items.append(item)
    return Plan(**values, interventions=items)


def _typed(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    from sculpt.configs import coerce

    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.name not in ("path", "interventions")]
    out = {}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        try:
            out[key] = coerce(key, value, hints[key], from_text=False)
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in out]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}; add `{missing[0]}: ...`")
    return out


def _check_intervention(item: Intervention, where: str) -> None:
    if item.scope != "all" and not (
        item.scope.startswith("cluster:") and item.scope[8:].lstrip("-").isdigit()
    ):
        raise UserError(f"{where}: scope {item.scope!r}: use `all` or `cluster:<k>`")
    if item.method in ("filter", "relabel") and not 0.0 < item.strength <= 1.0:
        raise UserError(f"{where}: {item.method} strength {item.strength}: a share in (0, 1]")
    if item.method in HOOK_METHODS and (item.layer is None or item.vector_file is None):
        raise UserError(
            f"{where}: {item.method} needs `layer` and `vector_file` (a .pt direction); "
            "`sculpt plan` fills them for sae:/fc:/vec: concepts"
        )
    if item.method == "inoculation" and not item.text:
        raise UserError(f"{where}: inoculation needs `text` (the instruction the policy sees)")


# ---- compiling decisions ----------------------------------------------------------------


def compile_plan(lake: Lake, dataset: str, out: str | Path) -> Plan:
    """The decisions in force for `dataset` → plan file + sidecars next to `out`."""
    from sculpt.plan.decisions import current

    target = Path(out)
    decisions = [
        d
        for d in current(lake, dataset)
        if d.action in ("suppress", "amplify") and d.method != "none"
    ]
    labels = _concept_labels(lake, dataset)
    interventions = [
        Intervention(
            concept_id=d.concept_id,
            method=d.method,  # type: ignore[arg-type]
            action=d.action,  # type: ignore[arg-type]
            strength=_default_strength(d.method, d.strength),
            scope=d.scope,
            label=labels.get(d.concept_id, d.concept_id),
            note=d.note,
        )
        for d in decisions
        if d.method in PLAN_METHODS
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
    import torch

    directions, layer = concept_directions(lake, dataset, item.concept_id)
    folder = target.with_name(target.stem + ".directions")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"intervention-{index}.pt"
    torch.save(directions.detach().cpu().float(), path)
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
    from sculpt.plan.shaping import touched_pairs

    for index, item in enumerate(plan.interventions):
        item.n_pairs = len(touched_pairs(item, index, scores))
