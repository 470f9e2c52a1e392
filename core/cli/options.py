"""Options shared by commands: flags built from config dataclasses, the storage option.

A command's settings live in its config dataclass (ScanConfig, SaeTrainConfig, AnalyzeConfig,
AuditConfig, TrainConfig); `add_config_flags` turns its fields into `--flags` whose help is the
field's docstring, and `config_from_args` builds the config back, so the two never drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types as _types
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from sculpt.configs import coerce, field_docs
from sculpt.errors import UserError

Config = TypeVar("Config")

_LONE_PERCENT = re.compile(r"%(?![%(])")


def literal(text: str) -> str:
    """argparse %-formats help text; a literal "95% CI" must print as itself."""
    return _LONE_PERCENT.sub("%%", text)


def flag_name(name: str, prefix: str = "") -> str:
    return "--" + (prefix + name).replace("_", "-")


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:_}"
    return str(value)


def _metavar(annotation: Any) -> str | None:
    origin = get_origin(annotation)
    if origin in (Union, _types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _metavar(options[0]) if options else None
    if annotation is int:
        return "N"
    if annotation is float:
        return "X"
    return "TEXT"


def _choices(annotation: Any) -> tuple[Any, ...] | None:
    origin = get_origin(annotation)
    if origin in (Union, _types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _choices(options[0]) if options else None
    return get_args(annotation) if origin is Literal else None


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    dest: str,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    prefix: str = "",
    defaults: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
) -> None:
    """One `--field-name` flag per field of `cls`; its help is the field's docstring.

    Values stay unset unless given (the dataclass keeps its default); `dest` groups them in the
    namespace (`<dest>__<field>`) so several configs can share one parser; `names` renames a
    field's flag (`fmt` → `--format`)."""
    docs = field_docs(cls)
    hints = get_type_hints(cls)
    wanted = None if only is None else list(only)
    skipped = set(skip)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in wanted if wanted is not None else list(fields):
        if name in skipped:
            continue
        item = fields[name]
        annotation = hints[name]
        default = (defaults or {}).get(name, item.default)
        doc = docs.get(name, "")
        shown = "" if "default" in doc.lower() else f" (default: {_shown(default)})"
        help_text = literal(doc + shown)
        kwargs: dict[str, Any] = {
            "dest": f"{dest}__{name}",
            "default": argparse.SUPPRESS,
            "help": help_text,
        }
        flag = flag_name((names or {}).get(name, name), prefix)
        if annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        choices = _choices(annotation)
        if choices:
            kwargs["choices"] = list(choices)
        else:
            kwargs["metavar"] = _metavar(annotation)
        parser.add_argument(flag, **kwargs)


def given(args: argparse.Namespace, dest: str) -> dict[str, Any]:
    """The flags of config `dest` that were given on the command line, as raw values."""
    head = f"{dest}__"
    return {k[len(head) :]: v for k, v in vars(args).items() if k.startswith(head)}


def config_from_args(
    cls: type[Config],
    args: argparse.Namespace,
    *,
    dest: str,
    command: str,
    prefix: str = "",
    base: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
) -> Config:
    """A `cls` from `base` values, then the flags given; an error names the flag and the fix."""
    hints = get_type_hints(cls)
    values = dict(base or {})
    for name, raw in given(args, dest).items():
        try:
            values[name] = coerce(name, raw, hints[name], from_text=isinstance(raw, str))
        except ValueError as exc:
            flag = flag_name((names or {}).get(name, name), prefix)
            detail = str(exc).split(": ", 1)[-1]
            raise UserError(f"{command} {flag} {raw}: {detail}") from None
    try:
        return cls(**values)
    except ValueError as exc:
        raise UserError(f"{command}: {exc}") from None


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


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["table", "json", "csv"],
        default="table",
        help="table for reading; json (one object a line) or csv for programs",
    )
