"""Preference-record formats: tell which one a file uses and turn one record into a pair.

A parser returns a `Pair`, or a `Reject` (data a person should see but not train on); a record
that does not fit its format raises `RecordError`, which ingest turns into one line naming the
file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sculpt.errors import UserError
from sculpt.terminal import visible

Format = Literal["trl", "conversational", "hh", "pairwise"]
FORMATS: tuple[str, ...] = ("auto", "trl", "conversational", "hh", "pairwise")
CANONICAL_KEYS = ("prompt", "chosen", "rejected", "response_a", "response_b", "winner")
"""Names `--map canonical=column` may target."""

EXPECTED = {
    "trl": "TRL standard: prompt, chosen, rejected strings",
    "conversational": "TRL conversational: chosen and rejected lists of {role, content} "
    "(prompt optional: without it the shared prefix is the prompt)",
    "hh": 'HH-RLHF: chosen and rejected transcripts ("\\n\\nHuman: …\\n\\nAssistant: …")',
    "pairwise": "pairwise: prompt, response_a, response_b, winner (a/b)",
}

A_KEYS = ("response_a", "conversation_a", "response_0", "completion_a")
B_KEYS = ("response_b", "conversation_b", "response_1", "completion_b")
WINNER_KEYS = ("winner", "label", "preference", "better_response_id", "choice")
_WINS_A = {"a", "model_a", "response_a", "response_0", "0"}
_WINS_B = {"b", "model_b", "response_b", "response_1", "1"}
_TIES = {"tie", "tie (bothbad)", "both_bad", "bothbad", "equal", "same", "draw"}

_ROLES = {
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}
ASSISTANT_MARK = "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_HH_START = re.compile(r"\s*(?:Human|Assistant):")


class RecordError(ValueError):
    """A record that does not fit its format; ingest prefixes the file and line."""


@dataclass(slots=True)
class Pair:
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Reject:
    reason: str
    """identical / empty_response / no_shared_prompt / tie (duplicate is decided by ingest)."""
    detail: str


Parser = Callable[[dict[str, Any]], Pair | Reject]


def clean(text: str) -> str:
    """The stored form of a text: CRLF → LF, outer whitespace stripped."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text.strip()


