"""`sculpt`: parse, call a function in core/, print. Heavy imports happen inside commands."""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sculpt.cli import GROUPS
from sculpt.cli.options import literal
from sculpt.errors import UserError
from sculpt.terminal import visible

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

AddCommand = Callable[..., argparse.ArgumentParser]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for a mistyped command or flag."""

    def error(self, message: str) -> NoReturn:
        match = _INVALID_CHOICE.search(message)
        if match:
            choices = re.findall(r"'([^']*)'", match.group(2)) or match.group(2).split(", ")
            message += _did_you_mean(match.group(1), choices)
        super().error(message)

    def unrecognized(self, extra: Sequence[str]) -> NoReturn:
        """Unknown arguments, reported with this (sub)command's usage."""
        flags = [s for a in self._actions for s in a.option_strings]
        hint = _did_you_mean(extra[0].split("=", 1)[0], flags) if extra[0].startswith("-") else ""
        self.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


def build_parser() -> _Parser:
    parser = _Parser(
        prog="sculpt",
        description="Audit a preference dataset at the level of concepts before post-training.",
        epilog="Example:\n  sculpt demo          # the whole audit on the built-in demo data",
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _Parser(add_help=False)
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
        command = target.add_parser(
            name,
            help=literal(help),
            description=help,  # argparse %-formats only `help`, not descriptions
            epilog=f"Example:\n  {example}",
            formatter_class=_Formatter,
            parents=[common] if lake else [],
        )
        command.set_defaults(parser=command)
        return command

    for group in GROUPS:
        importlib.import_module(f"sculpt.cli.{group}").register(add)
    return parser


def one_line(message: str) -> str:
    """An error as one line: line breaks from libraries' messages become spaces, and data it
    quotes (column names, file names, values) is shown, never obeyed by the terminal."""
    return visible(_LINE_BREAKS.sub(" ", message.strip()), newlines=False)


_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        target: _Parser = getattr(args, "parser", parser)
        target.unrecognized(extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else EXIT_USAGE
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"sculpt {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
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
