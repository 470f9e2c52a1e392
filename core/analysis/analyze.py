"""`analyze`: read the lake, compute DESIGN §4 (global, conditional, prompt views, predictive
power), write `clusters`, `hypotheses`, `predictive` and the feature-cluster concepts."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sculpt.analysis.conditional import Views, concept_rows, conditional_views, settings_for
from sculpt.analysis.config import STAGE, AnalyzeConfig
from sculpt.analysis.findings import write_findings
from sculpt.analysis.inputs import (
    SIDES,
    ConceptScores,
    Pairs,
    SaeSpans,
    hypothesis_table,
    list_saes,
    read_concept_scores,
    read_pairs,
    read_sae,
)
from sculpt.analysis.predictive import predictive_power
from sculpt.analysis.stats import global_lean
from sculpt.errors import UserError
from sculpt.lake.store import Lake

if TYPE_CHECKING:
    pass


@dataclass
class AnalysisReport:
    dataset: str
    analysis: str
    n_pairs: int
    n_concepts: int
    n_tested: int
    """Concepts with enough support and some information (the BH family)."""
    n_significant: int
    n_conditional: int
    n_prompt: int
    auc: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: float = 0.0


def min_support(n_pairs: int) -> int:
    """Pairs a concept must fire in to be tested: ≥ 1% of pairs or ≥ 10 pairs, at least 5."""
    return max(5, min(10, math.ceil(0.01 * n_pairs)))


def analyze(
    lake: Lake, dataset: str, config: AnalyzeConfig | None = None, progress: bool = True
) -> AnalysisReport:
    """Compute every view of DESIGN §4 and replace this analysis's partitions."""
    config = config or AnalyzeConfig()
    started = time.time()
    key = config.key()
    pairs = read_pairs(lake, dataset)
    if pairs.n < 10:
        raise UserError(f"pairs[{dataset}]: {pairs.n} pairs; analyze needs at least 10")
    saes = [config.sae] if config.sae else list_saes(lake, dataset)
    sae_data = [read_sae(lake, dataset, s, pairs) for s in saes]
    scores = read_concept_scores(lake, dataset, pairs)
    if not scores.ids and not sae_data:
        raise UserError(
            f"analyze {dataset}: no concepts yet; compute lexical concepts (`sculpt concepts`) or "
            "SAE span features (`sculpt scan`) first"
        )
    steps = _progress(progress, dataset)
    steps("read")
    views = _conditional_views(pairs, sae_data, config) if sae_data else None
    steps("clusters")
    table, u_tested, tested_ids, n_concepts = _global_hypotheses(
        pairs, scores, sae_data, views, config
    )
    del sae_data, scores  # what follows reads u and the views; this was most of the memory
    steps("global")
    predictive = predictive_power(
        u_tested,
        pairs.length_diff,
        tested_ids,
        seed=config.seed,
        folds=config.predictive_folds,
        max_pairs=config.predictive_max_pairs,
    )
    steps("predictive")
    extra = [] if views is None else [views.conditional, views.prompt]
    write_findings(lake, dataset, key, pairs, table, u_tested, config)
    _write(lake, dataset, key, pairs, pa.concat_tables([table, *extra]), predictive, views)
    q = np.nan_to_num(table.column("q").to_numpy(zero_copy_only=False), nan=1.0)
    report = AnalysisReport(
        dataset=dataset,
        analysis=key,
        n_pairs=pairs.n,
        n_concepts=n_concepts,
        n_tested=int(np.sum(~np.isnan(table.column("p").to_numpy(zero_copy_only=False)))),
        n_significant=int(np.sum(q < config.alpha)),
        n_conditional=0 if views is None else views.conditional.num_rows,
        n_prompt=0 if views is None else views.prompt.num_rows,
        auc={row["model"]: (row["auc"], row["auc_sd"]) for row in predictive.to_pylist()},
        seconds=time.time() - started,
    )
    lake.mark_done(
        STAGE,
        f"{dataset}/{key}",
        {"dataset": dataset, "analysis": key, "config": asdict(config), "report": asdict(report)},
    )
    steps("done")
    return report


def _progress(enabled: bool, dataset: str) -> Any:
    from tqdm import tqdm

    names = ["read", "clusters", "global", "predictive", "done"]
    bar = tqdm(total=len(names), desc=f"analyze {dataset}", disable=not enabled, unit="step")

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)
        if name == "done":
            bar.close()

    return step


def _global_concepts(
    scores: ConceptScores, sae_data: list[SaeSpans], views: Views | None, score: str
) -> tuple[list[str], list[str], list[str], sp.csc_matrix, sp.csc_matrix]:
    """Every concept kind side by side: ids, kinds, labels, chosen and rejected N × C scores."""
    ids, kinds, labels = list(scores.ids), list(scores.kinds), list(scores.labels)
    chosen, rejected = [scores.by_side["chosen"]], [scores.by_side["rejected"]]
    for sae in sae_data:
        summary = sae.max_act if score == "max_act" else sae.freq
        ids += [f"sae:{sae.sae}:{f}" for f in range(sae.n_features)]
        kinds += ["sae_feature"] * sae.n_features
        labels += [sae.labels.get(f, f"feature {f}") for f in range(sae.n_features)]
        chosen.append(summary["chosen"])
        rejected.append(summary["rejected"])
    if views is not None:
        ids += views.ids
        kinds += ["feature_cluster"] * len(views.ids)
        labels += views.labels
        chosen.append(views.span_scores["chosen"])
        rejected.append(views.span_scores["rejected"])
    return ids, kinds, labels, sp.hstack(chosen).tocsc(), sp.hstack(rejected).tocsc()


