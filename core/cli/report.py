"""`sculpt report`, `sculpt audit`, `sculpt demo`: the main job end to end, and its HTML report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from sculpt.analysis.config import AnalyzeConfig
from sculpt.audit import AuditConfig
from sculpt.cli.options import add_config_flags, config_from_args
from sculpt.cli.scan import add_max_tokens_flag, scan_config
from sculpt.lake.store import Lake
from sculpt.sae.config import SaeTrainConfig
from sculpt.scan.config import ScanConfig

DEMO_NAME = "demo"


def register(add: Any) -> None:
    _register_report(add)
    _register_audit(add)
    _register_demo(add)


def _register_report(add: Any) -> None:
    report = add(
        "report",
        "Write the self-contained HTML audit report of a dataset (opens offline).",
        "sculpt report hh --run run-3f2a -o hh.html",
    )
    report.add_argument("name", help="dataset name (as given to ingest)")
    report.add_argument(
        "--run",
        action="append",
        default=None,
        metavar="RUN",
        help="include this training run (repeatable; default: every run of NAME)",
    )
    report.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="output file (default: <lake>/reports/NAME.html)",
    )
    report.add_argument(
        "--analysis",
        default=None,
        metavar="KEY",
        help="analysis partition to show (default: the latest)",
    )
    report.add_argument(
        "--top", type=int, default=15, help="hypotheses shown per lean (default 15)"
    )
    report.add_argument("--cards", type=int, default=10, help="concept cards (default 10)")
    report.set_defaults(func=cmd_report)


def _register_audit(add: Any) -> None:
    audit = add(
        "audit",
        "Audit a preference dataset end to end: ingest, scan, SAE, concepts, analysis, report.",
        "sculpt audit data/prefs.jsonl --name prefs --layer 15",
    )
    audit.add_argument("data", type=Path, help="data file or folder (jsonl, json, parquet, csv, …)")
    audit.add_argument("--name", required=True, help="dataset name in the lake")
    _audit_options(audit)
    add_config_flags(audit, AuditConfig, dest="audit", only=INGEST_FIELDS, names=INGEST_FLAGS)
    audit.set_defaults(func=cmd_audit)


def _register_demo(add: Any) -> None:
    demo = add(
        "demo",
        "Audit the project's own demo dataset with the default model (planted concepts on top).",
        "sculpt demo --n 300 --seed 0",
    )
    demo.add_argument("--n", type=int, default=300, help="demo pairs (default 300)")
    _audit_options(demo)
    demo.set_defaults(func=cmd_demo)


INGEST_FIELDS = ("fmt", "mapping")
INGEST_FLAGS = {"fmt": "format", "mapping": "map"}
SCAN_FLAGS = (
    "layer",
    "max_prompt_tokens",
    "max_response_tokens",
    "sample_tokens",
    "template",
    "batch_tokens",
    "dtype",
)
SAE_FLAGS = ("width", "k", "epochs", "batch_size", "lr")
ANALYZE_FLAGS = ("score", "n_boot", "min_support", "n_data_clusters")


def _audit_options(parser: argparse.ArgumentParser) -> None:
    """The audit's flags: its own fields, then a curated part of each nested stage config."""
    add_config_flags(parser, AuditConfig, dest="audit", only=("model", "sae", "seed", "device"))
    add_max_tokens_flag(parser)
    add_config_flags(parser, ScanConfig, dest="scan", only=SCAN_FLAGS)
    sae_defaults = dataclasses.asdict(AuditConfig().sae_train)
    add_config_flags(
        parser,
        SaeTrainConfig,
        dest="sae_train",
        only=SAE_FLAGS,
        prefix="sae-",
        defaults=sae_defaults,
    )
    add_config_flags(parser, AnalyzeConfig, dest="analyze", only=ANALYZE_FLAGS)
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="report file (default: <lake>/reports/NAME.html)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def audit_config(args: argparse.Namespace) -> AuditConfig:
    """The AuditConfig of the flags given, stage configs nested."""
    sae_base = dataclasses.asdict(AuditConfig().sae_train)
    nested = {
        "scan": scan_config(args, "audit"),
        "sae_train": config_from_args(
            SaeTrainConfig, args, dest="sae_train", command="audit", prefix="sae-", base=sae_base
        ),
        "analyze": config_from_args(AnalyzeConfig, args, dest="analyze", command="audit"),
        "out": args.out,
        "progress": not args.quiet,
    }
    return config_from_args(
        AuditConfig, args, dest="audit", command="audit", base=nested, names=INGEST_FLAGS
    )


def cmd_report(args: argparse.Namespace) -> int:
    from sculpt.reports.render import write_report

    lake = Lake.open(args.lake)
    path = write_report(
        lake,
        args.name,
        args.out,
        runs=args.run,
        analysis=args.analysis,
        top=args.top,
        cards=args.cards,
    )
    print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB; opens offline)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    lake = Lake.open(args.lake)
    return _run_audit(lake, args.data, args.name, audit_config(args), args)


def cmd_demo(args: argparse.Namespace) -> int:
    from sculpt.data.demo import write_demo

    config = audit_config(args)
    lake = Lake.open(args.lake)
    data = write_demo(
        lake.root / "demo-data" / f"demo-n{args.n}-seed{config.seed}.jsonl", args.n, config.seed
    )
    model = config.model or "the default model (SmolLM2-135M-Instruct)"
    print(
        f"demo: {args.n:,} pairs written to {data}; auditing them with {model} "
        "(several minutes on a CPU; a second run reuses the lake)",
        file=sys.stderr,
    )
    code = _run_audit(lake, data, DEMO_NAME, config, args)
    if code == 0:
        _print_planted(lake)
    return code


def _run_audit(
    lake: Lake, data: Path, name: str, config: AuditConfig, args: argparse.Namespace
) -> int:
    from sculpt.audit import Audit, StageTime
    from sculpt.cli.findings import print_summary
    from sculpt.reports.render import write_report

    result = Audit(lake, data, name, config).run()
    started = time.perf_counter()
    path = write_report(lake, name, config.out)
    result.report = path
    result.stages.append(StageTime("report", time.perf_counter() - started, False))
    lake_flag = "" if args.lake is None else f" --lake {args.lake}"
    print(f"\naudit of {name}: stage times")
    print("\n".join(result.lines()))
    print_summary(lake, name)
    print(f"\nreport: {path}  (open it in a browser: file://{path.resolve()})")
    print(f"triage: sculpt triage {name}{lake_flag}")
    sys.stdout.flush()
    return 0


def _print_planted(lake: Lake) -> None:
    """Where the demo's planted concepts are among the top findings: the known answer, checked."""
    from sculpt.cli.findings import print_planted

    print_planted(lake, DEMO_NAME)
