"""The training run's config: a typed dataclass; YAML sets, `--key value` flags override (DESIGN §5).

Like TRL's `TrlParser`: an unknown key is an error, values are checked against the field types
(Literal choices included), and each field's docstring is its `--help` text.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_type_hints

from sculpt.configs import coerce
from sculpt.errors import UserError
from sculpt.lake.store import check_name


@dataclass
class TrainConfig:
    """One DPO run: data, plan, model, optimisation, bookkeeping."""

    dataset: str = ""
    """Lake dataset whose `pairs` are trained on."""
    plan: str | None = None
    """plan.yaml from `sculpt plan`; none = plain DPO (the baseline)."""
    model: str | None = None
    """Model: none = SmolLM2-135M-Instruct, `tiny`, a local Hugging Face folder or a cached hub id."""
    finetune: Literal["lora", "full"] = "lora"
    """LoRA adapters (peft) or full fine-tuning."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"
    """Comma-separated module names LoRA adapts."""
    beta: float = 0.1
    """DPO temperature β."""
    learning_rate: float = 5e-4
    """Peak learning rate (5e-4 suits LoRA; use ~5e-6 for full fine-tuning)."""
    max_steps: int = 60
    """Optimizer steps; the run stops there (resume continues to it)."""
    batch_size: int = 4
    """Pairs per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 256
    """Max tokens of prompt + response per sequence (longer ones keep their start)."""
    max_pairs: int | None = None
    """Use at most this many training pairs (seeded sample); none = all."""
    holdout: float = 0.1
    """Share of pairs held out from training for `sculpt eval` (split by pair_id hash)."""
    seed: int = 0
    """Seed for sampling, initialisation and data order."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    save_steps: int = 20
    """Write a resumable checkpoint every this many steps."""
    logging_steps: int = 5
    """Log metrics (metrics.jsonl, stdout) every this many steps."""
    gradient_checkpointing: bool = False
    """Trade compute for memory (useful for big models on GPU)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto = cuda when available, else cpu."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto = bf16 on GPU, fp32 on CPU."""
    run_id: str | None = None
    """Name of the run folder; none = <dataset>-<plan|baseline>-<timestamp>."""
    runs_dir: str = "runs"
    """Where run folders are written."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout={self.holdout}: pass a share in [0, 1), e.g. 0.1")
        if self.max_steps <= 0:
            raise ValueError(f"max_steps={self.max_steps}: pass a positive number of steps")
        if self.batch_size <= 0 or self.grad_accum <= 0:
            raise ValueError("batch_size and grad_accum must be positive")
        if self.beta <= 0:
            raise ValueError(f"beta={self.beta}: pass a positive DPO temperature, e.g. 0.1")
        if self.finetune == "lora" and self.lora_r <= 0:
            raise ValueError(f"lora_r={self.lora_r}: pass a positive rank, or finetune: full")
        # both name a folder (runs_dir/<run_id>, the lake's dataset=<name>): a name, never a path
        for key in ("dataset", "run_id"):
            value = getattr(self, key)
            if value:
                try:
                    check_name(value, key)
                except UserError as exc:
                    raise ValueError(str(exc)) from None


def build_config(
    values: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, source: str = "config"
) -> TrainConfig:
    """A TrainConfig from YAML values, then CLI overrides (text); errors name the key and the fix."""
    hints = get_type_hints(TrainConfig)
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    merged: dict[str, Any] = {}
    for origin, mapping, from_text in ((source, values, False), ("flag", overrides or {}, True)):
        for key, value in mapping.items():
            name = key.replace("-", "_")
            if name not in hints:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UserError(f"{origin}: unknown key {key!r}{hint} (known: {', '.join(known)})")
            try:
                merged[name] = coerce(name, value, hints[name], from_text)
            except ValueError as exc:
                raise UserError(f"{origin}: {exc}") from None
    try:
        return TrainConfig(**merged)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from None


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a YAML file (optional) and apply `--key value` overrides."""
    import yaml

    values: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no such config file; pass --config PATH") from None
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(
                f"{path}: expected a mapping of key: value, got {type(loaded).__name__}"
            )
        values = loaded or {}
    return build_config(values, overrides, source)


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
