"""Run a (shaped) DPO training job headless and record it reproducibly (DESIGN §5).

The job splits off the held-out pairs (holdout.json, for `sculpt eval`), shapes the rest by the
plan, and fits `ShapedDPOTrainer` with the plan's hooks on the policy; metrics.jsonl,
checkpoints/ (resumable) and final/ (the trained weights) land in the run folder that
core/train/folder.py keeps. Safe under torchrun/accelerate: one run id, bookkeeping on rank 0.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PrinterCallback, TrainerCallback

from sculpt.errors import UserError
from sculpt.lake.store import NAME_MAX, Lake, check_name, slug, write_json_atomic
from sculpt.plan.plan import HOOK_METHODS, Plan
from sculpt.train.config import TrainConfig
from sculpt.train.folder import (
    last_checkpoint,
    log_run,
    prepare_run_dir,
    resumed_config,
    run_dir_of,
    update_run_json,
)


@dataclass
class RunResult:
    run_id: str
    dir: Path
    status: str
    global_step: int
    steps_this_session: int
    metrics: dict[str, Any]


def in_holdout(pair_id: str, share: float) -> bool:
    """A stable split by pair_id hash, the same for every run and seed."""
    return int(hashlib.sha256(pair_id.encode()).hexdigest()[:8], 16) / 16**8 < share


def load_pairs(lake: Lake, dataset: str) -> list[dict[str, Any]]:
    if not lake.has("pairs", {"dataset": dataset}):
        raise UserError(f"dataset {dataset!r}: not in lake {lake.root}; run `sculpt ingest` first")
    return lake.sql(
        "select pair_id, prompt, chosen, rejected from pairs where dataset = ? order by row",
        [dataset],
    ).to_pylist()


def split_pairs(pairs: list[dict[str, Any]], config: TrainConfig) -> tuple[list, list]:
    import random

    train = [p for p in pairs if not in_holdout(p["pair_id"], config.holdout)]
    held = [p for p in pairs if in_holdout(p["pair_id"], config.holdout)]
    if config.max_pairs is not None and len(train) > config.max_pairs:
        train = random.Random(config.seed).sample(train, config.max_pairs)
    return train, held


def new_run_id(config: TrainConfig) -> str:
    kind = slug(Path(config.plan).stem) if config.plan else "baseline"
    return f"{config.dataset}-{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"[:NAME_MAX]


def train_run(
    config: TrainConfig,
    lake: Lake,
    resume: str | None = None,
    callbacks: list[Any] | None = None,
    pairs: list[dict[str, Any]] | None = None,
) -> RunResult:
    """Train (or resume) one run; `pairs` overrides the lake's pairs (benchmarks).

    Under a multi-process launch (torchrun, accelerate launch) every rank calls this: they share
    the main process's run id, and only the main process writes the run folder and the lake.
    """
    checkpoint = None
    if resume is not None:
        run_dir = run_dir_of(resume, config.runs_dir)
        config = resumed_config(run_dir)
        checkpoint = last_checkpoint(run_dir)
    elif not config.dataset:
        raise UserError("train: no dataset; pass --dataset NAME or set `dataset:` in the config")
    state = _process_state(config)
    if resume is None:  # the main process's timestamp names the run for every rank
        run_id = check_name(_broadcast(config.run_id or new_run_id(config)), "run_id")
        config = dataclasses.replace(config, run_id=run_id)
        run_dir = Path(config.runs_dir) / run_id
    _main_first(state, lambda: prepare_run_dir(run_dir, config, lake, fresh=resume is None))
    plan = prepare_run_dir(run_dir, config, lake, fresh=False)  # the run folder's copy
    all_pairs = pairs if pairs is not None else load_pairs(lake, config.dataset)
    train, held = split_pairs(all_pairs, config)
    run_id = str(config.run_id)

    def log(status: str, metrics: dict[str, Any]) -> None:
        if state.is_main_process:
            log_run(lake, run_id, status, config, plan, run_dir, metrics)

    if state.is_main_process:
        write_json_atomic([p["pair_id"] for p in held], run_dir / "holdout.json")
    log("started", {})
    try:
        result = _fit(config, plan, train, run_dir, checkpoint, callbacks or [], state)
    except KeyboardInterrupt:
        log("interrupted", {})
        raise
    except Exception as exc:
        log("failed", {"error": str(exc)[:500]})
        raise
    result.run_id = run_id
    log(result.status, result.metrics)
    return result


def _process_state(config: TrainConfig) -> Any:
    """accelerate's process state, made before the run folder so the ranks can agree on it.

    Under a distributed launch this joins the process group (nccl on GPU, gloo on CPU) that the
    Trainer then reuses; a plain single-process run gets a no-op state.
    """
    import torch
    from accelerate import PartialState

    # accelerate only forms a CPU process group (gloo) when told the run is on CPU
    on_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    return PartialState(cpu=on_cpu)


def _broadcast(value: Any) -> Any:
    """The main process's `value` on every rank (itself when there is one process)."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def _main_first(state: Any, work: Callable[[], Any]) -> None:
    """Run `work` on the main process while the other ranks wait; if it fails, they all fail."""
    failure = None
    if state.is_main_process:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 — re-raised below, after telling the other ranks
            failure = exc
    message = _broadcast(None if failure is None else str(failure))
    if failure is not None:
        raise failure
    if message is not None:
        raise UserError(message)


