"""`sculpt ingest PATH --name NAME`."""

from __future__ import annotations

import argparse
from typing import Any

from sculpt.data.formats import FORMATS
from sculpt.data.ingest import ingest
from sculpt.lake.store import Lake

_DESCRIPTION = """Read a preference dataset into the lake (tables `pairs` and `rejects`).

Formats (auto-detected from the first record, or --format):
  trl             {"prompt": str, "chosen": str, "rejected": str}
  conversational  {"prompt": [messages]?, "chosen": [messages], "rejected": [messages]};
                  without a prompt, the messages chosen and rejected share are the prompt
  hh              HH-RLHF transcripts: {"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": …}
  pairwise        {"prompt", "response_a", "response_b", "winner": "a"|"b"|"tie"}
Files: .jsonl, .jsonl.gz, .json, .parquet, .csv, or a datasets save_to_disk folder.
Rows that can't teach a preference (identical sides, an empty response, transcripts that don't
share a prompt, ties, exact duplicates) go to `rejects` with their reason. Re-ingesting under the
same --name replaces that dataset."""


def register(add: Any) -> None:
    parser = add(
        "ingest",
        "Read a preference dataset (prompt/chosen/rejected) into the lake.",
        "sculpt ingest data/hh.jsonl.gz --name hh   "
        "# or: --format trl --map chosen=preferred,rejected=dispreferred",
    )
    parser.description = _DESCRIPTION
    parser.add_argument("path", metavar="PATH", help="a data file or folder")
    parser.add_argument("--name", required=True, help="dataset name in the lake (partition key)")
    parser.add_argument(
        "--format",
        default="auto",
        metavar="FORMAT",
        help=f"one of {', '.join(FORMATS)} (default: auto)",
    )
    parser.add_argument(
        "--map",
        default=None,
        metavar="FIELD=COLUMN,...",
        help="rename source columns, e.g. chosen=preferred,rejected=dispreferred,prompt=question",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    lake = Lake.open(args.lake)
    report = ingest(
        lake, args.path, args.name, fmt=args.format, mapping=args.map, progress=not args.quiet
    )
    for line in report.lines():
        print(line)
    return 0
