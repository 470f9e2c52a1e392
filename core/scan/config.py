"""What a scan reads and keeps (`ScanConfig`), and the one rule for the default layer.

Light on purpose (no torch at import): the CLI builds flags from it and the audit nests it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sculpt.scan.tokens import Keep, TemplateMode, Truncation

if TYPE_CHECKING:
    import torch


def default_layer(n_layers: int) -> int:
    """The layer read when none is given: the middle block (the preprint reads mid-depth
    residual streams; 15 of SmolLM2-135M's 30 blocks)."""
    return n_layers // 2


@dataclass
class ScanConfig:
    """What a scan reads and keeps. Every field but `device` is part of the resume key."""

    layer: int | None = None
    """Read the residual stream after this block (0-based); none: the model's middle block
    (`default_layer`: 15 of the default model's 0..29), or the SAE's layer when one is given."""
    max_prompt_tokens: int = 512
    """Cap on prompt tokens (chat template included); the rest is cut and counted."""
    max_response_tokens: int = 512
    """Cap on each response's tokens (end-of-turn included); the rest is cut and counted."""
    prompt_keep: Keep = "end"
    """Which end of a long prompt survives (the end is what the response answers)."""
    response_keep: Keep = "start"
    """Which end of a long response survives."""
    sample_tokens: int = 200_000
    """Token activations kept in `acts` for SAE training (a seeded sample over all spans)."""
    seed: int = 0
    """Seed of the token sample."""
    template: TemplateMode = "auto"
    """chat: the model's chat template (error if none); plain: `role: content` lines; auto: chat
    template if the tokenizer has one, else plain lines (reported)."""
    shard_size: int = 256
    """Pairs per shard: the unit of resumption."""
    batch_tokens: int = 0
    """Padded tokens per forward batch; 0 = auto (2048 on CPU, where a batch's activations then
    stay in cache: 4096 is ~20% slower, 8192 ~45%; 32768 on GPU)."""
    share_prefix: bool = True
    """Compute the shared prompt once per pair (off only to check equivalence)."""
    device: str | None = None
    """cpu, cuda, cuda:N; default cuda if available."""
    dtype: Literal["fp32", "bf16", "fp16"] | None = None
    """fp32, bf16, fp16; default bf16 on GPU, fp32 on CPU."""

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_response_tokens", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1 (got {getattr(self, name)})")
        if self.batch_tokens < 0:
            raise ValueError("batch_tokens must be ≥ 0 (0 picks a size for the device)")
        if self.sample_tokens < 0:
            raise ValueError("sample_tokens must be ≥ 0 (0 writes no acts sample)")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"layer must be ≥ 0 (got {self.layer})")
        if self.prompt_keep not in ("start", "end") or self.response_keep not in ("start", "end"):
            raise ValueError("prompt_keep and response_keep must be 'start' or 'end'")
        if self.template not in ("auto", "chat", "plain"):
            raise ValueError("template must be 'auto', 'chat' or 'plain'")

    def at_layer(self, layer: int) -> ScanConfig:
        """This config reading `layer` (what a scan resolves `layer=None` to)."""
        return dataclasses.replace(self, layer=layer)

    def batch_tokens_for(self, device: torch.device) -> int:
        if self.batch_tokens:
            return self.batch_tokens
        return 32768 if device.type == "cuda" else 2048

    @property
    def truncation(self) -> Truncation:
        return Truncation(
            self.max_prompt_tokens, self.max_response_tokens, self.prompt_keep, self.response_keep
        )