def _fit(
    config: TrainConfig,
    plan: Plan | None,
    train: list[dict[str, Any]],
    run_dir: Path,
    checkpoint: Path | None,
    callbacks: list[Any],
    state: Any,
) -> RunResult:
    from datasets import Dataset

    from sculpt.plan.shaping import shape_pairs
    from sculpt.train.trainer import ShapedDPOTrainer

    rows, summary = shape_pairs(train, plan)
    if not rows:
        raise UserError("train: the plan filters out every pair; lower a filter's strength")
    if state.is_main_process:
        update_run_json(run_dir, {"shaping": dataclasses.asdict(summary), "n_train": len(rows)})
    loaded, ref_model = _load_models(config, state)
    hooks = _policy_hooks(loaded.model, plan)
    counter = _StepCounter(run_dir / "metrics.jsonl")
    trainer = ShapedDPOTrainer(
        model=loaded.model,
        ref_model=ref_model,
        args=_dpo_args(config, run_dir, loaded.device.type),
        train_dataset=Dataset.from_list(
            [{k: v for k, v in r.items() if k != "pair_id"} for r in rows]
        ),
        processing_class=loaded.tokenizer,
        peft_config=_lora(config),
        callbacks=[counter, *callbacks],
        policy_hooks=hooks,
    )
    trainer.remove_callback(PrinterCallback)  # _StepCounter prints one line per log instead
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        if hooks is not None:
            hooks.remove()
    step = trainer.state.global_step
    status = "finished" if step >= config.max_steps else "interrupted"
    if status == "finished":
        trainer.save_model(str(run_dir / "final"))  # every rank calls it; the main one writes
        if state.is_main_process:
            loaded.tokenizer.save_pretrained(str(run_dir / "final"))
    metrics = {"global_step": step, "steps_this_session": counter.steps, **output.metrics}
    if state.is_main_process:
        update_run_json(run_dir, {"status": status, "metrics": metrics})
    return RunResult("", run_dir, status, step, counter.steps, metrics)


def _load_models(config: TrainConfig, state: Any) -> tuple[Any, Any]:
    from sculpt.scan.models import TINY_MODEL, load_model

    device: str | None = None if config.device == "auto" else config.device
    if state.use_distributed and state.device.type == "cuda" and config.device != "cpu":
        device = str(state.device)  # this rank's GPU, cuda:$LOCAL_RANK
    dtype = None if config.dtype == "auto" else config.dtype
    loaded = load_model(config.model, device=device, dtype=dtype)
    if config.model == TINY_MODEL:  # the tiny model is shared within a process: train a copy
        loaded = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
    loaded.model.train()
    ref_model = None
    if config.finetune == "full":  # a frozen copy made before any hook is attached
        ref_model = copy.deepcopy(loaded.model).eval()
    return loaded, ref_model


def _policy_hooks(model: Any, plan: Plan | None) -> Any:
    from sculpt.concepts.vectors import load_direction
    from sculpt.train.hooks import PolicyHooks, ResidualHook

    if plan is None:
        return None
    hooks = []
    for item in plan.interventions:
        if item.method not in HOOK_METHODS:
            continue
        assert item.vector_file is not None and item.layer is not None  # checked by load_plan
        direction = load_direction(plan.resolve(item.vector_file, "vector_file"))
        # Steering explains the concept away when it suppresses (+m·v) and makes the policy
        # compensate for its absence when it amplifies (−m·v).
        magnitude = item.strength if item.action == "suppress" else -item.strength
        hooks.append(
            ResidualHook(item.method, item.layer, direction, magnitude, item.side)  # type: ignore[arg-type]
        )
    return PolicyHooks(model, hooks) if hooks else None


def _lora(config: TrainConfig) -> Any:
    if config.finetune != "lora":
        return None
    from peft import LoraConfig

    targets = [t.strip() for t in config.lora_targets.split(",") if t.strip()]
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=targets,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )


def _dpo_args(config: TrainConfig, run_dir: Path, device_type: str) -> Any:
    import torch
    from trl import DPOConfig

    bf16 = device_type == "cuda" and config.dtype in ("auto", "bfloat16")
    return DPOConfig(
        output_dir=str(run_dir / "checkpoints"),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        beta=config.beta,
        max_length=config.max_length,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device_type == "cpu",
        bf16=bf16 and torch.cuda.is_bf16_supported(),
        fp16=device_type == "cuda" and config.dtype == "float16",
        gradient_checkpointing=config.gradient_checkpointing,
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_num_workers=0,
    )


class _StepCounter(TrainerCallback):  # type: ignore[misc]
    """Counts the optimizer steps run in this session; writes metrics.jsonl; prints log lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:  # each rank gets the same logs: write them once
            return
        record = {"step": state.global_step, "ts": time.time(), **(logs or {})}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        shown = {k: round(v, 4) for k, v in (logs or {}).items() if isinstance(v, float)}
        print(f"step {state.global_step}/{state.max_steps} {json.dumps(shown)}", flush=True)
