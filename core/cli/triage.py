"""`sculpt triage [NAME]`: the Textual app over the lake (imported only when the command runs)."""

from __future__ import annotations

import argparse
from typing import Any

from sculpt.lake.datasets import pick_dataset
from sculpt.lake.store import Lake


def register(add: Any) -> None:
    parser = add(
        "triage",
        "Browse flagged concepts, read the evidence, decide, queue interventions (a TUI).",
        "sculpt triage demo --keymap ~/.config/sculpt/keymap.toml",
    )
    parser.add_argument("name", nargs="?", help="dataset name (default: the lake's only one)")
    parser.add_argument(
        "--analysis", default=None, help="analysis key to triage (default: the latest for NAME)"
    )
    parser.add_argument(
        "--keymap",
        default=None,
        metavar="FILE",
        help='TOML or YAML file of `binding.id = "key"` lines; see `?` in the app',
    )
    parser.set_defaults(func=cmd_triage)


def cmd_triage(args: argparse.Namespace) -> int:
    from sculpt.tui.app import TriageApp
    from sculpt.tui.keys import DEFAULT_KEYMAP_FILE, load_keymap

    lake = Lake.open(args.lake)
    keymap_file = args.keymap or (
        DEFAULT_KEYMAP_FILE.expanduser() if DEFAULT_KEYMAP_FILE.expanduser().exists() else None
    )
    keymap = load_keymap(keymap_file) if keymap_file else {}
    TriageApp(lake, pick_dataset(lake, args.name), args.analysis, keymap).run()
    return 0
