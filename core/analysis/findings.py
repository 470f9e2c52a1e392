"""Findings (DESIGN §4): the tested concepts of every kind grouped by the signal they carry, one
row per distinct signal, measured on one scale and named by its most readable member.

A concept's per-pair evidence is e_i = sign(u_i) ∈ {−1, 0, 1}, u_i = score(chosen_i) −
score(rejected_i), whatever its kind, so two concepts compare on the pairs where either has a lean
and every finding is measured in shares of pairs. Concepts are taken strongest first, content
before dense and chat-template ones. Each joins the finding whose anchor's evidence it repeats or
is contained in (an echo: an n-gram fragment of a phrase, a bold feature beside `lex:bold`), or,
when its evidence is mostly that of several stronger significant findings, the one it overlaps most
(a mixture: a detector that covers two signals); otherwise it opens a finding of its own. Greedy
anchoring, not connected components: a broad concept never chains two signals into one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

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

ECHO_COSINE = 0.8
"""Cosine of two concepts' per-pair evidence at or above which one repeats the other."""
CONTAINED_SHARE = 0.8
"""Share of a concept's non-tie pairs that agree with an anchor (net of those that disagree) at or
above which the concept is contained in the anchor's signal…"""
CONTAINED_COSINE = 0.3
"""…provided their cosine reaches this, so a concept on a handful of pairs never joins a broad
signal by chance."""
EXPLAINED_SHARE = 0.5
"""Share of a significant concept's net lean (pairs leaning its way minus the other) that a stronger
significant finding accounts for, at or above which, when its lean on the pairs that stronger
findings leave is not significant, it is their mixture, not a signal of its own."""
DENSE_RATE = 0.95
"""An SAE feature (or feature cluster) firing on at least this share of both sides is dense."""
MAX_GROUPED = 4000
"""Strongest concepts grouped; the rest stay findings of their own (overlaps grow as its square)."""
DENSE_KINDS = ("sae_feature", "feature_cluster")
LABEL_ORDER = ("lexical", "ngram", "sae_feature", "feature_cluster", "vector", "probe")
"""Which member names a finding: a lexical detector, then the phrase, then an SAE feature."""


@dataclass
class Evidence:
    """Per-pair evidence of C concepts (N × C, sparse): `soft` = clip(u / scale, −1, 1) with scale
    the 90th percentile of |u| where u ≠ 0, and `clear` = sign(soft) where |soft| ≥ CLEAR, else 0
    (a count, whole-numbered gaps: sign(u) wherever the counts differ)."""

    soft: sp.csc_matrix
    clear: sp.csc_matrix


CLEAR = 0.5
"""A concept leans clearly on a pair when its gap is at least this share of its typical gap (the
90th percentile): a binary detector on every pair where it fires on one side only; an SAE feature
not on pairs where it fires about as strongly on both."""


def evidence(u: Any) -> Evidence:
    """Soft and clear per-pair evidence of every column of u; NaN is no evidence."""
    m = sp.csc_matrix(u, dtype=np.float64) if sp.issparse(u) else sp.csc_matrix(np.asarray(u))
    m = m.copy()
    m.data = np.nan_to_num(m.data, nan=0.0, posinf=0.0, neginf=0.0)
    m.eliminate_zeros()
    columns = np.repeat(np.arange(m.shape[1]), np.diff(m.indptr))
    scale = np.ones(m.shape[1])
    for c in range(m.shape[1]):
        values = np.abs(m.data[m.indptr[c] : m.indptr[c + 1]])
        if values.size:
            scale[c] = float(np.quantile(values, 0.9)) or 1.0
    soft = m.copy()
    soft.data = np.clip(m.data / scale[columns], -1.0, 1.0)
    clear = soft.copy()
    # a count (a detector's matches) leans on every pair where the counts differ
    counts = _integral(m)[columns]
    clear.data = np.where(
        counts, np.sign(m.data), np.where(np.abs(soft.data) >= CLEAR, np.sign(soft.data), 0.0)
    )
    clear.eliminate_zeros()
    return Evidence(soft, clear)


