"""The operator's decisions: an append-only log in the lake, latest wins per target (DESIGN §3, §5)."""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from sculpt.lake.store import Lake

Action = Literal["allow", "suppress", "amplify", "review"]
"""What an operator decides about a concept."""
Method = Literal[
    "none", "reward_shaping", "filter", "relabel", "reweight", "ablation", "steering", "inoculation"
]
ACTIONS: tuple[str, ...] = get_args(Action)
UNDO = "undo"
"""The log's action for a row that withdraws an earlier decision (named by `undo_of`), so
`where action = 'amplify'` counts amplifications only."""
METHODS: tuple[str, ...] = get_args(Method)
GLYPHS = {"allow": "✓", "suppress": "✗", "amplify": "↑", "review": "?", UNDO: "↶"}
"""Decisions read by glyph and word, never by colour alone."""


def _author() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


@dataclass
class Decision:
    """One row of the `decisions` log."""

    dataset: str
    concept_id: str
    action: str
    method: str = "none"
    strength: float = 1.0
    scope: str = "all"
    """`all`, or `cluster:<k>` to gate the intervention to one data cluster."""
    note: str = ""
    hypothesis_id: str | None = None
    author: str = field(default_factory=_author)
    ts: float = field(default_factory=time.time)
    undo_of: float | None = None
    """When set, this row withdraws the decision logged at that `ts` (its action is `undo`;
    logs written before `undo` was an action repeat the withdrawn decision's action)."""

    def __post_init__(self) -> None:
        if self.action == UNDO and self.undo_of is None:
            raise ValueError("action 'undo': name the withdrawn decision's ts in undo_of")
        if self.action not in ACTIONS and self.action != UNDO:
            raise ValueError(f"action {self.action!r}: expected one of {', '.join(ACTIONS)}")
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.scope != "all" and not (
            self.scope.startswith("cluster:") and self.scope[8:].lstrip("-").isdigit()
        ):
            raise ValueError(f"scope {self.scope!r}: expected 'all' or 'cluster:<k>'")

    @property
    def target(self) -> tuple[str, str | None, str]:
        """What a later decision overrides: the same concept/hypothesis and scope."""
        return (self.concept_id, self.hypothesis_id, self.scope)

    @property
    def is_undo(self) -> bool:
        return self.undo_of is not None

    @property
    def glyph(self) -> str:
        return GLYPHS[UNDO if self.is_undo else self.action]


def record(lake: Lake, decision: Decision) -> Decision:
    """Append one decision; returns it once it is durably on disk."""
    lake.append_log("decisions", [asdict(decision)])
    return decision


def undo(lake: Lake, decision: Decision) -> Decision:
    """Withdraw `decision` by appending an `undo` row that points at it (the log is never
    rewritten); the row keeps the target and method of what it withdraws."""
    marker = Decision(
        dataset=decision.dataset,
        concept_id=decision.concept_id,
        action=UNDO,
        method=decision.method,
        strength=decision.strength,
        scope=decision.scope,
        note=f"undo {decision.action}",
        hypothesis_id=decision.hypothesis_id,
        undo_of=decision.ts,
    )
    return record(lake, marker)


def history(lake: Lake, dataset: str | None = None) -> list[Decision]:
    """Every logged row (undo rows included), oldest first."""
    if not lake.has("decisions"):
        return []
    rows = lake.read("decisions").to_pylist()
    names = set(Decision.__dataclass_fields__)
    out = [Decision(**{k: v for k, v in row.items() if k in names}) for row in rows]
    if dataset is not None:
        out = [d for d in out if d.dataset == dataset]
    return sorted(out, key=lambda d: d.ts)


def current(lake: Lake, dataset: str) -> list[Decision]:
    """The decisions in force: undone rows removed, then the latest per target."""
    rows = history(lake, dataset)
    undone = {d.undo_of for d in rows if d.is_undo}
    latest: dict[tuple[str, str | None, str], Decision] = {}
    for d in rows:
        if d.is_undo or d.ts in undone:
            continue
        latest[d.target] = d
    return sorted(latest.values(), key=lambda d: d.ts)
