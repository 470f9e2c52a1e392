"""`sculpt findings NAME`: one row per distinct signal, backed by every concept that carries it
(DESIGN §4, Findings); `sculpt hypotheses` keeps the per-concept view."""

from __future__ import annotations

import argparse
from typing import Any

from sculpt.cli.options import add_storage_option
from sculpt.cli.output import json_line, print_rows, print_table
from sculpt.errors import UserError
from sculpt.lake.remote import open_any, storage_options

SHOWN_MEMBERS = 3
"""Member ids a table row lists before "+N"."""
FIELDS = (
    "finding_id",
    "rank",
    "label",
    "members",
    "lean",
    "delta",
    "ci_lo",
    "ci_hi",
    "d",
    "z",
    "p",
    "q",
    "split_half_ok",
    "n_pairs",
    "n_in",
    "chosen_share",
    "rejected_share",
    "delta_min",
    "delta_len",
    "length_only",
    "dense",
    "template",
    "kinds",
    "n_members",
    "label_concept",
    "analysis",
)
"""What JSON and CSV carry, in this order (`n_pairs`: the pairs the finding is measured on)."""
MEMBER_FIELDS = (
    "position",
    "concept_id",
    "role",
    "kind",
    "label",
    "agreement",
    "lean",
    "delta",
    "ci_lo",
    "ci_hi",
    "d",
    "q",
    "split_half_ok",
    "chosen_rate",
    "rejected_rate",
    "dense",
    "template",
)


def register(add: Any) -> None:
    show = add(
        "findings",
        "Print an analysis's findings: one row per distinct signal, with Δ (share of pairs) "
        "[95% CI], d, q, split-half and the concepts that carry it, best first.",
        "sculpt findings hh --lean chosen --top 10 --format table",
    )
    show.add_argument("dataset", metavar="NAME", help="dataset name")
    show.add_argument("--analysis", default=None, help="analysis key (default: the latest)")
    show.add_argument(
        "--lean", choices=["chosen", "rejected"], default=None, help="only one direction"
    )
    show.add_argument("--top", type=int, default=20, help="findings to print (default 20; 0 = all)")
    show.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="output format"
    )
    show.add_argument(
        "--expand",
        default=None,
        metavar="FINDING_ID",
        help="print this finding's members with their own statistics instead",
    )
    add_storage_option(show)
    show.set_defaults(func=cmd_findings)


def cmd_findings(args: argparse.Namespace) -> int:
    from sculpt.analysis.findings import read_findings, read_members

    lake = open_any(args.lake, storage_options(args.storage_option))
    if args.expand:
        members = read_members(lake, args.dataset, args.expand, args.analysis)
        if not members:
            raise UserError(
                f"findings[{args.dataset}]: no finding {args.expand!r}; list them with "
                f"`sculpt findings {args.dataset} --format json`"
            )
        print_rows(MEMBER_FIELDS, members, args.format)
        return 0
    rows = [_record(r) for r in read_findings(lake, args.dataset, args.analysis, args.lean)]
    rows = rows[: args.top] if args.top > 0 else rows
    if args.format == "json":
        for r in rows:
            print(json_line(r))
    elif args.format == "csv":
        print_rows(FIELDS, [{**r, "members": " ".join(r["members"])} for r in rows], "csv")
    else:
        head = ["#", "label", "lean", "Δ [95% CI]", "d", "q", "split-half", "members", "n_in"]
        print_table([*head, "note"], [_table_row(r) for r in rows])
    return 0


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row["n"] if name == "n_pairs" else row.get(name) for name in FIELDS}


def _table_row(r: dict[str, Any]) -> list[Any]:
    from sculpt.cli.output import number

    interval = f"{number(r['delta'])} [{number(r['ci_lo'])}, {number(r['ci_hi'])}]"
    members = ", ".join(r["members"][:SHOWN_MEMBERS])
    if len(r["members"]) > SHOWN_MEMBERS:
        members += f" +{len(r['members']) - SHOWN_MEMBERS}"
    notes = [name for name in ("dense", "template") if r[name]]
    if r["length_only"]:
        notes.append("length-only")
    q = "—" if r["q"] is None else f"{r['q']:.2g}"
    split = "✓" if r["split_half_ok"] else "✗"
    return [
        r["rank"],
        r["label"],
        r["lean"],
        interval,
        r["d"],
        q,
        split,
        members,
        r["n_in"],
        " ".join(notes),
    ]


def print_summary(lake: Any, dataset: str, top: int = 5) -> None:
    """The audit's summary: how many distinct signals, and the strongest ones."""
    from sculpt.analysis.findings import read_findings
    from sculpt.cli.output import cell

    try:
        rows = read_findings(lake, dataset)
    except UserError as exc:  # an analysis made before findings existed: say how to get them
        print(f"\n{exc}")
        return
    concepts = sum(r["n_members"] for r in rows)
    significant = sum(1 for r in rows if r["q"] is not None and r["q"] < 0.05)
    print(
        f"\nfindings: {len(rows):,} distinct signals carried by {concepts:,} concepts, "
        f"{significant:,} with q < 0.05; the strongest:"
    )
    for r in rows[:top]:
        interval = f"Δ {cell(r['delta'])} [{cell(r['ci_lo'])}, {cell(r['ci_hi'])}]"
        split = "✓" if r["split_half_ok"] else "✗"
        print(
            f"  #{r['rank']} {cell(r['label'])} ({r['lean']}, {interval} of pairs, "
            f"d {cell(r['d'])}, q {r['q']:.2g}, split-half {split}; {_concepts(r['n_members'])})"
        )
    print(f"  more: sculpt findings {dataset}")


def _concepts(count: int) -> str:
    return "1 concept" if count == 1 else f"{count} concepts"


def print_planted(lake: Any, dataset: str, top: int = 5) -> None:
    """Where the demo's planted concepts are among the top findings: the known answer, checked
    (each should be exactly one of them)."""
    from sculpt.analysis.findings import read_findings
    from sculpt.analysis.known_answer import planted_findings
    from sculpt.cli.output import cell

    try:
        rows = read_findings(lake, dataset)
    except UserError as exc:
        print(f"\nplanted concepts: {exc}")
        return
    found = planted_findings(lake, dataset, rows, top=top)
    print(f"\nplanted concepts (the demo's known answer) among the top {top} findings:")
    for p in found:
        if p.rank is None:
            closest = f" (closest: {cell(p.label)}, r = {p.r:.2f})" if p.label else ""
            where = f"not in the top {top}{closest}"
        else:
            again = f"; again as #{', #'.join(map(str, p.ranks[1:]))}" if len(p.ranks) > 1 else ""
            where = f"#{p.rank}: {cell(p.label)} (r = {p.r:.2f}{again})"
        print(f"  {p.name:<18} {where}")
