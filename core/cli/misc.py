"""`sculpt demo-data` and `sculpt env`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sculpt.lake.datasets import fresh_name
from sculpt.lake.store import Lake, default_root, slug


def register(add: Any) -> None:
    demo = add(
        "demo-data",
        "Write the project's own demo preference dataset (TRL-standard JSON lines).",
        "sculpt demo-data --out demo.jsonl --n 300 --seed 0",
        lake=False,
    )
    demo.description = (
        "Write the project's own demo preference dataset (TRL-standard JSON lines).\n\n"
        "Pairs are generated from templates and word lists. The chosen side carries two planted\n"
        "concepts at known rates (sculpt.data.demo.PLANTED): a flattering opener and markdown bold;\n"
        "length, lists and hedges vary equally on both sides."
    )
    demo.add_argument("--out", default=None, metavar="FILE", help="output file (default: stdout)")
    demo.add_argument("--n", type=int, default=300, help="number of pairs (default: 300)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(func=cmd_demo_data)

    env = add(
        "env", "Print versions and the device, for bug reports.", "sculpt env --json", lake=False
    )
    env.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    env.add_argument(
        "--torch",
        action="store_true",
        help="import torch and report the device it sees (slower, authoritative)",
    )
    env.set_defaults(func=cmd_env)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from sculpt.data.demo import generate, write_demo

    if args.out is None:
        for pair in generate(args.n, args.seed):
            sys.stdout.write(json.dumps(pair, ensure_ascii=False) + "\n")
        return 0
    path = write_demo(args.out, args.n, args.seed)
    name = f"{slug(path.stem)}-n{args.n}-s{args.seed}"
    if default_root().exists():  # the lake a plain `sculpt audit` writes to
        name = fresh_name(Lake.open(default_root()), name)
    print(
        f"wrote {args.n:,} pairs to {path} (seed {args.seed}); next: "
        f"sculpt audit {path} --name {name}",
        file=sys.stderr,
    )
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from sculpt.environment import collect

    info = collect(ask_torch=args.torch)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")
    return 0
