"""`sculpt lake ls|sql`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from core.lake import Lake


def register(add: Any) -> None:
    group = add("lake", "Inspect the lake: tables, sizes, SQL.", "sculpt lake ls")
    sub = group.add_subparsers(dest="lake_command", metavar="SUBCOMMAND")
    ls = add("ls", "List tables with rows and bytes.", "sculpt lake ls --lake ./lake", parent=sub)
    ls.set_defaults(func=cmd_ls)
    sql = add(
        "sql",
        "Run a DuckDB query over the lake's views.",
        'sculpt lake sql "select dataset, count(*) from pairs group by 1" --format csv',
        parent=sub,
    )
    sql.add_argument("query", help="SQL; every table is a view, plus concept_scores")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=cmd_sql)
    group.set_defaults(func=lambda args: group.print_help())


def cmd_ls(args: argparse.Namespace) -> int:
    lake = Lake.open(args.lake)
    rows = lake.stats()
    if not rows:
        print(f"lake {lake.root}: empty (run `sculpt ingest` or `sculpt demo`)")
        return 0
    print_table(["table", "rows", "bytes", "files"], [list(r) for r in rows])
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    lake = Lake.open(args.lake)
    result = lake.sql(args.query)
    names = result.column_names
    records = result.to_pylist()
    if args.format == "json":
        for rec in records:
            print(json.dumps(rec, default=str, ensure_ascii=False))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        for rec in records:
            writer.writerow([rec[n] for n in names])
    else:
        print_table(names, [[rec[n] for n in names] for rec in records])
    return 0


def _cell(value: Any, width: int = 60) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Plain aligned columns, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [
        all(isinstance(r[i], int | float) for r in rows if r[i] is not None)
        for i in range(len(headers))
    ]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()

    print(fmt(headers))
    print("  ".join("─" * w for w in widths))
    for row in cells:
        print(fmt(row))