def _integral(m: sp.csc_matrix) -> np.ndarray:
    """Columns whose every gap is a whole number (counts, binary firing)."""
    whole = np.abs(m.data - np.round(m.data)) < 1e-9
    columns = np.repeat(np.arange(m.shape[1]), np.diff(m.indptr))
    broken = np.bincount(columns[~whole], minlength=m.shape[1]) > 0
    return ~broken & (np.diff(m.indptr) > 0)


@dataclass
class Groups:
    """Members of each finding (indices into the tested concepts), anchor first, and their roles."""

    members: list[list[int]]
    roles: list[list[str]]


@dataclass
class _Overlaps:
    """Among the grouped concepts: cosine of their soft evidence, and the share of each one's
    evidence (energy Σ soft²) that another's clear evidence agrees with, net of disagreement."""

    cosine: np.ndarray
    share: np.ndarray
    weighted: sp.csc_matrix
    """soft·|soft| per pair: a concept's evidence weighted by its energy."""
    energy: np.ndarray


def _overlaps(ev: Evidence, grouped: np.ndarray) -> _Overlaps:
    soft, clear = ev.soft[:, grouped].tocsc(), ev.clear[:, grouped].tocsc()
    gram = (soft.T @ soft).toarray()
    energy = np.maximum(np.diag(gram).copy(), 1e-12)
    weighted = soft.multiply(abs(soft)).tocsc()
    share = (weighted.T @ clear).toarray() / energy[:, None]
    cosine = gram / np.sqrt(energy[:, None] * energy[None, :])
    return _Overlaps(cosine, share, weighted, energy)


def group(
    ev: Evidence, order: np.ndarray, p: np.ndarray, p_cut: float, content: np.ndarray
) -> Groups:
    """Greedy anchoring over concepts in `order` (strongest first). `p` is each concept's p (of
    its clear lean), `p_cut` the largest p that is significant (BH), and only `content` concepts
    (not dense, not template) that are significant explain a later one."""
    return _Grouper(ev, order, p, p_cut, content).run()


