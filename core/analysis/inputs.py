"""Lake I/O of `analyze`: inputs as sparse pair × concept matrices, the `hypotheses` schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sculpt.errors import UserError
from sculpt.lake import schemas
from sculpt.lake.store import Lake, slug

SIDES = ("prompt", "chosen", "rejected")
_SIDE_CODE = (
    "case side when 'prompt' then 0 when 'chosen' then 1 when 'rejected' then 2 else -1 end"
)


@dataclass
class Pairs:
    """The dataset's pairs in a fixed order (sorted by pair_id) and their response lengths."""

    pair_ids: np.ndarray
    length_diff: np.ndarray
    """Words in chosen − words in rejected, per pair."""
    lengths: np.ndarray | None = None
    """Words in chosen and in rejected, N × 2 (the length control fits a function of each)."""

    @property
    def n(self) -> int:
        return len(self.pair_ids)


@dataclass
class ConceptScores:
    """Per-span scores of C concepts: one N × C sparse matrix per side (absent = 0)."""

    ids: list[str]
    kinds: list[str]
    labels: list[str]
    by_side: dict[str, sp.csr_matrix]


@dataclass
class SaeSpans:
    """One SAE's span_features as N × F sparse matrices per side, by summary (max_act, freq)."""

    sae: str
    n_features: int
    max_act: dict[str, sp.csr_matrix] = field(default_factory=dict)
    freq: dict[str, sp.csr_matrix] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)


def read_pairs(lake: Lake, dataset: str) -> Pairs:
    table = lake.read("pairs", {"dataset": dataset}).select(["pair_id", "chosen", "rejected"])
    order = np.argsort(np.asarray(table.column("pair_id").to_pylist(), dtype=object), kind="stable")
    table = table.take(pa.array(order))
    pair_ids = np.asarray(table.column("pair_id").to_pylist(), dtype=object)
    if len(set(pair_ids.tolist())) != len(pair_ids):
        raise UserError(f"pairs[{dataset}]: duplicate pair_id; re-run `sculpt ingest`")
    chosen = [len((t or "").split()) for t in table.column("chosen").to_pylist()]
    rejected = [len((t or "").split()) for t in table.column("rejected").to_pylist()]
    words = np.column_stack([chosen, rejected]).astype(float).reshape(-1, 2)
    return Pairs(pair_ids, words[:, 0] - words[:, 1], words)


def list_saes(lake: Lake, dataset: str) -> list[str]:
    """SAE ids (partition values) that have span_features for `dataset`."""
    base = lake.partition_dir("span_features", {"dataset": dataset})
    if not base.exists():
        return []
    return sorted(
        p.name.split("=", 1)[1]
        for p in base.iterdir()
        if p.is_dir() and p.name.startswith("sae=") and any(p.rglob("*.parquet"))
    )


def _query(files: list[Path], pairs: Pairs, select: str) -> dict[str, np.ndarray]:
    """Run `select` over the files joined to the pair order (column idx = row of the matrix)."""
    con = duckdb.connect()
    try:
        index = pa.table({"pair_id": pairs.pair_ids.tolist(), "idx": np.arange(pairs.n)})
        con.register("pair_index", index)
        paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        con.execute(
            f"create view src as select * from read_parquet([{paths}], hive_partitioning = true, "
            "hive_types_autocast = false, union_by_name = true)"
        )
        return con.execute(f"select {select} from src join pair_index using (pair_id)").fetchnumpy()
    finally:
        con.close()


def _side_matrices(
    idx: np.ndarray, side: np.ndarray, col: np.ndarray, value: np.ndarray, shape: tuple[int, int]
) -> dict[str, sp.csr_matrix]:
    out = {}
    for code, name in enumerate(SIDES):
        keep = side == code
        matrix = sp.csr_matrix(
            (value[keep].astype(np.float64), (idx[keep], col[keep])), shape=shape
        )
        matrix.eliminate_zeros()
        out[name] = matrix
    return out


