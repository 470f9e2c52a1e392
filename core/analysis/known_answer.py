"""Where a dataset's planted concepts rank among its findings (and hypotheses): the demo's known
answer, checked.

A hypothesis *is* a planted concept when its per-pair gap u = score(chosen) − score(rejected)
correlates with the planted gap 1{planted in chosen} − 1{planted in rejected} across pairs; this
works the same for an SAE feature, a lexical detector and an n-gram. A finding is one when its
per-pair lean does; the findings are honest when each planted concept is exactly one of the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sculpt.data.demo import PLANTED, KnownConcept
from sculpt.lake.store import Lake, slug

MATCH_R = 0.5
"""Pearson r above which a concept counts as recovering the planted one."""


@dataclass
class PlantedRank:
    name: str
    rank: int | None
    """1-based rank among the global hypotheses leaning chosen (None: not in the top)."""
    concept_id: str | None
    label: str | None
    r: float
    distinct_rank: int | None = None
    """Rank when hypotheses recovering the other planted concepts are left out."""


def planted_ranks(
    lake: Lake,
    dataset: str,
    hypotheses: list[dict[str, Any]],
    top: int = 20,
    planted: tuple[KnownConcept, ...] = PLANTED,
) -> list[PlantedRank]:
    """For each planted concept, the best-ranked hypothesis among `top` that recovers it."""
    con = lake.connect()
    try:
        pairs = con.execute(
            "select pair_id, chosen, rejected from pairs where dataset = ? order by pair_id",
            [slug(dataset)],
        ).fetchall()
        ids = [p[0] for p in pairs]
        gaps = {h["concept_id"]: _gap(con, dataset, h["concept_id"], ids) for h in hypotheses[:top]}
    finally:
        con.close()
    truths = {
        c.name: np.array([c.detects(ch) - c.detects(rj) for _, ch, rj in pairs], float)
        for c in planted
    }
    out = []
    for concept in planted:
        # Rank among hypotheses that don't recover *another* planted concept (its echoes, such
        # as the n-gram "question" of a flattering opener, would push the next one down).
        # One that recovers this concept too stays (a detector may cover two planted concepts).
        mine = {concept.name: truths[concept.name]}
        others = {k: v for k, v in truths.items() if k != concept.name}
        distinct = [
            h
            for h in hypotheses[:top]
            if _recovers_any(gaps[h["concept_id"]], mine)
            or not _recovers_any(gaps[h["concept_id"]], others)
        ]
        found = _best(concept.name, truths[concept.name], hypotheses[:top], gaps)
        alone = _best(concept.name, truths[concept.name], distinct, gaps)
        found.distinct_rank = alone.rank
        out.append(found)
    return out


def _recovers_any(u: np.ndarray, truths: dict[str, np.ndarray]) -> bool:
    return any(_r(u, t) > MATCH_R for t in truths.values())


def _r(u: np.ndarray, truth: np.ndarray) -> float:
    if u.std() == 0 or truth.std() == 0:
        return 0.0
    return float(np.corrcoef(u, truth)[0, 1])


def _best(
    name: str, truth: np.ndarray, hypotheses: list[dict[str, Any]], gaps: dict[str, np.ndarray]
) -> PlantedRank:
    best = PlantedRank(name, None, None, None, 0.0)
    for rank, h in enumerate(hypotheses, start=1):
        r = _r(gaps[h["concept_id"]], truth)
        if r > MATCH_R:
            return PlantedRank(name, rank, h["concept_id"], h.get("label"), r)
        if r > best.r:
            best = PlantedRank(name, None, h["concept_id"], h.get("label"), r)
    return best


def _gap(con: Any, dataset: str, concept_id: str, ids: list[str]) -> np.ndarray:
    """u per pair (in `ids` order) from the `concept_scores` view; absent scores are 0."""
    found = con.execute(
        "select pair_id, sum(case when side = 'chosen' then score else 0 end) - "
        "sum(case when side = 'rejected' then score else 0 end) from concept_scores "
        "where dataset = ? and concept_id = ? group by pair_id",
        [slug(dataset), concept_id],
    ).fetchall()
    by_id = dict(found)
    return np.array([by_id.get(i, 0.0) or 0.0 for i in ids], float)


@dataclass
class PlantedFinding:
    """Which of the top findings recover one planted concept (the known answer, per finding)."""

    name: str
    ranks: list[int]
    """Ranks of every top finding that recovers it: exactly one when the findings are honest."""
    finding_id: str | None
    label: str | None
    r: float
    """r of the best-ranked recovering finding (or of the closest one when none does)."""
    kinds: list[str]
    """Kinds of that finding's members (so a route can be checked: it holds an SAE feature)."""

    @property
    def rank(self) -> int | None:
        return self.ranks[0] if self.ranks else None


def planted_findings(
    lake: Lake,
    dataset: str,
    findings: list[dict[str, Any]],
    top: int = 5,
    planted: tuple[KnownConcept, ...] = PLANTED,
) -> list[PlantedFinding]:
    """For each planted concept, the findings among the first `top` whose per-pair lean (the
    majority of their members' clear leans, as the analysis measured it) correlates with the
    planted gap above MATCH_R."""
    from sculpt.analysis.findings import finding_leans

    shown = findings[:top]
    con = lake.connect()
    try:
        pairs = con.execute(
            "select pair_id, chosen, rejected from pairs where dataset = ? order by pair_id",
            [slug(dataset)],
        ).fetchall()
    finally:
        con.close()
    ids = [p[0] for p in pairs]
    leans = finding_leans(lake, dataset, [f["finding_id"] for f in shown], ids)
    out = []
    for concept in planted:
        truth = np.array([concept.detects(ch) - concept.detects(rj) for _, ch, rj in pairs], float)
        scores = [_r(leans[f["finding_id"]], truth) for f in shown]
        ranks = [f["rank"] for f, r in zip(shown, scores, strict=True) if r > MATCH_R]
        best = next(
            (i for i, r in enumerate(scores) if r > MATCH_R),
            int(np.argmax(scores)) if scores else None,
        )
        if best is None:
            out.append(PlantedFinding(concept.name, [], None, None, 0.0, []))
            continue
        f = shown[best]
        kinds = [k for k in str(f.get("kinds") or "").split(",") if k]
        out.append(
            PlantedFinding(concept.name, ranks, f["finding_id"], f["label"], scores[best], kinds)
        )
    return out
