"""The fast truncated forward: blocks ≤ L only, the shared prompt computed once per pair.

Each pair is packed as one sequence `prompt | chosen | rejected` with position ids that restart
after the prompt for the rejected response (both responses sit at positions P..), and a 4D mask in
which rejected tokens cannot see chosen tokens. Every token then sees exactly what it would see in
the naive forward over `prompt + response`, while the prompt is computed once (the packed form of
sharing its KV cache). A hook on block L stops the forward there: no block above L and no LM head
ever runs. Pairs are batched by packed length to keep padding small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sculpt.scan.models import LoadedModel, decoder_layers
from sculpt.scan.tokens import TokenizedPair

SEGMENT_PROMPT, SEGMENT_CHOSEN, SEGMENT_REJECTED, SEGMENT_PAD = 0, 1, 2, 3


@dataclass
class PairActs:
    """Residual-stream activations after block L for each span of one pair."""

    index: int
    """Position of the pair in the caller's list."""
    acts: dict[str, torch.Tensor]
    """side → float32 [n_tokens, d_model], on the model's device."""


class _StopForward(Exception):
    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden


def packed_length(pair: TokenizedPair, share_prefix: bool) -> int:
    """Padded tokens one pair occupies in a batch (unshared: two rows of the longer response)."""
    if share_prefix:
        return len(pair.prompt) + len(pair.chosen) + len(pair.rejected)
    return 2 * (len(pair.prompt) + max(len(pair.chosen), len(pair.rejected)))


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped longest first so that batch size × longest length ≤ batch_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1) * longest > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _rows(pair: TokenizedPair, share_prefix: bool) -> list[tuple[list[int], list[int], list[int]]]:
    """(token ids, position ids, segment ids) of each sequence one pair packs into."""
    p, c, r = pair.prompt, pair.chosen, pair.rejected
    n_p = len(p)
    if share_prefix:
        return [
            (
                p + c + r,
                list(range(n_p + len(c))) + list(range(n_p, n_p + len(r))),
                [SEGMENT_PROMPT] * n_p + [SEGMENT_CHOSEN] * len(c) + [SEGMENT_REJECTED] * len(r),
            )
        ]
    return [
        (p + resp, list(range(n_p + len(resp))), [SEGMENT_PROMPT] * n_p + [seg] * len(resp))
        for resp, seg in ((c, SEGMENT_CHOSEN), (r, SEGMENT_REJECTED))
    ]


def _batch_tensors(
    rows: list[tuple[list[int], list[int], list[int]]], pad_id: int, loaded: LoadedModel
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids and positions, and the additive 4D mask [rows, 1, width, width]."""
    width = max(len(ids) for ids, _, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), SEGMENT_PAD, dtype=torch.long)
    for b, (tok, pos, seg) in enumerate(rows):
        ids[b, : len(tok)] = torch.tensor(tok)
        positions[b, : len(pos)] = torch.tensor(pos)
        segments[b, : len(seg)] = torch.tensor(seg)
    segments = segments.to(loaded.device)
    query, key = segments[:, :, None], segments[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool, device=loaded.device).tril()
    allowed = causal & (key != SEGMENT_PAD)
    allowed &= ~((query == SEGMENT_REJECTED) & (key == SEGMENT_CHOSEN))
    # Padding queries see themselves only, so no softmax row is empty (NaN-free); they are dropped.
    allowed |= torch.eye(width, dtype=torch.bool, device=loaded.device)
    mask = torch.zeros(allowed.shape, dtype=loaded.dtype, device=loaded.device)
    mask.masked_fill_(~allowed, torch.finfo(loaded.dtype).min)
    return ids.to(loaded.device), positions.to(loaded.device), mask[:, None]


def run_to_layer(
    loaded: LoadedModel,
    layer: int,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """The residual stream after block `layer`; the blocks above and the LM head never run."""
    block = decoder_layers(loaded.model)[layer]

    def stop(_module: Any, _inputs: Any, output: Any) -> None:
        raise _StopForward(output[0] if isinstance(output, tuple) else output)

    handle = block.register_forward_hook(stop)
    try:
        loaded.model.base_model(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
        )
    except _StopForward as stopped:
        return stopped.hidden
    finally:
        handle.remove()
    raise RuntimeError(f"block {layer} of {loaded.name} never ran")


def forward_pairs(
    loaded: LoadedModel, layer: int, pairs: Sequence[TokenizedPair], share_prefix: bool = True
) -> list[PairActs]:
    """Activations of every span of `pairs` (one batch, no length sorting)."""
    rows = [row for pair in pairs for row in _rows(pair, share_prefix)]
    pad_id = loaded.tokenizer.pad_token_id or 0
    ids, positions, mask = _batch_tensors(rows, pad_id, loaded)
    with torch.inference_mode():
        hidden = run_to_layer(loaded, layer, ids, positions, mask).float()
    out = []
    for i, pair in enumerate(pairs):
        n_p, n_c, n_r = len(pair.prompt), len(pair.chosen), len(pair.rejected)
        if share_prefix:
            seq = hidden[i]
            chosen, rejected = seq[n_p : n_p + n_c], seq[n_p + n_c : n_p + n_c + n_r]
        else:
            seq = hidden[2 * i]
            chosen = seq[n_p : n_p + n_c]
            rejected = hidden[2 * i + 1][n_p : n_p + n_r]
        acts = {"prompt": seq[:n_p], "chosen": chosen, "rejected": rejected}
        out.append(PairActs(index=i, acts=acts))
    return out


def iter_pair_acts(
    loaded: LoadedModel,
    layer: int,
    pairs: Sequence[TokenizedPair],
    batch_tokens: int,
    share_prefix: bool = True,
) -> Iterator[list[PairActs]]:
    """Length-batched `forward_pairs` over all `pairs`; `index` refers to the position in `pairs`."""
    lengths = [packed_length(p, share_prefix) for p in pairs]
    for batch in length_batches(lengths, batch_tokens):
        results = forward_pairs(loaded, layer, [pairs[i] for i in batch], share_prefix)
        for result in results:
            result.index = batch[result.index]
        yield results
