"""Shaped DPO step vs TRL's plain DPO step on the same batches (forward + backward, LoRA).

Shaped = per-pair weights + margin offsets (+ a CAFT ablation hook on one block, the costliest
intervention). Steps are interleaved so both sides see the same machine load; medians reported.
Goal: ratio ≤ 1.15.

Run: .venv/bin/python bench/train_overhead.py [--model tiny] [--steps 6] [--batch-size 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

import gzip

import torch
from datasets import Dataset
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer

from sculpt.scan.models import load_model
from sculpt.train.hooks import PolicyHooks, ResidualHook
from sculpt.train.trainer import ShapedDPOTrainer

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def hh_rows(n: int) -> list[dict]:
    """Single-turn HH pairs as conversational rows (prompt = the human turn)."""
    rows = []
    with gzip.open(HH, "rt") as fh:
        for line in fh:
            record = json.loads(line)
            parts = record["chosen"].split("\n\nAssistant:")
            rejected = record["rejected"].split("\n\nAssistant:")
            if len(parts) != 2 or len(rejected) != 2:
                continue
            human = parts[0].replace("\n\nHuman:", "").strip()
            rows.append(
                {
                    "prompt": [{"role": "user", "content": human[:300]}],
                    "chosen": [{"role": "assistant", "content": parts[1].strip()[:300]}],
                    "rejected": [{"role": "assistant", "content": rejected[1].strip()[:300]}],
                }
            )
            if len(rows) == n:
                break
    return rows


def trainer_pair(spec: str, batch: int, steps: int, out: Path, hook_layer: int):
    loaded = load_model(spec, device="cpu")
    base = loaded.model
    args = DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        max_length=192,
        gradient_checkpointing=False,
    )
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    rows = hh_rows(batch * (steps + 1) * 2)  # spare rows: TRL drops over-long prompts
    shaped_rows = [
        {**r, "weight": 1.0 + (i % 3) / 2, "margin_offset": 0.3 * (i % 5 - 2), "hook_gates": [1.0]}
        for i, r in enumerate(rows)
    ]
    plain = DPOTrainer(
        model=copy.deepcopy(base),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.tokenizer,
        peft_config=lora,
    )
    policy = copy.deepcopy(base)
    direction = torch.randn(4, loaded.d_model, generator=torch.Generator().manual_seed(0))
    hooks = PolicyHooks(policy, [ResidualHook("ablation", hook_layer, direction)])
    shaped = ShapedDPOTrainer(
        model=policy,
        args=args,
        train_dataset=Dataset.from_list(shaped_rows),
        processing_class=loaded.tokenizer,
        peft_config=lora,
        policy_hooks=hooks,
    )
    return ready(plain), ready(shaped)


def ready(trainer):
    """What `Trainer.train` sets before its first step, so `training_step` can run alone."""
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    return trainer


def batches(trainer, n: int, size: int) -> list[dict]:
    data = trainer.train_dataset
    n = min(n, len(data) // size)
    return [
        trainer.data_collator([data[i] for i in range(k * size, (k + 1) * size)]) for k in range(n)
    ]


def timed_step(trainer, batch: dict) -> float:
    start = time.perf_counter()
    trainer.training_step(trainer.model, dict(batch))
    trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model spec (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--hook-layer", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        plain, shaped = trainer_pair(
            args.model, args.batch_size, args.steps, Path(tmp), args.hook_layer
        )
        plain_batches = batches(plain, args.steps + 1, args.batch_size)
        shaped_batches = batches(shaped, args.steps + 1, args.batch_size)
        assert all(
            torch.equal(p["input_ids"], s["input_ids"])
            for p, s in zip(plain_batches, shaped_batches, strict=True)
        ), "batches differ"
        timed_step(plain, plain_batches[0])  # warm-up, not counted
        timed_step(shaped, shaped_batches[0])
        plain_times, shaped_times = [], []
        for p, s in zip(plain_batches[1:], shaped_batches[1:], strict=True):
            plain_times.append(timed_step(plain, p))
            shaped_times.append(timed_step(shaped, s))
    p_med, s_med = statistics.median(plain_times), statistics.median(shaped_times)
    print(
        f"model {args.model or 'SmolLM2-135M-Instruct'}, LoRA, {args.steps} steps × "
        f"{args.batch_size} pairs, forward + backward (median of interleaved steps)"
    )
    print(f"plain TRL DPOTrainer step        {p_med:8.3f} s  (min {min(plain_times):.3f})")
    print(f"ShapedDPOTrainer step (w, o, CAFT) {s_med:6.3f} s  (min {min(shaped_times):.3f})")
    print(f"ratio shaped / plain = {s_med / p_med:.3f}   (goal ≤ 1.15)")


if __name__ == "__main__":
    main()
