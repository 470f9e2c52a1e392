"""What a decision acts on: one concept, or a finding (`finding:<anchor>`) and so every concept
that carries its signal (DESIGN §4, Findings). A finding's intervention is driven by one member's
score, chosen here with the reason `sculpt plan` prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sculpt.errors import UserError

if TYPE_CHECKING:
    from sculpt.lake.store import Lake
    from sculpt.plan.decisions import Decision

FINDING_PREFIX = "finding:"
DIRECTION_PREFIXES = ("sae:", "fc:", "vec:")
"""Concepts with a residual-stream direction (what ablation and steering need)."""
HOOKED = ("ablation", "steering")


def is_finding(target: str) -> bool:
    return target.startswith(FINDING_PREFIX)


@dataclass
class FindingTarget:
    """A finding as a decision's target: its members and the one whose score drives shaping."""

    finding_id: str
    label: str
    members: list[str]
    """Every member (anchor, echoes, mixtures), best first: what the decision covers."""
    driver: str
    """The member whose per-span score the intervention reads (or whose direction it hooks)."""
    why: str


def resolve(lake: Lake, dataset: str, finding_id: str, method: str) -> FindingTarget:
    """The finding `finding_id` of the latest analysis, with the member that drives `method`: the
    anchor or echo whose per-pair gap agrees best with the finding's lean (for ablation and
    steering, the best such member with a direction)."""
    from sculpt.analysis.findings import read_findings, read_members

    members = read_members(lake, dataset, finding_id)
    if not members:
        raise UserError(
            f"plan {dataset}: finding {finding_id} is not in the latest analysis (re-analysis "
            f"renamed or merged it); list findings with `sculpt findings {dataset}`, then decide "
            "again or undo the old decision"
        )
    label = next(
        (f["label"] for f in read_findings(lake, dataset) if f["finding_id"] == finding_id),
        finding_id,
    )
    core = [m for m in members if m["role"] != "mixture"]
    needs_direction = method in HOOKED
    usable = [
        m for m in core if not needs_direction or m["concept_id"].startswith(DIRECTION_PREFIXES)
    ]
    if not usable:
        raise UserError(
            f"plan {dataset}: finding {finding_id} ({label}) has no member with a residual-stream "
            f"direction for {method}; use reward_shaping, filter or relabel for it"
        )
    best = max(usable, key=lambda m: (m["agreement"] or 0.0, -m["position"]))
    what = "hooks its direction" if needs_direction else "drives shaping"
    pool = "members with a direction" if needs_direction else "anchor and echoes"
    why = (
        f"{best['concept_id']} {what}: of the finding's {len(usable)} {pool}, its per-pair gap "
        f"agrees best with the finding's lean (agreement {best['agreement']:.2f}); the decision "
        f"covers all {len(members)} members"
    )
    return FindingTarget(
        finding_id, label, [m["concept_id"] for m in members], best["concept_id"], why
    )


def in_force(lake: Lake, dataset: str, decisions: list[Decision]) -> list[Decision]:
    """Decisions in force once findings cover their members: a decision on a finding and one on
    a concept among its members are one target, so the newer wins; the rest stand as logged."""
    findings = [d for d in decisions if is_finding(d.concept_id)]
    if not findings:
        return decisions
    from sculpt.analysis.findings import read_members

    covers: dict[str, set[str]] = {}
    for member in read_members(lake, dataset):
        covers.setdefault(member["finding_id"], set()).add(member["concept_id"])
    dropped: set[int] = set()
    for f in findings:
        for d in decisions:
            if d.concept_id in covers.get(f.concept_id, set()) and d.scope == f.scope:
                dropped.add(id(d) if d.ts < f.ts else id(f))
    return [d for d in decisions if id(d) not in dropped]
