"""A plan applied to preference pairs: the per-pair columns a shaped DPO run trains on (DESIGN §5).

filter and relabel change the dataset; reweight gives w_i; reward shaping gives the margin offset
o_i = Σ λ·(s̃⁺ − s̃⁻); hooks get a per-pair gate (their scope); inoculation changes the prompt the
policy sees and keeps the original one for the reference.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sculpt.plan.plan import HOOK_METHODS, SCORED_METHODS, Intervention, Plan

GAP_CLIP = 3.0
"""Reweighting clips the z-scored gap so one extreme pair cannot dominate the batch."""


@dataclass
class PairScores:
    """One intervention's sidecar rows, keyed by pair_id."""

    z: dict[str, tuple[float, float]] = field(default_factory=dict)
    in_scope: dict[str, bool] = field(default_factory=dict)

    def oriented_gap(self, item: Intervention, pair_id: str) -> float:
        """How much more of the unwanted concept the chosen side has (z units); >0 = concern."""
        zc, zr = self.z.get(pair_id, (0.0, 0.0))
        sign = 1.0 if item.action == "suppress" else -1.0
        return sign * (zc - zr)


@dataclass
class ShapeSummary:
    n_in: int = 0
    dropped: int = 0
    relabelled: int = 0
    reweighted: int = 0
    offset_pairs: int = 0
    inoculated: int = 0
    hook_pairs: list[int] = field(default_factory=list)


def pair_scores(scores: pa.Table | None, index: int) -> PairScores:
    out = PairScores()
    if scores is None:
        return out
    for row in scores.filter(pc.equal(scores["intervention"], index)).to_pylist():
        if row["z_chosen"] is not None:
            out.z[row["pair_id"]] = (float(row["z_chosen"]), float(row["z_rejected"]))
        out.in_scope[row["pair_id"]] = bool(row["in_scope"])
    return out


def _in_scope(item: Intervention, scores: PairScores, pair_id: str) -> bool:
    if item.scope == "all":
        return True
    return scores.in_scope.get(pair_id, False)


def selected_for_edit(item: Intervention, scores: PairScores, pair_ids: list[str]) -> set[str]:
    """filter/relabel: the top ρ share of in-scope pairs whose chosen side favours the concern."""
    candidates = [
        (scores.oriented_gap(item, p), p)
        for p in pair_ids
        if _in_scope(item, scores, p) and scores.oriented_gap(item, p) > 0
    ]
    candidates.sort(reverse=True)
    keep = math.ceil(item.strength * len(candidates))
    return {p for _, p in candidates[:keep]}


def touched_pairs(item: Intervention, index: int, scores: pa.Table | None) -> set[str]:
    """The pair ids an intervention changes (for the plan summary)."""
    table = pair_scores(scores, index)
    ids = list(table.in_scope)
    if item.method in ("filter", "relabel"):
        return selected_for_edit(item, table, ids)
    if item.method in ("reward_shaping", "reweight"):
        return {p for p in ids if _in_scope(item, table, p) and table.oriented_gap(item, p) != 0}
    return {p for p in ids if _in_scope(item, table, p)}


def shape_pairs(
    pairs: list[dict[str, Any]], plan: Plan | None
) -> tuple[list[dict[str, Any]], ShapeSummary]:
    """Lake `pairs` rows → rows for ShapedDPOTrainer (prompt/chosen/rejected as chat messages)."""
    items = plan.interventions if plan is not None else []
    scores = plan.scores() if plan is not None and items else None
    tables = [pair_scores(scores, i) for i in range(len(items))]
    summary = ShapeSummary(n_in=len(pairs))
    ids = [p["pair_id"] for p in pairs]
    drop: set[str] = set()
    swap: set[str] = set()
    for item, table in zip(items, tables, strict=True):
        if item.method == "filter":
            drop |= selected_for_edit(item, table, ids)
        elif item.method == "relabel":
            swap |= selected_for_edit(item, table, ids)
    hooks = [
        (item, table)
        for item, table in zip(items, tables, strict=True)
        if item.method in HOOK_METHODS
    ]
    summary.hook_pairs = [0] * len(hooks)
    inoculate = any(item.method == "inoculation" for item in items)
    rows = []
    for pair in pairs:
        pid = pair["pair_id"]
        if pid in drop:
            summary.dropped += 1
            continue
        row = _base_row(pair, swapped=pid in swap)
        summary.relabelled += pid in swap
        weight, offset = _weight_and_offset(items, tables, pid, swapped=pid in swap)
        row["weight"], row["margin_offset"] = weight, offset
        summary.reweighted += weight != 1.0
        summary.offset_pairs += offset != 0.0
        gates = [float(_in_scope(item, table, pid)) for item, table in hooks]
        for k, gate in enumerate(gates):
            summary.hook_pairs[k] += int(gate)
        row["hook_gates"] = gates
        if inoculate:
            row["ref_prompt"] = row["prompt"]
            row["prompt"] = _inoculated(row["prompt"], items, tables, pid)
            summary.inoculated += row["prompt"] != row["ref_prompt"]
        rows.append(row)
    return rows, summary


def _base_row(pair: dict[str, Any], swapped: bool) -> dict[str, Any]:
    prompt = pair["prompt"]
    messages = json.loads(prompt) if isinstance(prompt, str) else list(prompt)
    chosen, rejected = (
        (pair["rejected"], pair["chosen"]) if swapped else (pair["chosen"], pair["rejected"])
    )
    return {
        "pair_id": pair["pair_id"],
        "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _weight_and_offset(
    items: list[Intervention], tables: list[PairScores], pair_id: str, swapped: bool
) -> tuple[float, float]:
    weight, offset = 1.0, 0.0
    for item, table in zip(items, tables, strict=True):
        if item.method not in SCORED_METHODS or not _in_scope(item, table, pair_id):
            continue
        gap = table.oriented_gap(item, pair_id) * (-1.0 if swapped else 1.0)
        if item.method == "reweight":
            weight *= math.exp(-item.strength * max(-GAP_CLIP, min(GAP_CLIP, gap)))
        elif item.method == "reward_shaping":
            # λ·(s̃⁺ − s̃⁻) with λ = +strength to suppress, −strength to amplify; the oriented gap
            # already carries that sign (DESIGN §5).
            offset += item.strength * gap
    return weight, offset


def _inoculated(
    prompt: list[dict[str, str]], items: list[Intervention], tables: list[PairScores], pair_id: str
) -> list[dict[str, str]]:
    texts = [
        item.text
        for item, table in zip(items, tables, strict=True)
        if item.method == "inoculation" and item.text and _in_scope(item, table, pair_id)
    ]
    if not texts:
        return prompt
    messages = [dict(m) for m in prompt]
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    target = users[-1] if users else len(messages) - 1
    messages[target]["content"] = messages[target]["content"] + "\n\n" + " ".join(texts)
    return messages