# ---- mapping and detection -------------------------------------------------------------------
def parse_mapping(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """`"chosen=preferred,rejected=worse"` → {"chosen": "preferred", "rejected": "worse"}."""
    if not spec:
        return {}
    items = spec.items() if isinstance(spec, Mapping) else _split_mapping(spec)
    out: dict[str, str] = {}
    for key, column in items:
        if key not in CANONICAL_KEYS:
            raise UserError(
                f"--map {key}={column}: unknown field {key!r}; map one of "
                f"{', '.join(CANONICAL_KEYS)} to a column, e.g. --map chosen=preferred"
            )
        out[key] = column
    return out


def _split_mapping(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, eq, column = item.partition("=")
        if not eq or not key.strip() or not column.strip():
            raise UserError(f"--map {item}: expected FIELD=COLUMN, e.g. --map chosen=preferred")
        pairs.append((key.strip(), column.strip()))
    return pairs


def apply_mapping(record: dict[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    for key, column in mapping.items():
        if column in record:
            record[key] = record.pop(column)
    return record


def detect_format(record: Mapping[str, Any]) -> Format:
    """Guess the format from the first record's keys and value types."""
    keys = set(record)
    if {"chosen", "rejected"} <= keys:
        chosen = record["chosen"]
        if isinstance(chosen, list) or _json_messages(chosen):
            return "conversational"
        if "prompt" in keys:
            return "trl"  # its prompt may still be a message list
        if isinstance(chosen, str) and _HH_START.match(chosen):
            return "hh"
        raise RecordError(
            "chosen/rejected are plain strings with no prompt column and no "
            '"\\n\\nHuman:" turns; add --map prompt=COLUMN or pass --format'
        )
    if keys & set(A_KEYS) and keys & set(B_KEYS) and keys & set(WINNER_KEYS):
        return "pairwise"
    raise RecordError(
        f"cannot tell the format from keys {sorted(keys)}; expected one of: "
        + "; ".join(EXPECTED.values())
        + " — or pass --format and --map FIELD=COLUMN"
    )


def _json_messages(value: Any) -> bool:
    """A message list written as JSON text (how CSV files carry conversations)."""
    if not isinstance(value, str) or not value.lstrip().startswith("[{"):
        return False
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, a 5,000-digit number, or nested too deep
        return False
    return isinstance(parsed, list) and all(
        isinstance(m, dict) and ("role" in m or "from" in m) for m in parsed
    )


def parser_for(fmt: Format) -> Parser:
    return {
        "trl": parse_trl,
        "conversational": parse_conversational,
        "hh": parse_hh,
        "pairwise": parse_pairwise,
    }[fmt]


# ---- field access ----------------------------------------------------------------------------
def _require(record: Mapping[str, Any], key: str, fmt: str) -> Any:
    try:
        return record[key]
    except KeyError:
        raise RecordError(
            f"missing key {key!r} (found: {column_names(record) or 'none'}); expected "
            f"{EXPECTED[fmt]}; rename with --map {key}=COLUMN"
        ) from None


def column_names(record: Mapping[str, Any]) -> str:
    """The record's keys for an error line: data, so newlines and controls are shown, not kept."""
    return ", ".join(visible(key, newlines=False) for key in record)


def _string(value: Any, name: str, hint: str = "") -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RecordError(f"{name} is {_type(value)}, expected a string{hint}")


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), f"{type(value).__name__} {json.dumps(value, default=str)[:40]}"
    )


def _extra(record: Mapping[str, Any], used: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in used}


def messages(value: Any, name: str) -> list[dict[str, str]]:
    """A list of {role, content} (or ShareGPT {from, value}) messages, roles normalized."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:  # CSV cells carry message lists as JSON text
            value = json.loads(value)
        except (ValueError, RecursionError):
            pass
    if not isinstance(value, list):
        raise RecordError(
            f"{name} is {_type(value)}, expected a list of {{role, content}} messages"
        )
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise RecordError(f"{name}[{i}] is {_type(msg)}, expected {{role, content}}")
        role = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        if not isinstance(role, str) or role.lower() not in _ROLES:
            raise RecordError(f"{name}[{i}].role is {role!r}, expected user, assistant or system")
        out.append(
            {"role": _ROLES[role.lower()], "content": clean(_content(content, f"{name}[{i}]"))}
        )
    return out


def _content(content: Any, name: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise RecordError(f"{name}.content is {_type(content)}, expected a string")


def hh_messages(transcript: str) -> list[dict[str, str]]:
    """Split "\n\nHuman: …\n\nAssistant: …" into user/assistant messages."""
    if not transcript.startswith("\n\n"):
        transcript = "\n\n" + transcript.lstrip()
    if "\r" in transcript:
        transcript = transcript.replace("\r\n", "\n")
    parts = _HH_TURN.split(transcript)
    head = parts[0].strip()
    out = [{"role": "system", "content": head}] if head else []
    turns = iter(parts[1:])
    out += [
        {"role": _HH_ROLES[speaker], "content": text.strip()}
        for speaker, text in zip(turns, turns, strict=True)
    ]
    return out


def prompt_messages(value: Any) -> list[dict[str, str]]:
    """A prompt given as plain text, an HH-style transcript, or a message list."""
    if isinstance(value, str) and not _json_messages(value):
        if _HH_START.match(value):
            turns = hh_messages(value)
            if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
                turns.pop()  # "…\n\nAssistant:" marks where the response goes
            return turns
        return [{"role": "user", "content": clean(value)}]
    if not isinstance(value, list | str):
        raise RecordError(f"prompt is {_type(value)}, expected a string or a list of messages")
    return messages(value, "prompt")


# ---- parsers ---------------------------------------------------------------------------------
def _finish(
    prompt: list[dict[str, str]], chosen: str | None, rejected: str | None, meta: dict[str, Any]
) -> Pair | Reject:
    if not chosen or not rejected:
        side = "chosen" if not chosen else "rejected"
        return Reject("empty_response", f"{side} response is empty")
    if chosen == rejected:
        return Reject("identical", "chosen and rejected are the same text")
    return Pair(prompt, chosen, rejected, meta)


def parse_trl(record: dict[str, Any]) -> Pair | Reject:
    prompt = prompt_messages(_require(record, "prompt", "trl"))
    hint = " (message lists: --format conversational)"
    chosen = _string(_require(record, "chosen", "trl"), "chosen", hint)
    rejected = _string(_require(record, "rejected", "trl"), "rejected", hint)
    return _finish(
        prompt,
        chosen and clean(chosen),
        rejected and clean(rejected),
        _extra(record, ("prompt", "chosen", "rejected")),
    )


def parse_conversational(record: dict[str, Any]) -> Pair | Reject:
    chosen_raw = _require(record, "chosen", "conversational")
    rejected_raw = _require(record, "rejected", "conversational")
    if chosen_raw is None or rejected_raw is None:
        return Reject("empty_response", f"{'chosen' if chosen_raw is None else 'rejected'} is null")
    chosen, rejected = messages(chosen_raw, "chosen"), messages(rejected_raw, "rejected")
    for side, turns in (("chosen", chosen), ("rejected", rejected)):
        if not turns:
            return Reject("empty_response", f"{side} has no messages")
        if turns[-1]["role"] != "assistant":
            raise RecordError(
                f"{side} ends with a {turns[-1]['role']} message; expected the assistant's reply last"
            )
    if chosen[:-1] != rejected[:-1]:
        return Reject("no_shared_prompt", _diverge_detail(chosen[:-1], rejected[:-1]))
    given = record.get("prompt")
    prompt = (prompt_messages(given) if given is not None else []) + chosen[:-1]
    if not prompt:
        return Reject("no_shared_prompt", "no prompt messages before the final assistant turn")
    return _pair_with_turns(
        prompt,
        chosen[-1]["content"],
        rejected[-1]["content"],
        _extra(record, ("prompt", "chosen", "rejected")),
    )


def _pair_with_turns(
    prompt: list[dict[str, str]], chosen: str, rejected: str, meta: dict[str, Any]
) -> Pair | Reject:
    """An explicit but empty assistant turn is a real choice (saying nothing): keep, mark it."""
    if chosen == rejected:
        return Reject("identical", "chosen and rejected are the same text")
    if not chosen or not rejected:
        meta["empty_turn"] = "chosen" if not chosen else "rejected"
    return Pair(prompt, chosen, rejected, meta)


def _diverge_detail(a: list[dict[str, str]], b: list[dict[str, str]]) -> str:
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return (
        f"chosen has {len(a)} messages before its last assistant turn, rejected {len(b)}; "
        f"they differ from message {at + 1}"
    )


def parse_hh(record: dict[str, Any]) -> Pair | Reject:
    chosen = _string(_require(record, "chosen", "hh"), "chosen")
    rejected = _string(_require(record, "rejected", "hh"), "rejected")
    if not chosen or not rejected:
        return Reject("empty_response", f"{'chosen' if not chosen else 'rejected'} is empty")
    cut_c, cut_r = chosen.rfind(ASSISTANT_MARK), rejected.rfind(ASSISTANT_MARK)
    if cut_c < 0 or cut_r < 0:
        side = "chosen" if cut_c < 0 else "rejected"
        raise RecordError(f'{side} has no "\\n\\nAssistant:" turn; expected {EXPECTED["hh"]}')
    prefix = chosen[:cut_c]
    if cut_c != cut_r or not rejected.startswith(prefix):
        turns_c = chosen.count(ASSISTANT_MARK, 0, cut_c) + chosen.count("\n\nHuman:", 0, cut_c)
        turns_r = rejected.count(ASSISTANT_MARK, 0, cut_r) + rejected.count("\n\nHuman:", 0, cut_r)
        return Reject(
            "no_shared_prompt",
            f"transcripts differ before the last assistant turn "
            f"(chosen has {turns_c} turns before it, rejected {turns_r})",
        )
    start = len(ASSISTANT_MARK)
    return _pair_with_turns(
        hh_messages(prefix),
        clean(chosen[cut_c + start :]),
        clean(rejected[cut_r + start :]),
        _extra(record, ("chosen", "rejected")) if len(record) > 2 else {},
    )


def parse_pairwise(record: dict[str, Any]) -> Pair | Reject:
    key_a = next((k for k in A_KEYS if k in record), A_KEYS[0])
    key_b = next((k for k in B_KEYS if k in record), B_KEYS[0])
    key_w = next((k for k in WINNER_KEYS if k in record), WINNER_KEYS[0])
    resp_a, resp_b = _require(record, key_a, "pairwise"), _require(record, key_b, "pairwise")
    winner = _winner(_require(record, key_w, "pairwise"), key_w)
    if winner == "tie":
        return Reject("tie", f"{key_w} is {record[key_w]!r}: neither response won")
    won, lost = (resp_a, resp_b) if winner == "a" else (resp_b, resp_a)
    rest = _extra(record, (key_a, key_b, key_w, "prompt"))
    flat = {
        "chosen": won,
        "rejected": lost,
        **({"prompt": record["prompt"]} if "prompt" in record else {}),
    }
    if any(isinstance(side, list) or _json_messages(side) for side in (won, lost)):
        result = parse_conversational(flat)
    else:
        result = parse_trl({"prompt": _require(record, "prompt", "pairwise"), **flat})
    if isinstance(result, Pair):
        result.meta = {**rest, **result.meta, "winner": winner}
    return result


def _winner(value: Any, key: str) -> str:
    text = (
        str(value).strip().lower()
        if isinstance(value, str | int) and not isinstance(value, bool)
        else None
    )
    if text in _WINS_A:
        return "a"
    if text in _WINS_B:
        return "b"
    if text in _TIES:
        return "tie"
    raise RecordError(f"{key} is {value!r}; expected a/b, model_a/model_b, 0/1 or tie")
