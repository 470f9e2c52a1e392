"""Plans: the interventions a training run applies (DESIGN §5), as types and as YAML.

A plan is a YAML file a person can read and edit, plus a sidecar Parquet file of the z-scored
concept scores (from the frozen reference model, computed at scan time) and scope flags per pair,
and one direction file per hook. `load_plan` validates every field with a message that says how
to fix it; `sculpt.plan.compile` writes a plan from the decisions in force, and
`sculpt.plan.shaping.shape_pairs` turns one into per-pair training columns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import pyarrow as pa
import pyarrow.parquet as pq

from sculpt.errors import UserError

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
    """Hooks: a safetensors file (tensor `direction`, [k, d_model] or [d_model]) beside the plan,
    named relative to it (an older sculpt's tensor-only .pt is read too)."""
    side: Literal["both", "chosen", "rejected"] = "both"
    """Steering/ablation: which sequences of a pair the hook touches."""
    text: str | None = None
    """Inoculation: the instruction appended to the prompt the policy sees."""
    n_pairs: int = 0
    """Pairs this intervention touches (filled by `sculpt plan`; informational)."""
    note: str = ""
    finding: str | None = None
    """The finding the decision was on (`finding:<anchor>`): it covers the finding's members, and
    `concept_id` is the member whose score drives it."""
    driver: str = ""
    """Why `concept_id` drives a finding's intervention (filled by `sculpt plan`)."""


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

    def resolve(self, relative: str, key: str = "file") -> Path:
        """A file the plan names, inside the plan's own folder (where `sculpt plan` writes its
        sidecars); an absolute path, a `..` or a symlink out is refused, since a plan may come
        from someone else and a run copies what it names."""
        base = (self.path.parent if self.path is not None else Path(".")).resolve()
        candidate = (base / relative).resolve()
        if Path(relative).is_absolute() or not candidate.is_relative_to(base):
            raise UserError(
                f"plan {self.path or ''}: {key} {relative!r} is outside the plan's folder; "
                f"put the file beside the plan and name it relative to it (re-run `sculpt plan`)"
            )
        return candidate

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
    # allow_unicode: labels read as written (`** · one · move`, not `** \xB7 one \xB7 move`);
    # control characters are still escaped by the emitter
    text = yaml.safe_dump(plan_to_dict(plan), sort_keys=False, allow_unicode=True)
    tmp.write_text(header + text, encoding="utf-8")
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
    if plan.scores_file is not None:
        plan.resolve(plan.scores_file, "scores_file")
    for index, item in enumerate(plan.interventions):
        if item.vector_file is not None:
            plan.resolve(item.vector_file, f"interventions[{index}].vector_file")
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
            f"{where}: {item.method} needs `layer` and `vector_file` (a direction file); "
            "`sculpt plan` fills them for sae:/fc:/vec: concepts"
        )
    if item.method == "inoculation" and not item.text:
        raise UserError(f"{where}: inoculation needs `text` (the instruction the policy sees)")
