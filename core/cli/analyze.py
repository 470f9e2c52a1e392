"""`sculpt analyze NAME` and `sculpt hypotheses NAME` (DESIGN §4)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Any

from sculpt.analysis.config import AnalyzeConfig
from sculpt.analysis.results import read_hypotheses
from sculpt.cli.options import add_config_flags, add_storage_option, config_from_args
from sculpt.cli.output import print_table
from sculpt.lake.remote import open_any, storage_options
from sculpt.lake.store import Lake

SCOPES = ("global", "conditional", "prompt")


def register(add: Any) -> None:
    run = add(
        "analyze",
        "Compute which concepts separate chosen from rejected (global, conditional, prompt views).",
        "sculpt analyze hh --seed 0 --sae l15-4k",
    )
    run.add_argument("dataset", metavar="NAME", help="dataset name (as ingested)")
    add_config_flags(run, AnalyzeConfig, dest="analyze")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_analyze)

    show = add(
        "hypotheses",
        "Print an analysis's hypotheses, ranked, with Δ [95% CI], d, q and split-half.",
        "sculpt hypotheses hh --scope global --lean chosen --top 20 --format table",
    )
    show.add_argument("dataset", metavar="NAME", help="dataset name")
    show.add_argument("--analysis", default=None, help="analysis key (default: the latest)")
    show.add_argument(
        "--scope",
        choices=SCOPES,
        default="global",
        help="global lean, conditional on data clusters, or prompt clusters ⇝ responses",
    )
    show.add_argument(
        "--lean", choices=["chosen", "rejected"], default=None, help="only one direction"
    )
    show.add_argument("--kind", default=None, help="concept kind (sae_feature, lexical, …)")
    show.add_argument("--top", type=int, default=20, help="rows to print (default 20; 0 = all)")
    show.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="output format"
    )
    add_storage_option(show)
    show.set_defaults(func=cmd_hypotheses)


def cmd_analyze(args: argparse.Namespace) -> int:
    from sculpt.analysis.analyze import analyze

    config = config_from_args(AnalyzeConfig, args, dest="analyze", command="analyze")
    lake = Lake.open(args.lake)
    report = analyze(lake, args.dataset, config, progress=not args.quiet)
    print(
        f"analysis {report.analysis}: {report.n_pairs} pairs, {report.n_tested} of "
        f"{report.n_concepts} concepts tested, {report.n_significant} with q < 0.05; "
        f"{report.n_conditional} conditional and {report.n_prompt} prompt hypotheses pass the "
        f"filters ({report.seconds:.1f} s)"
    )
    for model, (auc, sd) in report.auc.items():
        print(f"  predictive AUC [{model}]: {auc:.3f} ± {sd:.3f}")
    print(f"next: sculpt hypotheses {args.dataset} --analysis {report.analysis}")
    return 0


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def _table_row(r: dict[str, Any]) -> list[Any]:
    interval = f"{_num(r['delta'])} [{_num(r['ci_lo'])}, {_num(r['ci_hi'])}]"
    note = "length-only" if r["length_only"] else ""
    cells = [r["rank"], r["concept_id"], r["label"], r["lean"], interval, _num(r["d"], 2)]
    if r["scope"] == "global":
        cells.append("—" if r["q"] is None else f"{r['q']:.2g}")
    else:
        cells += [r["data_cluster"], _num(r["z"], 1), _num(r["delta_min"])]
    return [*cells, "✓" if r["split_half_ok"] else "✗", r["n_in"], r["n"], note]


def cmd_hypotheses(args: argparse.Namespace) -> int:
    lake = open_any(args.lake, storage_options(args.storage_option))
    rows = read_hypotheses(
        lake, args.dataset, args.analysis, args.scope, args.lean, args.kind, args.top
    )
    if args.format == "json":
        for r in rows:
            print(json.dumps(r, ensure_ascii=False, default=str))
    elif args.format == "csv":
        names = list(rows[0]) if rows else []
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        for r in rows:
            writer.writerow([r[n] for n in names])
    else:
        middle = ["q"] if args.scope == "global" else ["cluster", "z*", "Δmin"]
        head = ["#", "concept_id", "label", "lean", "Δ [95% CI]", "d", *middle]
        print_table([*head, "split-half", "n_in", "n", "note"], [_table_row(r) for r in rows])
        if args.scope != "global" and rows:
            print("* z is inflated (pairs are coupled): rank with it, don't read it as a p-value")
    return 0
