"""`sculpt triage [NAME]`: the Textual app over the lake (imported only when the command runs)."""

from __future__ import annotations

import argparse
from typing import Any

from sculpt.errors import UserError
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


def pick_dataset(lake: Lake, name: str | None) -> str:
    """NAME, or the lake's only dataset; a clear error when that is ambiguous."""
    if name:
        return name
    found: set[str] = set()
    for table in ("pairs", "hypotheses"):
        folder = lake.table_dir(table)
        if folder.exists():
            found |= {p.name.split("=", 1)[1] for p in folder.glob("dataset=*") if p.is_dir()}
    if len(found) == 1:
        return found.pop()
    if not found:
        raise UserError(
            f"lake {lake.root}: no dataset yet — run `sculpt demo` or "
            "`sculpt ingest FILE --name NAME`, then `sculpt triage NAME`"
        )
    raise UserError(
        f"lake {lake.root}: several datasets ({', '.join(sorted(found))}); "
        "name one: `sculpt triage NAME`"
    )


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
