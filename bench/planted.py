"""Planted-concept recall@5 on real HH-RLHF: plant each concept into a known share of
the chosen responses (core/testing/plant.py), run ingest → concepts → analyze, and count the planted
concepts found among the top 5 global hypotheses, per route; then the demo's two planted concepts.

A hypothesis recovers a planted concept when its per-pair gap correlates with the planted gap
(core/analysis/known_answer.py, r > 0.5), so an SAE feature counts as well as `lex:bold`.

    .venv/bin/python bench/planted.py                         # lexical route, 5 concepts, 8%
    .venv/bin/python bench/planted.py --route sae --concepts markdown_bold   # default model
    .venv/bin/python bench/planted.py --route sae --together   # all 5 in one dataset, one scan

`--together` plants every concept into its own disjoint share of one dataset, so the SAE route
scans HH-RLHF once; each concept is then also ranked with the other planted concepts' hypotheses
left out (`distinct`), since five planted concepts compete for the same five places. Then the
findings (one per distinct signal): each planted concept should be exactly one of the top 5
findings; on the SAE route, also with the SAE features alone (no lexical or n-gram concepts), each
found as a finding that holds an SAE feature. `--null` adds a coin-flip null of the planted
dataset (sides swapped per pair, span features with them: no second scan), which should yield no
finding at q < 0.05 beyond the FDR level.

    .venv/bin/python bench/planted.py --route lexical sae --together --null --pairs 400
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from sculpt.analysis.analyze import analyze
from sculpt.analysis.config import AnalyzeConfig
from sculpt.analysis.findings import read_findings
from sculpt.analysis.known_answer import planted_findings, planted_ranks
from sculpt.analysis.results import read_hypotheses
from sculpt.data.ingest import ingest
from sculpt.lake.store import Lake
from sculpt.testing.plant import PLANTABLE, plant, plant_many

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
)


ROUTE_KIND = {"lexical": None, "sae": "sae_feature"}
"""The concept kind a route is judged on in its own reading (None: every kind)."""


def score_lexical(lake: Lake, dataset: str) -> None:
    """Lexical concepts (core/concepts/lexical.py) of one dataset."""
    from sculpt.concepts.lexical import score_dataset

    score_dataset(lake, dataset)


def run_route(
    lake: Lake,
    dataset: str,
    route: str,
    seed: int,
    model: str | None = None,
    sample_tokens: int = 200_000,
) -> None:
    """Concepts and analysis of one (planted) dataset through `route` (`model`: SAE route only)."""
    if route == "lexical":
        score_lexical(lake, dataset)
        analyze(lake, dataset, AnalyzeConfig(seed=seed), progress=False)
    else:  # the SAE route: default model, scan, `sae train`, encode, lexical, analyze
        from sculpt.audit import AuditConfig, audit
        from sculpt.scan.config import ScanConfig

        config = AuditConfig(
            model=model, seed=seed, progress=True, scan=ScanConfig(sample_tokens=sample_tokens)
        )
        audit(lake, None, dataset, config)


def together_recall(
    lake: Lake,
    base: list[dict[str, Any]],
    names: list[str],
    route: str,
    rate: float,
    seed: int,
    model: str | None = None,
    sample_tokens: int = 200_000,
) -> list[tuple[str, int | None, str | None]]:
    """All concepts planted (disjoint shares) into one dataset; rows as `planted_recall`'s, plus
    the rank among the chosen-leaning hypotheses of the route's kind with the other planted
    concepts' hypotheses left out."""
    rows, _ = plant_many(base, names, rate, seed=seed)
    dataset = "hh-planted"
    lake.replace_partition("pairs", {"dataset": dataset}, pa.Table.from_pylist(rows))
    run_route(lake, dataset, route, seed, model, sample_tokens)
    specs = tuple(PLANTABLE[name] for name in names)
    top = read_hypotheses(lake, dataset, scope="global", top=50)
    own = read_hypotheses(lake, dataset, scope="global", lean="chosen", kind=ROUTE_KIND[route])
    out = []
    for mine, theirs in zip(
        planted_ranks(lake, dataset, top, top=50, planted=specs),  # type: ignore[arg-type]
        planted_ranks(lake, dataset, own[:50], top=50, planted=specs),  # type: ignore[arg-type]
        strict=True,
    ):
        out.append((mine.name, _top5(mine.distinct_rank), mine.concept_id))
        label = f"{mine.name} (chosen, {ROUTE_KIND[route] or 'any kind'})"
        out.append((label, _top5(theirs.distinct_rank), theirs.concept_id))
        print(
            f"[{route}] {mine.name}: rank {mine.rank} / distinct {mine.distinct_rank} overall; "
            f"rank {theirs.rank} / distinct {theirs.distinct_rank} among chosen-leaning "
            f"{ROUTE_KIND[route] or 'concepts'} (r={theirs.r:.2f}, {theirs.label})"
        )
    return out


