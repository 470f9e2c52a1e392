"""Grouping concepts by the signal they carry (DESIGN §4, Findings): per-pair evidence on one scale
for every kind, then greedy anchoring, strongest first.

Greedy anchoring, not connected components: a broad concept never chains two signals into one.
A concept joins the finding whose evidence it repeats or is contained in (an echo: an n-gram
fragment of a phrase, a bold feature beside `lex:bold`), or, when it is significant only through
stronger significant findings, the one it overlaps most (a mixture: a detector that covers two
signals); otherwise it opens a finding of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from sculpt.analysis.stats import mcnemar_exact

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
MAX_GROUPED = 4000
"""Strongest concepts grouped; the rest stay findings of their own (overlaps grow as its square)."""


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
    m = _nonzero(m)
    scale = np.ones(m.shape[1])
    for c in range(m.shape[1]):
        values = np.abs(m.data[m.indptr[c] : m.indptr[c + 1]])
        if values.size:
            scale[c] = float(np.quantile(values, 0.9)) or 1.0
    per_value = np.repeat(scale, np.diff(m.indptr))
    counts = np.repeat(_integral(m), np.diff(m.indptr))
    soft = np.clip(m.data / per_value, -1.0, 1.0)
    del per_value
    # a count (a detector's matches) leans on every pair where the counts differ
    lean = np.where(counts | (np.abs(soft) >= CLEAR), np.sign(m.data), 0.0)
    del counts
    clear = _nonzero(sp.csc_matrix((lean, m.indices.copy(), m.indptr.copy()), m.shape))
    return Evidence(sp.csc_matrix((soft, m.indices, m.indptr), m.shape), clear)


def _nonzero(m: sp.csc_matrix) -> sp.csc_matrix:
    """m's finite nonzero entries (NaN and ±inf are no evidence) in new arrays; m is left as it
    was (its structure is shared when nothing is dropped)."""
    data = np.nan_to_num(m.data, nan=0.0, posinf=0.0, neginf=0.0)
    keep = data != 0
    if keep.all():
        return sp.csc_matrix((data, m.indices, m.indptr), m.shape)
    columns = np.repeat(np.arange(m.shape[1]), np.diff(m.indptr))[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(columns, minlength=m.shape[1]))])
    return sp.csc_matrix((data[keep], m.indices[keep], indptr), m.shape)


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
        self.covered = np.zeros(ev.soft.shape[0], np.int8)
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
                clear = self._clear(int(c))
                self.votes.setdefault(index, self._clear(self.members[index][0]).astype(np.int32))
                self.votes[index] += clear
                lean = np.sign(self.votes[index]).astype(np.int8)  # N bytes per grown finding
                self.leans[index] = (lean, max(float(np.count_nonzero(lean)), 1.0))
                if index in self.explaining:
                    self._cover(clear)
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
        """Concept c's clear lean per pair, −1, 0 or 1."""
        rows, values = column(self.ev.clear, c)
        dense = np.zeros(self.ev.clear.shape[0], np.int8)
        dense[rows] = values
        return dense

    def _cover(self, clear: np.ndarray) -> None:
        free = self.covered == 0
        self.covered[free] = clear[free]

    def _join(self, c: int, k: int) -> tuple[int, str] | None:
        """(finding, role) concept c (position k) joins, or None: a signal of its own."""
        if not self.anchors:
            return None
        ids = np.asarray(self.anchors)
        cosine = self.overlaps.cosine[k, ids].copy()
        share = self.overlaps.share[k, ids].copy()
        rows, values = column(self.ev.soft, c)
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
        rows, values = column(self.ev.clear, c)
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


def column(m: sp.csc_matrix, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and values of column c (no scipy indexing: the grouping loop asks thousands of times)."""
    start, end = m.indptr[c], m.indptr[c + 1]
    return m.indices[start:end], m.data[start:end]
