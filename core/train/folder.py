"""The run folder `runs/<run_id>/`: what makes a training run reproducible and resumable.

config.yaml (resolved), plan/ (the plan and its sidecars, copied), run.json (package versions,
git commit, lake snapshot id, shaping summary, status, final metrics), checkpoints/; and the
`runs` log rows written when a run starts and ends.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from sculpt.environment import installed_versions
from sculpt.errors import UserError
from sculpt.lake.store import Lake, write_json_atomic
from sculpt.plan.plan import Plan, load_plan
from sculpt.train.config import TrainConfig, build_config, to_dict


def prepare_run_dir(run_dir: Path, config: TrainConfig, lake: Lake, fresh: bool) -> Plan | None:
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
        plan = copy_plan(plan, run_dir / "plan")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    write_json_atomic(
        {
            "run_id": config.run_id,
            "dataset": config.dataset,
            "lake": str(lake.root.resolve()),
            "lake_snapshot": lake_snapshot(lake, config.dataset),
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "packages": installed_versions(),
            "created": time.time(),
            "status": "started",
        },
        run_dir / "run.json",
    )
    return plan


def copy_plan(plan: Plan, folder: Path) -> Plan:
    """The plan and its sidecars, copied so the run folder alone reproduces the run."""
    from sculpt.plan.plan import save_plan

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


def update_run_json(run_dir: Path, values: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(values)
    write_json_atomic(data, path)


def run_dir_of(resume: str, runs_dir: str) -> Path:
    for candidate in (Path(resume), Path(runs_dir) / resume):
        if (candidate / "config.yaml").exists():
            return candidate
    raise UserError(f"--resume {resume}: no run folder with config.yaml (looked in {runs_dir}/)")


def resumed_config(run_dir: Path) -> TrainConfig:
    import yaml

    return build_config(yaml.safe_load((run_dir / "config.yaml").read_text()), None, str(run_dir))


def last_checkpoint(run_dir: Path) -> Path | None:
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


def log_run(
    lake: Lake,
    run_id: str,
    status: str,
    config: TrainConfig,
    plan: Plan | None,
    run_dir: Path,
    metrics: dict[str, Any],
) -> None:
    from sculpt.plan.plan import plan_to_dict

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
