"""`sculpt`: parse, call a function in core/, print. Heavy imports happen inside commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from sculpt.cli import GROUPS
from sculpt.cli.options import literal
from sculpt.errors import UserError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

AddCommand = Callable[..., argparse.ArgumentParser]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sculpt",
        description="Audit a preference dataset at the level of concepts before post-training.",
        epilog="Example:\n  sculpt demo          # the whole audit on the built-in demo data",
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--lake",
        default=None,
        metavar="PATH",
        help="lake root (default: $SCULPT_LAKE or ./lake)",
    )

    def add(
        name: str,
        help: str,
        example: str,
        parent: argparse._SubParsersAction | None = None,
        lake: bool = True,
    ) -> argparse.ArgumentParser:
        target = parent if parent is not None else sub
        return target.add_parser(
            name,
            help=literal(help),
            description=help,  # argparse %-formats only `help`, not descriptions
            epilog=f"Example:\n  {example}",
            formatter_class=_Formatter,
            parents=[common] if lake else [],
        )

    for group in GROUPS:
        try:
            module = importlib.import_module(f"sculpt.cli.{group}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sculpt.cli.{group}":
                continue
            raise
        module.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else EXIT_USAGE
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"sculpt {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"\nsculpt {args.command}: interrupted; finished work is kept, re-run to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
