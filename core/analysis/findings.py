"""Findings (DESIGN §4): the tested concepts of every kind grouped by the signal they carry
(`sculpt.analysis.grouping`), one row per distinct signal, measured on one scale (shares of pairs,
whatever the kind) and named by its most readable member; stored as `findings` and
`finding_members` (lake/README.md).

Concepts are taken strongest first, content before dense and chat-template ones (so a flagged
feature never anchors a signal that content carries too, and flagged findings rank last), and
feature clusters after the features they unite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sculpt.analysis.grouping import Groups, column, evidence, group
from sculpt.analysis.phrases import TEXTS, phrase
from sculpt.analysis.stats import benjamini_hochberg, global_lean, mcnemar_exact
from sculpt.errors import UserError
from sculpt.lake import schemas
from sculpt.sae.cards import feature_label, strip_special, template_driven

if TYPE_CHECKING:
    from sculpt.analysis.config import AnalyzeConfig
    from sculpt.analysis.inputs import Pairs
    from sculpt.lake.remote import RemoteLake
    from sculpt.lake.store import Lake

DENSE_RATE = 0.95
"""An SAE feature (or feature cluster) firing on at least this share of both sides is dense."""
DENSE_KINDS = ("sae_feature", "feature_cluster")
LABEL_ORDER = ("lexical", "ngram", "sae_feature", "feature_cluster", "vector", "probe")
"""Which member names a finding: a lexical detector, then the phrase, then an SAE feature."""


@dataclass
class ConceptInfo:
    """What the findings need about each tested concept, aligned with the hypotheses rows."""

    labels: list[str]
    """Display label (special tokens stripped; an SAE feature by its context snippet)."""
    template: np.ndarray
    """Driven by chat-template or special tokens."""


def concept_info(lake: Lake | RemoteLake, hypotheses: pa.Table) -> ConceptInfo:
    """Display labels and template flags from the SAEs' feature cards."""
    ids = hypotheses.column("concept_id").to_pylist()
    labels = [strip_special(str(x or "")) for x in hypotheses.column("label").to_pylist()]
    template = np.zeros(len(ids), dtype=bool)
    cards: dict[str, dict[int, dict[str, Any]]] = {}
    for index, concept in enumerate(ids):
        kind, _, rest = concept.partition(":")
        if kind != "sae":
            continue
        sae, _, feature = rest.rpartition(":")
        if sae not in cards:
            cards[sae] = _cards(lake, sae)
        card = cards[sae].get(int(feature))
        if card is None:
            continue
        contexts, top_tokens = _json_list(card.get("contexts")), _json_list(card.get("top_tokens"))
        template[index] = template_driven(contexts, top_tokens)
        if card.get("label_source") in ("llm", "user") and card.get("label"):
            labels[index] = strip_special(str(card["label"]))
        else:
            labels[index] = feature_label(contexts, top_tokens)[0]
    return ConceptInfo(labels, template)


def _cards(lake: Lake | RemoteLake, sae: str) -> dict[int, dict[str, Any]]:
    if not lake.files("features", {"sae": sae}):
        return {}
    table = lake.read("features", {"sae": sae})
    wanted = [c for c in ("feature", "label", "label_source", "top_tokens", "contexts")]
    rows = table.select([c for c in wanted if c in table.column_names]).to_pylist()
    return {int(r["feature"]): r for r in rows}


def _json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except (TypeError, ValueError):
        return []
    return value if isinstance(value, list) else []


