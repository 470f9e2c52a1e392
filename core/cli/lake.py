"""`sculpt lake ls|sql|push`."""

from __future__ import annotations

import argparse
from typing import Any

from sculpt.cli.options import add_format_option, add_storage_option
from sculpt.cli.output import human_bytes, print_rows, print_table
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
    add_format_option(sql)
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


def cmd_ls(args: argparse.Namespace) -> int:
    lake = open_any(args.lake, storage_options(args.storage_option))
    rows = lake.stats()
    if not rows:
        print(f"lake {lake.root}: empty (run `sculpt ingest` or `sculpt demo`)")
        return 0
    print_table(
        ["table", "rows", "size", "files"],
        [[table, n_rows, human_bytes(size), files] for table, n_rows, size, files in rows],
    )
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    lake = open_any(args.lake, storage_options(args.storage_option))
    result = lake.sql(args.query)  # a bad query or a missing table is one line (run_sql)
    print_rows(result.column_names, result.to_pylist(), args.format)
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
