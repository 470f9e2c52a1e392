"""ShapedDPOTrainer: TRL's DPOTrainer with per-pair weights, margin offsets and policy hooks (DESIGN §5).

The loss per pair is ℓ_i = −log σ(β·Δ_θ + o_i) with o_i = Σ_c λ_c·(s̃⁺_c − s̃⁻_c) (reward shaping),
averaged as L = Σ w_i ℓ_i / Σ w_i (reweighting). With w = 1 and o = 0 it is TRL's sigmoid DPO loss;
`tests/test_trainer.py` checks that equality against the installed TRL, so a TRL change that breaks
it fails loudly. TRL's own pieces are reused: its tokenization, collator, fused LM head and
`compute_ref_log_probs` (reference model or disabled LoRA adapter).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from sculpt.train.hooks import PolicyHooks

SHAPE_COLUMNS = ("weight", "margin_offset", "hook_gates", "ref_prompt_ids")
"""Per-pair columns the trainer keeps through TRL's column filtering."""

_REF_PREFIX = "ref_"
_REF_LOGPS = ("ref_chosen_logps", "ref_rejected_logps")


@dataclass
class ShapedCollator:
    """TRL's preference collator plus the shaping columns (and a reference batch for inoculation)."""

    base: DataCollatorForPreference

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = self.base(examples)
        first = examples[0]
        if "weight" in first:
            batch["weight"] = torch.tensor([float(e["weight"]) for e in examples])
        if "margin_offset" in first:
            batch["margin_offset"] = torch.tensor([float(e["margin_offset"]) for e in examples])
        if "hook_gates" in first:
            batch["hook_gates"] = torch.tensor(
                [list(e["hook_gates"]) for e in examples], dtype=torch.float32
            ).reshape(len(examples), -1)
        if "ref_prompt_ids" in first:
            batch.update(self._reference_batch(examples, batch["completion_mask"]))
        return batch

    def _reference_batch(
        self, examples: list[dict[str, Any]], completion_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The same completions after the un-inoculated prompt, cut to the policy's kept tokens."""
        ref_examples = [{**e, "prompt_ids": e["ref_prompt_ids"]} for e in examples]
        ref = self.base(ref_examples)
        kept = completion_mask.sum(dim=1, keepdim=True)
        ref_mask = ref["completion_mask"] * (ref["completion_mask"].cumsum(dim=1) <= kept)
        return {
            "ref_input_ids": ref["input_ids"],
            "ref_attention_mask": ref["attention_mask"],
            "ref_completion_mask": ref_mask.long(),
        }


class ShapedDPOTrainer(DPOTrainer):
    """Sigmoid DPO with per-pair weights and margin offsets; hooks act on the policy only."""

    def __init__(self, *args: Any, policy_hooks: PolicyHooks | None = None, **kwargs: Any) -> None:
        config = kwargs.get("args")
        if config is not None:
            _check_supported(config)
        super().__init__(*args, **kwargs)
        self.policy_hooks = policy_hooks
        if isinstance(self.data_collator, DataCollatorForPreference):
            self.data_collator = ShapedCollator(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            extra = [c for c in SHAPE_COLUMNS if c not in self._signature_columns]
            self._signature_columns = [*self._signature_columns, *extra]

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, name: str) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, args, name)
        if "ref_prompt" not in dataset.column_names:
            return dataset

        def tokenize_ref_prompt(example: dict[str, Any]) -> dict[str, Any]:
            ids = processing_class.apply_chat_template(
                example["ref_prompt"], add_generation_prompt=True, tokenize=True
            )
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            return {"ref_prompt_ids": list(ids)}

        return dataset.map(tokenize_ref_prompt, desc=f"Tokenizing reference prompts ({name})")

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        mode = "train" if model.training else "eval"
        inputs = dict(inputs)
        weight = inputs.pop("weight", None)
        offset = inputs.pop("margin_offset", None)
        gates = inputs.pop("hook_gates", None)
        ref_inputs = {
            key[len(_REF_PREFIX) :]: inputs.pop(key)
            for key in list(inputs)
            if key.startswith(_REF_PREFIX) and key not in _REF_LOGPS
        }
        if self.policy_hooks is not None:
            self.policy_hooks.set_pair_gates(gates)
        chosen_logps, rejected_logps = self._policy_logps(model, inputs)
        ref_chosen_logps, ref_rejected_logps = self._reference_logps(inputs, ref_inputs)
        logratio_margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
        losses = shaped_dpo_losses(logratio_margin, self.beta, offset)
        loss = weighted_mean(losses, weight)
        self._record(mode, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
        if offset is not None:
            self._metrics[mode]["shaping/offset"].append(offset.float().mean().item())
        if weight is not None:
            self._metrics[mode]["shaping/weight"].append(weight.float().mean().item())
        if return_outputs:
            return loss, {"chosen_logps": chosen_logps, "rejected_logps": rejected_logps}
        return loss

    def _policy_logps(
        self, model: Any, inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=labels,
            fused_lm_head=True,
            use_cache=False,
        )
        shift_mask = completion_mask[:, 1:]
        per_token = outputs.log_probs[:, -shift_mask.size(1) :] * shift_mask
        chosen, rejected = per_token.sum(dim=1).chunk(2, dim=0)
        return chosen, rejected

    def _reference_logps(
        self, inputs: dict[str, Any], ref_inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = ref_inputs or {k: v for k, v in inputs.items() if k not in _REF_LOGPS}
        suspended = self.policy_hooks.suspended() if self.policy_hooks else contextlib.nullcontext()
        with suspended:
            chosen, rejected = self.compute_ref_log_probs(self.ref_model or self.model, batch)
        return chosen, rejected

    def _record(
        self,
        mode: str,
        chosen_logps: torch.Tensor,
        rejected_logps: torch.Tensor,
        ref_chosen_logps: torch.Tensor,
        ref_rejected_logps: torch.Tensor,
    ) -> None:
        """The same reward metrics TRL logs (unshaped β·log-ratios)."""
        chosen_rewards = self.beta * (chosen_logps - ref_chosen_logps).detach()
        rejected_rewards = self.beta * (rejected_logps - ref_rejected_logps).detach()
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(chosen_rewards.mean().item())
        metrics["rewards/rejected"].append(rejected_rewards.mean().item())
        metrics["rewards/accuracies"].append(
            (chosen_rewards > rejected_rewards).float().mean().item()
        )
        metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(chosen_logps.detach().mean().item())
        metrics["logps/rejected"].append(rejected_logps.detach().mean().item())


def shaped_dpo_losses(
    logratio_margin: torch.Tensor, beta: float, offset: torch.Tensor | None
) -> torch.Tensor:
    """ℓ_i = −log σ(β·Δ_θ + o_i) (DESIGN §5, reward shaping)."""
    logits = beta * logratio_margin
    if offset is not None:
        logits = logits + offset.to(logits.device, logits.dtype)
    return -F.logsigmoid(logits)


def weighted_mean(losses: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """L = Σ w_i ℓ_i / Σ w_i (DESIGN §5, reweighting); the plain mean without weights."""
    if weight is None:
        return losses.mean()
    w = weight.to(losses.device, losses.dtype)
    return (w * losses).sum() / w.sum().clamp_min(1e-8)


def _check_supported(config: Any) -> None:
    """The shaped loss is defined for TRL's default sigmoid DPO; say so instead of ignoring options."""
    loss_types = list(getattr(config, "loss_type", ["sigmoid"]) or ["sigmoid"])
    problems = []
    if loss_types != ["sigmoid"]:
        problems.append(f"loss_type={loss_types} (use ['sigmoid'])")
    if getattr(config, "f_divergence_type", "reverse_kl") != "reverse_kl":
        problems.append("f_divergence_type (use 'reverse_kl')")
    if getattr(config, "ld_alpha", None) is not None:
        problems.append("ld_alpha (leave it None)")
    if getattr(config, "use_weighting", False):
        problems.append("use_weighting (per-pair weights come from the plan)")
    if getattr(config, "precompute_ref_log_probs", False):
        problems.append("precompute_ref_log_probs (the reference runs on the fly)")
    if problems:
        raise ValueError("ShapedDPOTrainer does not support " + "; ".join(problems))