def compute_findings(
    hypotheses: pa.Table,
    u: Any,
    info: ConceptInfo,
    *,
    texts: tuple[Sequence[str], Sequence[str]] | None = None,
    lengths: np.ndarray | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    n_perm: int = 10000,
    alpha: float = 0.05,
    length_share: float = 0.5,
) -> tuple[pa.Table, pa.Table]:
    """(`findings`, `finding_members`) tables from the global hypotheses and their per-pair gaps
    u (N × C, columns in the hypotheses' row order); `texts` (chosen, rejected responses in pair
    order) let a phrase be read off the responses."""
    rows = hypotheses.to_pylist()
    ev = evidence(u)
    kinds = np.array([r["kind"] for r in rows], dtype=object)
    chosen = np.array([r["chosen_rate"] or 0.0 for r in rows], dtype=np.float64)
    rejected = np.array([r["rejected_rate"] or 0.0 for r in rows], dtype=np.float64)
    dense = np.isin(kinds, DENSE_KINDS) & (chosen >= DENSE_RATE) & (rejected >= DENSE_RATE)
    flagged = dense | info.template
    pos = np.asarray((ev.clear > 0).sum(axis=0)).ravel().astype(np.int64)
    neg = np.asarray((ev.clear < 0).sum(axis=0)).ravel().astype(np.int64)
    has_evidence = (pos + neg) > 0
    p = np.where(has_evidence, mcnemar_exact(pos, neg), np.nan)
    strength = np.abs(pos - neg) / np.sqrt(np.maximum(pos + neg, 1))
    kind_rank = np.array([_kind_rank(k) for k in kinds])
    candidates = np.flatnonzero(has_evidence)
    # a feature cluster is a union of co-firing features: taken after the concepts it unites, it
    # joins their finding (or several, as a mixture) instead of anchoring them all as one
    aggregate = kinds == "feature_cluster"
    keys = (kind_rank, -strength, p, aggregate, flagged)
    order = candidates[np.lexsort(tuple(k[candidates] for k in keys))]
    q = benjamini_hochberg(p)
    p_cut = float(np.nanmax(np.where(q < alpha, p, np.nan))) if np.any(q < alpha) else 0.0
    groups = group(ev, order, np.nan_to_num(p, nan=1.0), p_cut, ~flagged)
    finding_e = _finding_leans(ev.clear, groups)
    lean = global_lean(
        finding_e,
        lengths=lengths,
        seed=seed,
        n_boot=n_boot,
        n_perm=n_perm,
        alpha=alpha,
        length_share=length_share,
    )
    anchors = np.array([m[0] for m in groups.members], dtype=np.int64)
    finding_flagged = flagged[anchors] if len(anchors) else np.zeros(0, bool)
    rank_p = np.nan_to_num(np.asarray(lean["p"], dtype=np.float64), nan=2.0)
    ranking = np.lexsort((-np.abs(np.nan_to_num(lean["z"])), rank_p, finding_flagged))
    findings, members = _tables(rows, info, groups, ev.soft, finding_e, lean, ranking, dense, texts)
    return findings, members


def _finding_leans(clear: sp.csc_matrix, groups: Groups) -> sp.csc_matrix:
    """N × findings: a finding leans on a pair by the majority of its members (mixtures aside)
    that lean clearly there. Sparse, one product with the membership: memory ∝ the evidence's
    nonzeros, never pairs × findings."""
    rows, cols = [], []
    for f, (members, roles) in enumerate(zip(groups.members, groups.roles, strict=True)):
        core = [m for m, role in zip(members, roles, strict=True) if role != "mixture"]
        rows += core
        cols += [f] * len(core)
    owner = sp.csc_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(clear.shape[1], len(groups.members))
    )
    votes = (clear @ owner).tocsc()
    votes.data = np.sign(votes.data)
    votes.eliminate_zeros()
    votes.sort_indices()  # pairs in order: the phrase is read off the first responses
    return votes


def _kind_rank(kind: str) -> int:
    return LABEL_ORDER.index(kind) if kind in LABEL_ORDER else len(LABEL_ORDER)


