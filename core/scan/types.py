"""Types shared by the scan modules: the batches sinks receive, the sink protocol, the report
(re-exported by core/scan/run.py; the config is core/scan/config.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from sculpt.lake.store import Lake
from sculpt.scan.forward import PairActs
from sculpt.scan.tokens import SIDES, TokenizedPair


@dataclass
class SpanBatch:
    """Activations of a batch of spans, concatenated token-wise."""

    pair_ids: list[str]
    """One entry per span."""
    sides: list[str]
    """"prompt" | "chosen" | "rejected", one per span."""
    offsets: torch.Tensor
    """int64 [n_spans + 1]; span i's tokens are rows offsets[i]:offsets[i+1]."""
    token_ids: torch.Tensor
    """int64 [total_tokens]."""
    acts: torch.Tensor
    """float32 [total_tokens, d_model] on the model's device: the residual after block `layer`
    (before any final norm, also for the last block)."""


class Sink(Protocol):
    """A concept source fed during the scan (SAE encoder, vector scorer…)."""

    key: str
    """Stable identity (e.g. "sae=<sae_id>"); part of the resume key."""

    def consume(self, batch: SpanBatch) -> None: ...

    def end_shard(self, lake: Lake, shard: int) -> None: ...

    def finish(self, lake: Lake) -> None: ...


@dataclass
class ScanReport:
    """What a scan did, for the summary line and the manifest."""

    dataset: str
    model: str
    layer: int
    key: str
    pairs: int
    shards: int
    tokens: dict[str, int]
    """Tokens scanned per side (after truncation)."""
    truncated_spans: dict[str, int]
    truncated_tokens: dict[str, int]
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    """Fallback kind (plain / split) → pair ids encoded that way."""
    acts_rows: int = 0
    resumed_shards: int = 0
    """Shards already done by an earlier, interrupted run."""
    scanned_pairs: int = 0
    seconds: float = 0.0
    already_done: bool = False
    policy: str = ""
    """The truncation policy in words, e.g. `prompt ≤ 512 keeps its end`."""

    @property
    def pairs_per_s(self) -> float:
        return self.scanned_pairs / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> list[str]:
        lines = [
            f"scanned {self.dataset}: {self.pairs} pairs, {sum(self.tokens.values())} tokens "
            f"({', '.join(f'{s} {n}' for s, n in self.tokens.items())}) through {self.model} "
            f"layer {self.layer}",
            f"truncated{f' ({self.policy})' if self.policy else ''}: "
            + ", ".join(
                f"{s} {self.truncated_spans[s]} spans / {self.truncated_tokens[s]} tokens"
                for s in SIDES
            ),
            f"acts sample: {self.acts_rows} tokens; shards: {self.shards} "
            f"({self.resumed_shards} resumed)",
        ]
        if self.already_done:
            lines.append("already complete with this config: nothing re-run")
        else:
            lines.append(
                f"speed: {self.pairs_per_s:.2f} pairs/s ({self.scanned_pairs} pairs in "
                f"{self.seconds:.1f} s)"
            )
        for kind, ids in sorted(self.fallbacks.items()):
            how = (
                "no chat template: prompts rendered as `role: content` lines"
                if kind == "plain"
                else "chat template broke the prompt prefix: response tokenized on its own"
            )
            lines.append(f"template fallback ({how}): {len(ids)} pairs, e.g. {', '.join(ids[:3])}")
        return lines


def span_batch(pairs: Sequence[TokenizedPair], results: Sequence[PairActs]) -> SpanBatch:
    """The sink-facing form of one forward batch (spans in prompt, chosen, rejected order)."""
    pair_ids, sides, lengths, ids, acts = [], [], [0], [], []
    for result in results:
        pair = pairs[result.index]
        for side in SIDES:
            pair_ids.append(pair.pair_id)
            sides.append(side)
            lengths.append(len(pair.side(side)))
            ids.extend(pair.side(side))
            acts.append(result.acts[side])
    return SpanBatch(
        pair_ids=pair_ids,
        sides=sides,
        offsets=torch.tensor(lengths, dtype=torch.long).cumsum(0),
        token_ids=torch.tensor(ids, dtype=torch.long),
        acts=torch.cat(acts),
    )