def findings_check(lake: Lake, dataset: str, names: list[str], route: str) -> tuple[int, int]:
    """The known answer on findings: each planted concept should be exactly one of the top 5
    findings (no finding repeats another's planted concept), and on the SAE route that finding
    should hold an SAE feature. Prints one line per concept; returns (exactly one, with SAE)."""
    specs = tuple(PLANTABLE[name] for name in names)
    findings = read_findings(lake, dataset)
    found = planted_findings(lake, dataset, findings, top=5, planted=specs)  # type: ignore[arg-type]
    exact = sum(len(p.ranks) == 1 for p in found)
    with_sae = sum(bool(p.ranks) and "sae_feature" in p.kinds for p in found)
    for p in found:
        where = "#" + ", #".join(map(str, p.ranks)) if p.ranks else "none of the top 5"
        print(
            f"[{route}] finding of {p.name:<18} {where}: {p.label} (r={p.r:.2f}; "
            f"members' kinds: {', '.join(p.kinds)})"
        )
    concepts = sum(f["n_members"] for f in findings)
    print(
        f"[{route}] {len(findings)} findings from {concepts} concepts; top 5: "
        + "; ".join(f"#{f['rank']} {f['label'][:40]}" for f in findings[:5])
    )
    print(
        f"[{route}] each planted concept exactly one of the top 5 findings: {exact}/{len(found)}; "
        f"that finding holds an SAE feature: {with_sae}/{len(found)}"
    )
    return exact, with_sae


SIDED = ("spans", "span_features", "token_features")
"""Tables of per-side rows that a coin-flip null swaps along with the pair's responses."""


def copy_dataset(lake: Lake, source: str, target: str, flipped: set[str]) -> str | None:
    """`source` as `target` with the pairs in `flipped` swapped (chosen ↔ rejected, their spans
    and SAE features with them) and no lexical or n-gram concepts yet; returns the SAE id."""
    pairs = lake.read("pairs", {"dataset": source}).drop(["schema_version"]).to_pylist()
    for p in pairs:
        if p["pair_id"] in flipped:
            p["chosen"], p["rejected"] = p["rejected"], p["chosen"]
    lake.replace_partition("pairs", {"dataset": target}, pa.Table.from_pylist(pairs))
    swap = {"chosen": "rejected", "rejected": "chosen"}
    for table in SIDED:
        base = lake.partition_dir(table, {"dataset": source})
        for folder in sorted(base.glob("*=*")) if base.exists() else []:
            key, value = folder.name.split("=", 1)
            rows = lake.read(table, {"dataset": source, key: value}).drop(["schema_version"])
            ids, sides = rows.column("pair_id").to_pylist(), rows.column("side").to_pylist()
            sides = [swap.get(s, s) if i in flipped else s for i, s in zip(ids, sides, strict=True)]
            rows = rows.set_column(rows.schema.get_field_index("side"), "side", pa.array(sides))
            lake.replace_partition(table, {"dataset": target, key: value}, rows)
    concepts = lake.partition_dir("concepts", {"dataset": source})
    for folder in sorted(concepts.glob("family=sae-*")) if concepts.exists() else []:
        family = folder.name.split("=", 1)[1]
        rows = lake.read("concepts", {"dataset": source, "family": family})
        lake.replace_partition(
            "concepts", {"dataset": target, "family": family}, rows.drop(["schema_version"])
        )
    saes = lake.partition_dir("span_features", {"dataset": target})
    found = sorted(p.name.split("=", 1)[1] for p in saes.glob("sae=*")) if saes.exists() else []
    return found[0] if found else None


