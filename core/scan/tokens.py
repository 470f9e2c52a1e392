"""Token spans of a preference pair: the prompt through the chat template, each response as the
assistant turn, and the per-span truncation policy (DESIGN §1)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sculpt.errors import UserError

TemplateMode = Literal["auto", "chat", "plain"]
Keep = Literal["start", "end"]

SIDES = ("prompt", "chosen", "rejected")

FALLBACK_PLAIN = "plain"
"""The tokenizer has no chat template: prompts were rendered as plain `role: content` lines."""
FALLBACK_SPLIT = "split"
"""The template re-tokenized the prompt differently once a response followed it: the response was
tokenized on its own and appended to the prompt tokens, followed by the end-of-turn tokens."""

_SENTINEL = "\u2063sculpt-sentinel\u2063"


@dataclass
class TokenizedPair:
    """One pair's token ids per side after truncation, with what was cut and how it was encoded."""

    pair_id: str
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    truncated: dict[str, int] = field(default_factory=dict)
    """Tokens cut per side by the truncation policy."""
    fallback: str | None = None
    """None, FALLBACK_PLAIN or FALLBACK_SPLIT."""

    def side(self, name: str) -> list[int]:
        ids: list[int] = getattr(self, name)
        return ids


def parse_prompt(prompt: str) -> list[dict[str, str]]:
    """The `pairs.prompt` column (JSON list of {role, content}) as chat messages."""
    try:
        messages = json.loads(prompt)
    except (TypeError, ValueError):
        return [{"role": "user", "content": str(prompt)}]
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise UserError("pairs.prompt: expected a JSON list of {role, content}; re-run ingest")
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def use_chat_template(tokenizer: Any, mode: TemplateMode, model_name: str) -> bool:
    """Whether to render prompts with the chat template; `chat` without one is a UserError."""
    if mode == "plain":
        return False
    if has_chat_template(tokenizer):
        return True
    if mode == "chat":
        raise UserError(
            f"model {model_name}: its tokenizer has no chat template but the prompts are "
            "conversations; pass --template plain to render them as plain `role: content` lines"
        )
    return False


def encode_pair_tokens(
    tokenizer: Any, prompt_messages: list[dict[str, str]], response: str
) -> tuple[list[int], int]:
    """Prompt (generation prompt on) + response as the assistant turn → (token ids, prompt length)."""
    ids, prompt_len, _ = encode_response(tokenizer, prompt_messages, response)
    return ids, prompt_len


def encode_response(
    tokenizer: Any,
    prompt_messages: list[dict[str, str]],
    response: str,
    chat: bool | None = None,
    prompt_ids: list[int] | None = None,
) -> tuple[list[int], int, str | None]:
    """Like `encode_pair_tokens`, also saying which fallback (if any) was used."""
    if chat is None:
        chat = has_chat_template(tokenizer)
    if not chat:
        prompt_ids = (
            prompt_ids if prompt_ids is not None else plain_prompt_ids(tokenizer, prompt_messages)
        )
        response_ids = _plain_ids(tokenizer, response) + _eos(tokenizer)
        return prompt_ids + response_ids, len(prompt_ids), FALLBACK_PLAIN
    if prompt_ids is None:
        prompt_ids = chat_prompt_ids(tokenizer, prompt_messages)
    conversation = [*prompt_messages, {"role": "assistant", "content": response}]
    full_ids = _plain_ids(tokenizer, _render(tokenizer, conversation, False))
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        return full_ids, len(prompt_ids), None
    split = prompt_ids + _plain_ids(tokenizer, response) + end_of_turn_ids(tokenizer)
    return split, len(prompt_ids), FALLBACK_SPLIT


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    return _plain_ids(tokenizer, _render(tokenizer, messages, True))


def plain_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The documented fallback: one `role: content` line per message, then `assistant: `."""
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    ids: list[int] = tokenizer(text, add_special_tokens=True)["input_ids"]
    return ids


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The tokens the template puts after an assistant message (e.g. `<|im_end|>\\n`)."""
    cached: list[int] | None = getattr(tokenizer, "_sculpt_end_of_turn", None)
    if cached is not None:
        return cached
    conversation = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}]
    text = _render(tokenizer, conversation, False)
    at = text.rfind(_SENTINEL)
    tail = text[at + len(_SENTINEL) :] if at >= 0 else ""
    ids = _plain_ids(tokenizer, tail) if tail else _eos(tokenizer)
    tokenizer._sculpt_end_of_turn = ids
    return ids


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(text)


def _plain_ids(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def _eos(tokenizer: Any) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def truncate(ids: list[int], limit: int, keep: Keep) -> tuple[list[int], int]:
    """Keep `limit` tokens from the start or the end; return (kept, number cut)."""
    if len(ids) <= limit:
        return ids, 0
    kept = ids[:limit] if keep == "start" else ids[len(ids) - limit :]
    return kept, len(ids) - limit


@dataclass(frozen=True)
class Truncation:
    """Per-span caps and which end of each span survives."""

    max_prompt_tokens: int
    max_response_tokens: int
    prompt_keep: Keep
    response_keep: Keep


def tokenize_pair(
    tokenizer: Any, row: Mapping[str, Any], policy: Truncation, chat: bool
) -> TokenizedPair:
    """Tokenize one `pairs` row into prompt/chosen/rejected spans, then apply the policy."""
    messages = parse_prompt(row["prompt"])
    prompt_ids = (
        chat_prompt_ids(tokenizer, messages) if chat else plain_prompt_ids(tokenizer, messages)
    )
    responses: dict[str, list[int]] = {}
    fallback: str | None = None
    for side in ("chosen", "rejected"):
        ids, prompt_len, how = encode_response(
            tokenizer, messages, str(row[side]), chat=chat, prompt_ids=prompt_ids
        )
        responses[side] = ids[prompt_len:]
        fallback = fallback or how
    prompt, cut_prompt = truncate(prompt_ids, policy.max_prompt_tokens, policy.prompt_keep)
    chosen, cut_chosen = truncate(
        responses["chosen"], policy.max_response_tokens, policy.response_keep
    )
    rejected, cut_rejected = truncate(
        responses["rejected"], policy.max_response_tokens, policy.response_keep
    )
    return TokenizedPair(
        pair_id=str(row["pair_id"]),
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        truncated={"prompt": cut_prompt, "chosen": cut_chosen, "rejected": cut_rejected},
        fallback=fallback,
    )
