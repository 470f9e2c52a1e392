"""How an SAE is trained (`SaeTrainConfig`): light (no torch), so the CLI and the audit build on it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SaeTrainConfig:
    """How to train an SAE on a dataset's sampled activations."""

    layer: int | None = None
    """Layer whose `acts` to read (default: the only layer scanned for this dataset)."""
    model: str | None = None
    """Model partition of `acts` (default: the only model scanned for this dataset)."""
    width: int = 2048
    """Number of SAE features (d_sae)."""
    k: int = 32
    """Mean number of active features per token (BatchTopK)."""
    epochs: float = 5.0
    """Passes over the training tokens."""
    tokens: int | None = None
    """Cap on the number of sampled tokens read from `acts` (default: all)."""
    batch_size: int = 512
    """Tokens per optimizer step."""
    lr: float = 2e-3
    """Adam learning rate (decayed linearly over the last fifth of training)."""
    holdout: float = 0.1
    """Fraction of pairs whose tokens are held out to measure quality."""
    outlier_ratio: float = 10.0
    """Tokens with a norm above this multiple of the median (attention sinks, e.g. the first
    token, ~150× the median in SmolLM2) are left out of training and of encoding."""
    seed: int = 0
    """Seed for the split, the shuffling and the initialisation."""
    device: str | None = None
    """Torch device (default: cuda if available, else cpu)."""

    def __post_init__(self) -> None:
        if self.width < 2 or self.k < 1 or self.k >= self.width:
            raise ValueError(f"width {self.width}, k {self.k}: need 1 <= k < width; lower --k")
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"holdout {self.holdout}: pass a fraction in (0, 0.5), e.g. 0.1")
        if self.epochs <= 0 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