def sae_alone_check(
    lake: Lake, source: str, names: list[str], seed: int, top: int = 50
) -> tuple[int, int]:
    """The SAE route alone: the planted dataset's SAE features (and feature clusters) analyzed
    without lexical or n-gram concepts, so every finding is SAE features. Prints where each
    planted concept is among the first `top` findings; returns (found, found exactly once)."""
    dataset = f"{source}-sae"
    sae = copy_dataset(lake, source, dataset, set())
    analyze(lake, dataset, AnalyzeConfig(seed=seed, sae=sae), progress=False)
    findings = read_findings(lake, dataset)
    specs = tuple(PLANTABLE[name] for name in names)
    found = planted_findings(lake, dataset, findings, top=top, planted=specs)  # type: ignore[arg-type]
    for p in found:
        where = "#" + ", #".join(map(str, p.ranks)) if p.ranks else f"none of the top {top}"
        print(f"[sae alone] finding of {p.name:<18} {where}: {p.label} (r={p.r:.2f})")
    hits, once = sum(bool(p.ranks) for p in found), sum(len(p.ranks) == 1 for p in found)
    print(
        f"[sae alone] {len(findings)} findings from {sum(f['n_members'] for f in findings)} SAE "
        f"features and clusters; each planted concept a finding among the top {top}: "
        f"{hits}/{len(found)} ({once} exactly once)"
    )
    return hits, once


def null_check(lake: Lake, source: str, route: str, seed: int, alpha: float = 0.05) -> int:
    """A coin-flip null of `source`: each pair's chosen and rejected swapped with probability ½
    (its span features swapped with them, so the SAE route needs no second scan), concepts
    scored again, analyzed; prints the findings and hypotheses at q < alpha, returns the first."""
    import random

    from sculpt.concepts.ngrams import NgramConfig, discover_ngrams

    dataset = f"{source}-null"
    ids = lake.read("pairs", {"dataset": source}).column("pair_id").to_pylist()
    rng = random.Random(seed)
    flipped = {p for p in ids if rng.random() < 0.5}
    sae = copy_dataset(lake, source, dataset, flipped)
    score_lexical(lake, dataset)
    if route == "sae":
        discover_ngrams(lake, dataset, NgramConfig())
    analyze(lake, dataset, AnalyzeConfig(seed=seed, sae=sae), progress=False)
    findings = read_findings(lake, dataset)
    hypotheses = read_hypotheses(lake, dataset, scope="global")
    hits = [f for f in findings if f["q"] is not None and f["q"] < alpha]
    wrong = sum(1 for h in hypotheses if h["q"] is not None and h["q"] < alpha)
    print(
        f"[{route}] coin-flip null ({len(flipped)} of {len(ids)} pairs swapped): "
        f"{len(hits)} of {len(findings)} findings at q < {alpha} "
        f"(BH keeps P(any) ≤ {alpha} under a complete null); {wrong} of {len(hypotheses)} "
        "hypotheses"
        + (": " + "; ".join(f"{f['label'][:40]} q={f['q']:.2g}" for f in hits[:5]) if hits else "")
    )
    return len(hits)


def _top5(rank: int | None) -> int | None:
    return rank if rank is not None and rank <= 5 else None