def read_sae(lake: Lake, dataset: str, sae: str, pairs: Pairs) -> SaeSpans:
    files = lake.files("span_features", {"dataset": dataset, "sae": sae})
    if not files:
        raise UserError(f"span_features[{dataset}, {sae}]: none; run `sculpt scan` with --sae")
    rows = _query(files, pairs, f"idx, ({_SIDE_CODE})::tinyint as side, feature, max_act, freq")
    labels = _feature_labels(lake, sae)
    top = int(rows["feature"].max()) + 1 if len(rows["feature"]) else 0
    n_features = max(top, max(labels, default=-1) + 1)
    shape = (pairs.n, n_features)
    idx, side, feature = rows["idx"], rows["side"], rows["feature"].astype(np.int64)
    return SaeSpans(
        sae=slug(sae),
        n_features=n_features,
        max_act=_side_matrices(idx, side, feature, rows["max_act"], shape),
        freq=_side_matrices(idx, side, feature, rows["freq"], shape),
        labels=labels,
    )


def _feature_labels(lake: Lake, sae: str) -> dict[int, str]:
    if not lake.files("features", {"sae": sae}):
        return {}
    table = lake.read("features", {"sae": sae})
    if "label" not in table.column_names:
        return {}
    features = table.column("feature").to_pylist()
    return {
        int(f): str(lab)
        for f, lab in zip(features, table.column("label").to_pylist(), strict=True)
        if lab
    }


def read_concept_scores(lake: Lake, dataset: str, pairs: Pairs) -> ConceptScores:
    """The non-SAE half of the `concept_scores` view, read from its table so families can be
    chosen: every family but analyses' feature clusters (`fc-*`; this analysis makes its own)."""
    base = lake.partition_dir("concept_span_scores", {"dataset": dataset})
    families = (
        sorted(p.name for p in base.iterdir() if p.is_dir() and p.name.startswith("family="))
        if base.exists()
        else []
    )
    files = [
        f
        for fam in families
        if not fam.startswith("family=fc-")
        for f in (base / fam).rglob("*.parquet")
    ]
    if not files:
        return ConceptScores([], [], [], {s: sp.csr_matrix((pairs.n, 0)) for s in SIDES})
    rows = _query(files, pairs, f"idx, ({_SIDE_CODE})::tinyint as side, concept_id, score")
    ids, col = np.unique(rows["concept_id"].astype(str), return_inverse=True)
    meta = _concept_meta(lake, dataset)
    kinds = [meta.get(c, ("lexical" if c.startswith("lex:") else "concept", c))[0] for c in ids]
    labels = [meta.get(c, ("", c))[1] for c in ids]
    matrices = _side_matrices(rows["idx"], rows["side"], col, rows["score"], (pairs.n, len(ids)))
    return ConceptScores(ids.tolist(), kinds, labels, matrices)


def _concept_meta(lake: Lake, dataset: str) -> dict[str, tuple[str, str]]:
    if not lake.files("concepts", {"dataset": dataset}):
        return {}
    table = lake.read("concepts", {"dataset": dataset})
    out = {}
    for row in table.select(["concept_id", "kind", "label"]).to_pylist():
        out[row["concept_id"]] = (row["kind"] or "concept", row["label"] or row["concept_id"])
    return out


HYPOTHESIS_SCHEMA = schemas.HYPOTHESES


def hypothesis_table(columns: dict[str, Any]) -> pa.Table:
    """A `hypotheses` table (lake/README.md schema) from column arrays."""
    arrays = []
    for spec in HYPOTHESIS_SCHEMA:
        values = columns[spec.name]
        if not isinstance(values, pa.Array):  # NaN becomes null (e.g. p, q of conditional rows)
            values = pa.array(np.asarray(values), spec.type, from_pandas=True)
        arrays.append(values)
    return pa.Table.from_arrays(arrays, schema=HYPOTHESIS_SCHEMA)