def _tables(
    rows: list[dict[str, Any]],
    info: ConceptInfo,
    groups: Groups,
    e: sp.csc_matrix,
    finding_e: sp.csc_matrix,
    lean: dict[str, Any],
    ranking: np.ndarray,
    dense: np.ndarray,
    texts: tuple[Sequence[str], Sequence[str]] | None,
) -> tuple[pa.Table, pa.Table]:
    out: dict[str, list[Any]] = {name: [] for name in schemas.FINDINGS.names}
    parts: dict[str, list[Any]] = {name: [] for name in schemas.FINDING_MEMBERS.names}
    agreement_of = _agreement(groups, e, finding_e)
    for rank, f in enumerate(ranking, start=1):
        members, roles = groups.members[f], groups.roles[f]
        agreement = agreement_of[members]
        order = sorted(
            range(len(members)),
            key=lambda j: (j > 0, roles[j] == "mixture", -agreement[j]),
        )
        members = [members[j] for j in order]
        roles = [roles[j] for j in order]
        agreement = agreement[order]
        anchor = members[0]
        finding_id = f"finding:{rows[anchor]['concept_id']}"
        favoured = _favoured(finding_e, f, texts) if _has_ngram(rows, members) else []
        label, label_concept = finding_label(rows, info, members, roles, favoured)
        kinds = list(dict.fromkeys(rows[m]["kind"] for m in members))
        values = {
            "finding_id": finding_id,
            "rank": rank,
            "label": label,
            "label_concept": label_concept,
            "kinds": ",".join(kinds),
            "members": json.dumps([rows[m]["concept_id"] for m in members], ensure_ascii=False),
            "n_members": len(members),
            "lean": str(lean["lean"][f]),
            "n": int(lean["n"][f]),
            "n_in": int(lean["n_in"][f]),
            "chosen_share": float(lean["chosen_rate"][f]),
            "rejected_share": float(lean["rejected_rate"][f]),
            "dense": bool(dense[anchor]),
            "template": bool(info.template[anchor]),
        }
        for name in ("delta", "ci_lo", "ci_hi", "d", "z", "p", "q", "delta_min", "delta_len"):
            values[name] = float(lean[name][f])
        for name in ("split_half_ok", "length_only"):
            values[name] = bool(lean[name][f])
        for name in schemas.FINDINGS.names:
            out[name].append(values[name])
        for position, (m, role) in enumerate(zip(members, roles, strict=True)):
            row = rows[m]
            member = {
                "finding_id": finding_id,
                "concept_id": row["concept_id"],
                "position": position,
                "role": role,
                "kind": row["kind"],
                "label": info.labels[m],
                "agreement": float(agreement[position]),
                "dense": bool(dense[m]),
                "template": bool(info.template[m]),
            }
            for name in schemas.FINDING_MEMBERS.names:
                parts[name].append(member[name] if name in member else row.get(name))
    return (
        pa.table(out, schema=schemas.FINDINGS),
        pa.table(parts, schema=schemas.FINDING_MEMBERS),
    )


def _agreement(groups: Groups, e: sp.csc_matrix, finding_e: sp.csc_matrix) -> np.ndarray:
    """Per concept: cosine of its soft evidence with its finding's lean."""
    owner = np.zeros(e.shape[1], dtype=np.int64)
    for f, members in enumerate(groups.members):
        owner[members] = f
    lean = finding_e[:, owner].tocsc()
    dot = np.asarray(lean.multiply(e).sum(axis=0)).ravel()
    norms = np.sqrt(np.asarray(e.multiply(e).sum(axis=0)).ravel())
    lean_norms = np.sqrt(np.asarray(abs(lean).sum(axis=0)).ravel())
    return dot / np.maximum(norms * lean_norms, 1e-12)


def _has_ngram(rows: list[dict[str, Any]], members: list[int]) -> bool:
    return any(rows[m]["kind"] == "ngram" for m in members)


def _favoured(
    finding_e: sp.csc_matrix, f: int, texts: tuple[Sequence[str], Sequence[str]] | None
) -> list[str]:
    """Responses on the side finding f favours, from pairs where it leans that way."""
    if texts is None:
        return []
    rows, values = column(finding_e, f)
    side = 0 if values.sum() >= 0 else 1
    chosen = rows[values > 0] if side == 0 else rows[values < 0]
    return [str(texts[side][i] or "") for i in chosen[:TEXTS]]


def finding_label(
    rows: list[dict[str, Any]],
    info: ConceptInfo,
    members: list[int],
    roles: list[str],
    texts: Sequence[str] = (),
) -> tuple[str, str]:
    """(label, concept_id whose name it is): a lexical detector, then the phrase the n-grams
    spell (read off `texts`, the responses it favours), then an SAE feature's snippet, then the
    anchor's own label."""
    core = [m for m, role in zip(members, roles, strict=True) if role != "mixture"]
    for kind in LABEL_ORDER:
        mine = [m for m in core if rows[m]["kind"] == kind]
        if not mine:
            continue
        if kind == "ngram":
            grams = [str(rows[m]["concept_id"]).removeprefix("ngram:") for m in mine]
            return f"“{strip_special(phrase(grams, texts))}”", str(rows[mine[0]]["concept_id"])
        if info.labels[mine[0]].strip():
            return info.labels[mine[0]], str(rows[mine[0]]["concept_id"])
    anchor = members[0]
    return info.labels[anchor] or str(rows[anchor]["concept_id"]), str(rows[anchor]["concept_id"])


# ---- the lake ---------------------------------------------------------------------------------


def write_findings(
    lake: Lake,
    dataset: str,
    analysis: str,
    pairs: Pairs,
    hypotheses: pa.Table,
    u: Any,
    config: AnalyzeConfig,
) -> int:
    """Compute and store this analysis's findings (global hypotheses only); returns how many."""
    findings, members = compute_findings(
        hypotheses,
        u,
        concept_info(lake, hypotheses),
        texts=_responses(lake, dataset, pairs),
        lengths=pairs.lengths,
        seed=config.seed,
        n_boot=config.n_boot,
        n_perm=config.n_perm,
        alpha=config.alpha,
        length_share=config.length_share,
    )
    part = {"dataset": dataset, "analysis": analysis}
    lake.replace_partition("finding_members", part, members)
    lake.replace_partition("findings", part, findings)
    return findings.num_rows