def planted_recall(
    lake: Lake,
    base: list[dict[str, Any]],
    names: list[str],
    route: str,
    rate: float,
    seed: int,
    model: str | None = None,
    sample_tokens: int = 200_000,
) -> list[tuple[str, int | None, str | None]]:
    """(concept, rank among the top 5 or None, matching concept_id) per planted concept."""
    out = []
    for name in names:
        rows, _ = plant(base, name, rate, seed=seed)
        dataset = f"hh-{name}"
        lake.replace_partition("pairs", {"dataset": dataset}, pa.Table.from_pylist(rows))
        run_route(lake, dataset, route, seed, model, sample_tokens)
        top = read_hypotheses(lake, dataset, scope="global", top=5)
        found = planted_ranks(lake, dataset, top, top=5, planted=(PLANTABLE[name],))[0]  # type: ignore[arg-type]
        out.append((name, found.rank, found.concept_id))
        # A planted concept can only lean chosen; real leans of HH-RLHF (rejected responses
        # carry more content) crowd the any-lean top 5, so also rank within the route's own kind
        # among chosen-leaning hypotheses (the `--lean chosen` view an operator reads).
        own = read_hypotheses(lake, dataset, scope="global", lean="chosen", kind=ROUTE_KIND[route])
        mine = planted_ranks(lake, dataset, own[:5], top=5, planted=(PLANTABLE[name],))[0]  # type: ignore[arg-type]
        out.append(
            (f"{name} (chosen, {ROUTE_KIND[route] or 'any kind'})", mine.rank, mine.concept_id)
        )
    return out


def demo_recall(
    lake: Lake, route: str, seed: int, model: str | None = None
) -> list[tuple[str, int | None, str | None]]:
    from sculpt.data.demo import write_demo

    path = write_demo(Path(lake.root) / "demo.jsonl", seed=seed)
    ingest(lake, path, "demo")
    run_route(lake, "demo", route, seed, model)
    top = read_hypotheses(lake, "demo", scope="global", top=5)
    return [(r.name, r.rank, r.concept_id) for r in planted_ranks(lake, "demo", top, top=5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=["lexical", "sae"], nargs="+", default=["lexical"])
    parser.add_argument("--concepts", nargs="+", default=list(PLANTABLE), choices=list(PLANTABLE))
    parser.add_argument("--rate", type=float, default=0.08, help="planted share (default 8%%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lake", default=None, help="lake folder (default: a temporary one)")
    parser.add_argument("--model", default=None, help="SAE route: model spec (default model)")
    parser.add_argument("--pairs", type=int, default=0, help="use the first N pairs (0 = all)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo dataset")
    parser.add_argument(
        "--together", action="store_true", help="plant all concepts into one dataset"
    )
    parser.add_argument(
        "--sample-tokens", type=int, default=200_000, help="SAE route: token activations kept"
    )
    parser.add_argument(
        "--null",
        action="store_true",
        help="with --together: also a coin-flip null of the planted dataset (no second scan)",
    )
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA}: missing; this benchmark needs the HH-RLHF sample")
    lake = Lake.open(args.lake or tempfile.mkdtemp(prefix="sculpt-planted-"))
    ingest(lake, DATA, "hh")
    base = lake.read("pairs", {"dataset": "hh"}).drop(["schema_version"]).to_pylist()
    base = base[: args.pairs] if args.pairs else base
    for route in args.route:
        started = time.perf_counter()
        recall = together_recall if args.together else planted_recall
        found = recall(
            lake, base, args.concepts, route, args.rate, args.seed, args.model, args.sample_tokens
        )
        if args.together:
            findings_check(lake, "hh-planted", args.concepts, route)
            if route == "sae":
                sae_alone_check(lake, "hh-planted", args.concepts, args.seed)
            if args.null:
                null_check(lake, "hh-planted", route, args.seed)
        demo = [] if args.no_demo else demo_recall(lake, route, args.seed, args.model)
        for name, rank, concept in [*found, *[(f"demo:{n}", r, c) for n, r, c in demo]]:
            mark = f"rank {rank} ({concept})" if rank else f"not in top 5 (best: {concept})"
            print(f"[{route}] {name:<24} {mark}")
        overall = [row for row in found if "(" not in row[0]]
        hits = sum(rank is not None for _, rank, _ in overall)
        demo_hits = sum(rank is not None for _, rank, _ in demo)
        print(
            f"[{route}] recall@5 on HH-RLHF ({len(base)} pairs, {args.rate:.0%} planted): "
            f"{hits}/{len(overall)} = {hits / len(overall):.2f} (any lean, any kind), "
            f"{sum(r is not None for n, r, _ in found if '(' in n)}/{len(overall)} (chosen-leaning "
            f"{ROUTE_KIND[route] or 'concepts'}); demo: {demo_hits}/{len(demo)}; "
            f"{time.perf_counter() - started:.0f} s"
        )


if __name__ == "__main__":
    main()
