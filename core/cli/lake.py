"""`sculpt lake ls|sql|push`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from sculpt.lake.remote import open_any, push, storage_options


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
    publish = add(
        "push",
        "Publish a file-system lake to object storage (atomic for readers).",
        "sculpt lake push s3://my-bucket/sculpt-lake --lake /mnt/shared/lake",
        parent=sub,
    )
    publish.add_argument("uri", metavar="URI", help="s3://bucket/prefix, gs://bucket/prefix, …")
    publish.add_argument("--quiet", action="store_true", help="no progress bar")
    for parser in (ls, sql, publish):
        add_storage_option(parser)
    publish.set_defaults(func=cmd_push)
    group.set_defaults(func=lambda args: group.print_help())


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """`--storage-option KEY=VALUE` for a lake on object storage (fsspec options)."""
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option for an object-store lake (repeatable; VALUE parsed as JSON if it can "
        "be; also $SCULPT_STORAGE_OPTIONS as a JSON object)",
    )


def cmd_ls(args: argparse.Namespace) -> int:
    lake = open_any(args.lake, storage_options(args.storage_option))
    rows = lake.stats()
    if not rows:
        print(f"lake {lake.root}: empty (run `sculpt ingest` or `sculpt demo`)")
        return 0
    print_table(["table", "rows", "bytes", "files"], [list(r) for r in rows])
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    lake = open_any(args.lake, storage_options(args.storage_option))
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


def cmd_push(args: argparse.Namespace) -> int:
    options = storage_options(args.storage_option)
    record = push(args.lake, args.uri, options, progress=not args.quiet)
    files = sum(len(t["files"]) for t in record["tables"].values())
    size = sum(e["size"] for t in record["tables"].values() for e in t["files"])
    print(
        f"pushed tables {', '.join(record['tables'])} ({files} files, {size:,} bytes) and "
        f"{len(record['manifest'])} manifest records to {args.uri.rstrip('/')}/"
        f"{record['snapshot']}; committed {args.uri.rstrip('/')}/_lake.json"
    )
    print(f"next: sculpt lake ls --lake {args.uri}")
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