def _responses(lake: Lake, dataset: str, pairs: Pairs) -> tuple[list[str], list[str]]:
    """Chosen and rejected responses in the analysis's pair order."""
    table = lake.read("pairs", {"dataset": dataset}).select(["pair_id", "chosen", "rejected"])
    by_id = {
        p: (c, r)
        for p, c, r in zip(
            table.column("pair_id").to_pylist(),
            table.column("chosen").to_pylist(),
            table.column("rejected").to_pylist(),
            strict=True,
        )
    }
    both = [by_id.get(p, ("", "")) for p in pairs.pair_ids.tolist()]
    return [c or "" for c, _ in both], [r or "" for _, r in both]


def _analysis(lake: Lake | RemoteLake, dataset: str, analysis: str | None) -> str:
    from sculpt.analysis.config import latest_analysis

    key = analysis or latest_analysis(lake, dataset)
    if key is None or not lake.files("findings", {"dataset": dataset, "analysis": key}):
        raise UserError(
            f"findings[{dataset}]: none for {'the latest analysis' if analysis is None else key}; "
            f"run `sculpt analyze {dataset}`"
        )
    return key


def read_findings(
    lake: Lake | RemoteLake,
    dataset: str,
    analysis: str | None = None,
    lean: str | None = None,
    top: int = 0,
) -> list[dict[str, Any]]:
    """Ranked findings of one analysis (the latest when None), `members` decoded to a list."""
    key = _analysis(lake, dataset, analysis)
    rows = lake.read("findings", {"dataset": dataset, "analysis": key}).to_pylist()
    rows = [r for r in rows if lean is None or r["lean"] == lean]
    rows.sort(key=lambda r: r["rank"])
    for r in rows:
        r["members"] = json.loads(r["members"])
        r["analysis"] = key
    return rows[:top] if top > 0 else rows


def read_members(
    lake: Lake | RemoteLake,
    dataset: str,
    finding_id: str | None = None,
    analysis: str | None = None,
) -> list[dict[str, Any]]:
    """Members of one finding (or of all), in position order, with their own statistics."""
    key = _analysis(lake, dataset, analysis)
    rows = lake.read("finding_members", {"dataset": dataset, "analysis": key}).to_pylist()
    rows = [r for r in rows if finding_id is None or r["finding_id"] == finding_id]
    rows.sort(key=lambda r: (r["finding_id"], r["position"]))
    return rows


def finding_leans(
    lake: Lake, dataset: str, finding_ids: Sequence[str], pair_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each finding's per-pair lean (±1, 0) in `pair_ids` order, rebuilt as the analysis made it:
    the majority of its anchor's and echoes' clear leans, from their gaps in `concept_scores`."""
    wanted = set(finding_ids)
    core = [m for m in read_members(lake, dataset) if m["finding_id"] in wanted]
    core = [m for m in core if m["role"] != "mixture"]
    concepts = sorted({m["concept_id"] for m in core})
    column = {c: j for j, c in enumerate(concepts)}
    row = {p: i for i, p in enumerate(pair_ids)}
    con = lake.connect()
    try:
        con.register("wanted", pa.table({"concept_id": pa.array(concepts, pa.string())}))
        gaps = con.execute(
            "select s.concept_id, s.pair_id, sum(case when side = 'chosen' then score else 0 end) "
            "- sum(case when side = 'rejected' then score else 0 end) from concept_scores s "
            "join wanted using (concept_id) where s.dataset = ? group by 1, 2",
            [dataset],
        ).fetchall()
    finally:
        con.close()
    kept = [(row[p], column[c], float(g or 0.0)) for c, p, g in gaps if p in row]
    u = sp.csc_matrix(
        (
            [g for _, _, g in kept],
            ([i for i, _, _ in kept], [j for _, j, _ in kept]),
        ),
        shape=(len(pair_ids), len(concepts)),
    )
    clear = evidence(u).clear
    out = {}
    for finding_id in finding_ids:
        mine = [column[m["concept_id"]] for m in core if m["finding_id"] == finding_id]
        out[finding_id] = np.sign(np.asarray(clear[:, mine].sum(axis=1)).ravel())
    return out