class _Grouper:
    def __init__(
        self, ev: Evidence, order: np.ndarray, p: np.ndarray, p_cut: float, content: np.ndarray
    ) -> None:
        self.ev, self.order, self.p, self.p_cut = ev, order, p, p_cut
        self.significant = (p <= p_cut) & content
        self.grouped = order[:MAX_GROUPED]
        self.overlaps = _overlaps(ev, self.grouped)
        self.position = {int(c): k for k, c in enumerate(self.grouped)}
        self.anchors: list[int] = []  # positions in `grouped`, one per grouped finding
        self.finding: list[int] = []  # finding index of each anchor
        self.members: list[list[int]] = []
        self.roles: list[list[str]] = []
        self.votes: dict[int, np.ndarray] = {}  # finding → Σ clear evidence of its echoes
        self.leans: dict[int, tuple[np.ndarray, float]] = {}  # its sign, and how many pairs
        self.slot: dict[int, int] = {}  # finding → its anchor's place in `anchors`
        self.covered = np.zeros(ev.soft.shape[0])
        """Per pair: the clear lean of the first significant finding there (0: none yet)."""
        self.explaining: list[int] = []  # findings that are significant content

    def run(self) -> Groups:
        for c in self.order:
            k = self.position.get(int(c))
            joined = None if k is None else self._join(int(c), k)
            if joined is None:
                self._open(int(c), k)
                continue
            index, role = joined
            self.members[index].append(int(c))
            self.roles[index].append(role)
            if role == "echo":
                column = self._clear(int(c))
                self.votes.setdefault(index, self._clear(self.members[index][0]))
                self.votes[index] += column
                lean = np.sign(self.votes[index])
                self.leans[index] = (lean, max(float(np.count_nonzero(lean)), 1.0))
                if index in self.explaining:
                    self._cover(column)
        return Groups(self.members, self.roles)

    def _open(self, c: int, k: int | None) -> None:
        index = len(self.members)
        self.members.append([c])
        self.roles.append(["anchor"])
        if k is None:  # beyond MAX_GROUPED: a finding of its own
            return
        self.slot[index] = len(self.anchors)
        self.anchors.append(k)
        self.finding.append(index)
        if self.significant[c]:
            self.explaining.append(index)
            self._cover(self._clear(c))

    def _clear(self, c: int) -> np.ndarray:
        rows, values = _column(self.ev.clear, c)
        dense = np.zeros(self.ev.clear.shape[0])
        dense[rows] = values
        return dense

    def _cover(self, column: np.ndarray) -> None:
        free = self.covered == 0
        self.covered[free] = column[free]

    def _join(self, c: int, k: int) -> tuple[int, str] | None:
        """(finding, role) concept c (position k) joins, or None: a signal of its own."""
        if not self.anchors:
            return None
        ids = np.asarray(self.anchors)
        cosine = self.overlaps.cosine[k, ids].copy()
        share = self.overlaps.share[k, ids].copy()
        rows, values = _column(self.ev.soft, c)
        energy = self.overlaps.energy[k]
        for index, (lean, lean_count) in self.leans.items():  # a grown finding: all its echoes
            slot = self.slot[index]
            on = lean[rows]
            cosine[slot] = max(cosine[slot], float(values @ on) / np.sqrt(energy * lean_count))
            share[slot] = max(share[slot], float((values * np.abs(values)) @ on) / energy)
        fits = (cosine >= ECHO_COSINE) | ((share >= CONTAINED_SHARE) & (cosine >= CONTAINED_COSINE))
        if fits.any():
            best = np.flatnonzero(fits)[np.argmax(cosine[fits])]
            return self.finding[int(best)], "echo"
        return self._explained(c)

    def _explained(self, c: int) -> tuple[int, str] | None:
        """A significant concept whose lean on the pairs that stronger significant findings leave
        is not significant, and at least EXPLAINED_SHARE of whose net lean one of them accounts
        for, is their echo in a wider net (`lex:exclamation` beside "Great question!"): it joins
        that finding as a mixture, not as a signal of its own."""
        if not self.explaining or self.p[c] > self.p_cut:
            return None
        rows, values = _column(self.ev.clear, c)
        rest = values[self.covered[rows] == 0]
        if float(mcnemar_exact(np.sum(rest > 0), np.sum(rest < 0))) <= self.p_cut:
            return None
        net = abs(float(values.sum()))
        agree = [float(values @ self._lean(index)[rows]) for index in self.explaining]
        best = int(np.argmax(agree))
        if net == 0 or agree[best] < EXPLAINED_SHARE * net:
            return None
        return self.explaining[best], "mixture"

    def _lean(self, index: int) -> np.ndarray:
        """A finding's clear lean per pair: the majority of its echoes' clear leans."""
        if index in self.leans:
            return self.leans[index][0]
        return self._clear(self.members[index][0])


def _column(m: sp.csc_matrix, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and values of column c (no scipy indexing: the grouping loop asks thousands of times)."""
    start, end = m.indptr[c], m.indptr[c + 1]
    return m.indices[start:end], m.data[start:end]


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
    order = candidates[
        np.lexsort(
            (kind_rank[candidates], -strength[candidates], p[candidates], flagged[candidates])
        )
    ]
    q = benjamini_hochberg(p)
    p_cut = float(np.nanmax(np.where(q < alpha, p, np.nan))) if np.any(q < alpha) else 0.0
    groups = group(ev, order, np.nan_to_num(p, nan=1.0), p_cut, ~flagged)
    votes = []  # a finding leans on a pair by the majority of its members that lean clearly there
    for members, roles in zip(groups.members, groups.roles, strict=True):
        core = [m for m, role in zip(members, roles, strict=True) if role != "mixture"]
        votes.append(np.sign(np.asarray(ev.clear[:, core].sum(axis=1)).ravel()))
    n_pairs = ev.soft.shape[0]
    finding_e = sp.csc_matrix(np.column_stack(votes)) if votes else sp.csc_matrix((n_pairs, 0))
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
    rows, values = _column(finding_e, f)
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
