"""Typed config dataclasses: each field's docstring is its help, values coerced from text or YAML.

Every command's flags come from its config (sculpt.cli.options builds them), as sparsify's
`config.py` and TRL's `TrlParser` do: one definition of a setting, its type, default and help.
"""

from __future__ import annotations

import ast
import functools
import inspect
import types
from typing import Any, Literal, Union, get_args, get_origin


@functools.lru_cache(maxsize=4)
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right after it in the class body)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def coerce(name: str, value: Any, annotation: Any, from_text: bool) -> Any:
    """`value` as the field's type, or a ValueError saying what was expected."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if value is None or (from_text and str(value).lower() in ("none", "null", "")):
            return None
        return coerce(name, value, options[0], from_text)
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(str, choices))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
        raise ValueError(f"{name}={value!r}: expected true or false")
    if annotation in (int, float):
        if isinstance(value, bool) or (not from_text and not isinstance(value, int | float)):
            raise ValueError(f"{name}={value!r}: expected a number ({annotation.__name__})")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}={value!r}: expected a number ({annotation.__name__})"
            ) from None
        if annotation is int:
            if number != int(number):
                raise ValueError(f"{name}={value!r}: expected a whole number")
            return int(number)
        return number
    if annotation is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: expected text")
        return str(value)
    return value