def _global_hypotheses(
    pairs: Pairs,
    scores: ConceptScores,
    sae_data: list[SaeSpans],
    views: Views | None,
    config: AnalyzeConfig,
) -> tuple[pa.Table, sp.csc_matrix, list[str], int]:
    """Global lean of every concept with enough support (DESIGN §4), ranked by p then |z|; also the
    tested differences u, their ids and the number of concepts seen."""
    ids, kinds, labels, chosen, rejected = _global_concepts(scores, sae_data, views, config.score)
    fired_c, fired_r = (chosen > 0).tocsc(), (rejected > 0).tocsc()  # bool: 5 bytes a nonzero
    support = np.diff((fired_c + fired_r).tocsc().indptr)
    needed = config.min_support or min_support(pairs.n)
    tested = np.flatnonzero(support >= needed)
    u = (chosen - rejected).tocsc()[:, tested]
    del chosen, rejected  # copies of the span matrices: the rest needs u and the firing only
    fired_c, fired_r = fired_c[:, tested], fired_r[:, tested]
    lean = global_lean(
        u,
        fired_chosen=fired_c,
        fired_rejected=fired_r,
        lengths=pairs.lengths,
        seed=config.seed,
        n_boot=config.n_boot,
        n_perm=config.n_perm,
        alpha=config.alpha,
        length_share=config.length_share,
    )
    order = np.lexsort((-np.abs(lean["z"]), lean["p"]))  # by p (so q is monotone), then |z|
    rank = np.empty(len(tested), dtype=np.int32)
    rank[order] = np.arange(1, len(tested) + 1)
    tested_ids = [ids[i] for i in tested]
    columns: dict[str, Any] = {
        "hypothesis_id": [f"global/{c}" for c in tested_ids],
        "scope": ["global"] * len(tested),
        "concept_id": tested_ids,
        "label": [labels[i] for i in tested],
        "kind": [kinds[i] for i in tested],
        "data_cluster": pa.nulls(len(tested), pa.int32()),
        **{k: lean[k] for k in ("n", "n_in", "delta", "ci_lo", "ci_hi", "d", "z", "p", "q")},
        "split_half_ok": lean["split_half_ok"],
        "delta_min": lean["delta_min"],
        "delta_len": lean["delta_len"],
        "length_only": lean["length_only"],
        "lean": lean["lean"].tolist(),
        "chosen_rate": lean["chosen_rate"],
        "rejected_rate": lean["rejected_rate"],
        "rank": rank,
    }
    return hypothesis_table(columns), u, tested_ids, len(ids)


def _conditional_views(pairs: Pairs, sae_data: list[SaeSpans], config: AnalyzeConfig) -> Views:
    if len(sae_data) > 1:
        names = ", ".join(s.sae for s in sae_data)
        raise UserError(f"analyze: several SAEs ({names}); pass --sae ID for the conditional views")
    sae = sae_data[0]
    return conditional_views(pairs, sae, settings_for(config, pairs, sae))


def _write(
    lake: Lake,
    dataset: str,
    key: str,
    pairs: Pairs,
    hypotheses: pa.Table,
    predictive: pa.Table,
    views: Views | None,
) -> None:
    """Replace this analysis's partitions (hypotheses last: readers key off them)."""
    part = {"dataset": dataset, "analysis": key}
    family = {"dataset": dataset, "family": f"fc-{key}"}
    if views is not None:
        lake.replace_partition(
            "clusters",
            part,
            pa.table(
                {
                    "pair_id": pairs.pair_ids.tolist(),
                    "data_cluster": pa.array(views.data_cluster, pa.int32()),
                    "silent": pa.array(views.data_cluster < 0),
                    "prompt_cluster": pa.array(views.prompt_cluster, pa.int32()),
                }
            ),
        )
        lake.replace_partition("concepts", family, concept_rows(views, key))
        lake.replace_partition("concept_span_scores", family, _span_score_rows(pairs, views))
    lake.replace_partition("predictive", part, predictive)
    lake.replace_partition("hypotheses", part, hypotheses)


def _span_score_rows(pairs: Pairs, views: Views) -> list[pa.Table]:
    """Nonzero per-span scores of the feature clusters, one part per side."""
    ids = pa.array(views.ids, pa.string())
    pair_ids = pa.array(pairs.pair_ids.tolist(), pa.string())
    parts = []
    for side in SIDES:
        coo = views.span_scores[side].tocoo()
        sides = pa.DictionaryArray.from_arrays(pa.array(np.zeros(coo.nnz, np.int32)), [side])
        parts.append(
            pa.table(
                {
                    "concept_id": ids.take(pa.array(coo.col, pa.int32())),
                    "pair_id": pair_ids.take(pa.array(coo.row, pa.int32())),
                    "side": sides.cast(pa.string()),
                    "score": pa.array(coo.data, pa.float32()),
                }
            )
        )
    return parts
