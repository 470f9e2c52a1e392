"""Run a (shaped) DPO training job headless and record it reproducibly (DESIGN §5).

`runs/<run_id>/` holds config.yaml (resolved), plan/ (the plan and its sidecars), run.json
(package versions, git commit, lake snapshot id, shaping summary), holdout.json (pair ids kept
for `sculpt eval`), metrics.jsonl, checkpoints/ (resumable) and final/ (the trained weights).
The `runs` log gets a row when the run starts and when it ends.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from transformers import PrinterCallback, TrainerCallback

from core.errors import UserError
from core.lake import Lake, write_json_atomic
from core.plan import HOOK_METHODS, Plan, load_plan
from core.train_config import TrainConfig, build_config, to_dict

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sae-lens")


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
    kind = Path(config.plan).stem if config.plan else "baseline"
    return f"{config.dataset}-{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


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
        run_dir = _run_dir_of(resume, config.runs_dir)
        config = _resumed_config(run_dir)
        checkpoint = _last_checkpoint(run_dir)
    elif not config.dataset:
        raise UserError("train: no dataset; pass --dataset NAME or set `dataset:` in the config")
    state = _process_state(config)
    if resume is None:  # the main process's timestamp names the run for every rank
        run_id = _broadcast(config.run_id or new_run_id(config))
        config = dataclasses.replace(config, run_id=run_id)
        run_dir = Path(config.runs_dir) / run_id
    _main_first(state, lambda: _prepare_run_dir(run_dir, config, lake, fresh=resume is None))
    plan = _prepare_run_dir(run_dir, config, lake, fresh=False)  # the run folder's copy
    all_pairs = pairs if pairs is not None else load_pairs(lake, config.dataset)
    train, held = split_pairs(all_pairs, config)
    run_id = str(config.run_id)

    def log(status: str, metrics: dict[str, Any]) -> None:
        if state.is_main_process:
            _log_run(lake, run_id, status, config, plan, run_dir, metrics)

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

    from core.shaping import shape_pairs
    from core.trainer import ShapedDPOTrainer

    rows, summary = shape_pairs(train, plan)
    if not rows:
        raise UserError("train: the plan filters out every pair; lower a filter's strength")
    if state.is_main_process:
        _update_run_json(run_dir, {"shaping": dataclasses.asdict(summary), "n_train": len(rows)})
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
        _update_run_json(run_dir, {"status": status, "metrics": metrics})
    return RunResult("", run_dir, status, step, counter.steps, metrics)


def _load_models(config: TrainConfig, state: Any) -> tuple[Any, Any]:
    from core.models import TINY_MODEL, load_model

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
    import torch

    from core.hooks import PolicyHooks, ResidualHook

    if plan is None:
        return None
    hooks = []
    for item in plan.interventions:
        if item.method not in HOOK_METHODS:
            continue
        assert item.vector_file is not None and item.layer is not None  # checked by load_plan
        direction = torch.load(plan.resolve(item.vector_file), map_location="cpu")
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


# ---- the run folder ------------------------------------------------------------------------


def _prepare_run_dir(run_dir: Path, config: TrainConfig, lake: Lake, fresh: bool) -> Plan | None:
    import yaml

    if not fresh:
        plan_file = run_dir / "plan" / "plan.yaml"
        return load_plan(plan_file) if plan_file.exists() else None
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run {run_dir}: exists; pass --resume {config.run_id} or a new --run-id")
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = None
    if config.plan:
        plan = load_plan(config.plan)
        if plan.dataset != config.dataset:
            raise UserError(
                f"plan {config.plan} is for dataset {plan.dataset!r}, not {config.dataset!r}"
            )
        plan = _copy_plan(plan, run_dir / "plan")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    write_json_atomic(
        {
            "run_id": config.run_id,
            "dataset": config.dataset,
            "lake": str(lake.root.resolve()),
            "lake_snapshot": lake_snapshot(lake, config.dataset),
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "packages": package_versions(),
            "created": time.time(),
            "status": "started",
        },
        run_dir / "run.json",
    )
    return plan


def _copy_plan(plan: Plan, folder: Path) -> Plan:
    """The plan and its sidecars, copied so the run folder alone reproduces the run."""
    from core.plan import save_plan

    folder.mkdir(parents=True, exist_ok=True)
    copied = copy.deepcopy(plan)
    if plan.scores_file:
        shutil.copy(plan.resolve(plan.scores_file), folder / Path(plan.scores_file).name)
        copied.scores_file = Path(plan.scores_file).name
    for item, original in zip(copied.interventions, plan.interventions, strict=True):
        if original.vector_file:
            name = Path(original.vector_file).name
            shutil.copy(plan.resolve(original.vector_file), folder / name)
            item.vector_file = name
    save_plan(copied, folder / "plan.yaml")
    return copied


def _update_run_json(run_dir: Path, values: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(values)
    write_json_atomic(data, path)


def _run_dir_of(resume: str, runs_dir: str) -> Path:
    for candidate in (Path(resume), Path(runs_dir) / resume):
        if (candidate / "config.yaml").exists():
            return candidate
    raise UserError(f"--resume {resume}: no run folder with config.yaml (looked in {runs_dir}/)")


def _resumed_config(run_dir: Path) -> TrainConfig:
    import yaml

    return build_config(yaml.safe_load((run_dir / "config.yaml").read_text()), None, str(run_dir))


def _last_checkpoint(run_dir: Path) -> Path | None:
    folders = sorted(
        (p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.name[11:].isdigit()),
        key=lambda p: int(p.name[11:]),
    )
    return folders[-1] if folders else None


def lake_snapshot(lake: Lake, dataset: str) -> str:
    """An id of the lake state the run read: its pairs, concept scores, clusters and decisions."""
    digest = hashlib.sha256()
    for table in ("pairs", "concept_span_scores", "span_features", "clusters", "decisions"):
        for path in lake.files(table):
            if (
                table == "decisions"
                or f"dataset={dataset}" in str(path)
                or table == "span_features"
            ):
                stat = path.stat()
                digest.update(
                    f"{path.relative_to(lake.root)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
                )
    return digest.hexdigest()[:16]


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _log_run(
    lake: Lake,
    run_id: str,
    status: str,
    config: TrainConfig,
    plan: Plan | None,
    run_dir: Path,
    metrics: dict[str, Any],
) -> None:
    from core.plan import plan_to_dict

    lake.append_log(
        "runs",
        [
            {
                "run_id": run_id,
                "ts": time.time(),
                "status": status,
                "dataset": config.dataset,
                "config": json.dumps(to_dict(config)),
                "plan": json.dumps(plan_to_dict(plan) if plan else {}),
                "dir": str(run_dir.resolve()),
                "metrics": json.dumps(metrics, default=float),
            }
        ],
    )
