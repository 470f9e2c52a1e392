"""Whether an SAE fits a scan: it reads one model at one layer, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sculpt.errors import UserError
from sculpt.lake.store import slug


def sae_layer(sae_id: str, info: Mapping[str, Any], layer: int | None) -> int:
    """The SAE's layer; an explicit different `layer` is an error."""
    sae_at = int(info["layer"])
    if layer is not None and int(layer) != sae_at:
        raise UserError(f"--sae {sae_id} reads layer {sae_at}, not --layer {layer}; drop --layer")
    return sae_at


def check_sae_model(sae_id: str, info: Mapping[str, Any], model_name: str) -> None:
    """A UserError unless the SAE was trained on `model_name` (or doesn't say)."""
    expected = info.get("model")
    if expected and slug(str(expected)) != slug(model_name):
        raise UserError(
            f"--sae {sae_id}: trained on {expected}, not {model_name}; pass --model {expected}"
        )
