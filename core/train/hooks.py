"""Residual-stream hooks for the policy during training: CAFT ablation and steering (DESIGN §5).

Hooks sit on one decoder block's output of the *policy* only. With LoRA the reference is the same
module with its adapter disabled, so the trainer runs reference forwards inside `suspended()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from sculpt.scan.models import decoder_layers

Side = Literal["both", "chosen", "rejected"]


def orthonormal_basis(directions: torch.Tensor) -> torch.Tensor:
    """Q [d_model, k] with orthonormal columns spanning the rows of `directions` [k, d_model]."""
    if directions.dim() == 1:
        directions = directions[None, :]
    q, r = torch.linalg.qr(directions.detach().to(torch.float32).T)
    keep = r.diagonal().abs() > 1e-6 * r.diagonal().abs().max().clamp_min(1e-12)
    return q[:, keep]


def ablate(hidden: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """h ← h − (hQ)Qᵀ: remove the span of Q's columns from every position (CAFT)."""
    q = basis.to(hidden.dtype)
    return hidden - (hidden @ q) @ q.T


@dataclass
class ResidualHook:
    """One intervention on the output of decoder block `layer`."""

    kind: Literal["ablation", "steering"]
    layer: int
    direction: torch.Tensor
    """Ablation: directions [k, d_model] (orthonormalised here); steering: a vector [d_model]."""
    magnitude: float = 1.0
    """Steering only: m in h ← h + m·v (v is normalised to unit length)."""
    side: Side = "both"
    """Which sequences of a pair the hook touches (rows of the trainer's [chosen; rejected] batch)."""
    _basis: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "ablation":
            self._basis = orthonormal_basis(self.direction)
        else:
            vector = self.direction.detach().to(torch.float32).reshape(-1)
            self._basis = vector / vector.norm().clamp_min(1e-12)

    def apply(self, hidden: torch.Tensor, row_gate: torch.Tensor | None) -> torch.Tensor:
        basis = self._basis.to(hidden.device)
        if self.kind == "ablation":
            changed = ablate(hidden, basis)
        else:
            changed = hidden + self.magnitude * basis.to(hidden.dtype)
        if row_gate is None:
            return changed
        gate = row_gate.to(hidden.device, hidden.dtype).view(-1, *([1] * (hidden.dim() - 1)))
        return hidden + gate * (changed - hidden)


class PolicyHooks:
    """Forward hooks on the policy's decoder blocks, gated per batch row, suspendable."""

    def __init__(self, model: Any, hooks: list[ResidualHook]) -> None:
        self.hooks = hooks
        self._gates: list[torch.Tensor | None] = [None] * len(hooks)
        self._active = True
        self._handles: list[Any] = []
        layers = decoder_layers(_unwrap(model))
        for index, hook in enumerate(hooks):
            if not 0 <= hook.layer < len(layers):
                raise ValueError(f"hook layer {hook.layer}: model has blocks 0..{len(layers) - 1}")
            self._handles.append(layers[hook.layer].register_forward_hook(self._make(index)))

    def _make(self, index: int) -> Any:
        def forward_hook(module: Any, inputs: Any, output: Any) -> Any:
            if not self._active:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            changed = self.hooks[index].apply(hidden, self._gates[index])
            return (changed, *output[1:]) if isinstance(output, tuple) else changed

        return forward_hook

    def set_pair_gates(self, pair_gates: torch.Tensor | None) -> None:
        """Gates [n_pairs, n_hooks] (1 = in the hook's scope) → row gates for [chosen; rejected]."""
        for index, hook in enumerate(self.hooks):
            if pair_gates is None:
                self._gates[index] = None
                continue
            gate = pair_gates[:, index].float()
            chosen = gate if hook.side in ("both", "chosen") else torch.zeros_like(gate)
            rejected = gate if hook.side in ("both", "rejected") else torch.zeros_like(gate)
            self._gates[index] = torch.cat([chosen, rejected])

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Run the reference (or an evaluation) without the interventions."""
        previous, self._active = self._active, False
        try:
            yield
        finally:
            self._active = previous

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _unwrap(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (hooks go on its blocks)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model
