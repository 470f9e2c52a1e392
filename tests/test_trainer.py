"""ShapedDPOTrainer, policy hooks and run orchestration on the tiny model."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer

from sculpt.lake.store import Lake
from sculpt.scan.models import decoder_layers, tiny_model
from sculpt.train.config import build_config
from sculpt.train.hooks import PolicyHooks, ResidualHook
from sculpt.train.run import train_run
from sculpt.train.trainer import ShapedDPOTrainer

BETA = 0.3


def _rows(n: int = 4, extras: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        row = {
            "prompt": [{"role": "user", "content": f"How do I bake cake number {i}?"}],
            "chosen": [{"role": "assistant", "content": "Mix flour, sugar and eggs. Thank you!"}],
            "rejected": [{"role": "assistant", "content": "I am sorry, but I cannot help."}],
        }
        if extras:
            row.update(weight=1.0 + i, margin_offset=0.7 * (i - 1.5), hook_gates=[])
        rows.append(row)
    return rows


def _args(tmp_path, **kw) -> DPOConfig:
    return DPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        beta=BETA,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        gradient_checkpointing=False,
        **kw,
    )


def _models(perturb: bool = True):
    base = tiny_model().model
    policy, ref = copy.deepcopy(base), copy.deepcopy(base)
    if perturb:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(1)
            for p in policy.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return policy, ref


def _batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def _logps(model, input_ids, attention_mask, completion_mask) -> torch.Tensor:
    """Sum of completion-token log-probs, computed by hand from the logits."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    token = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (token * completion_mask[:, 1:]).sum(dim=1)


def test_extra_columns_survive_trl_column_filtering(tmp_path):
    policy, ref = _models()
    trainer = ShapedDPOTrainer(
        model=policy,
        ref_model=ref,
        args=_args(tmp_path),
        train_dataset=Dataset.from_list(_rows()),
        processing_class=tiny_model().tokenizer,
    )
    batch = _batch(trainer)
    assert set(batch) >= {"input_ids", "completion_mask", "weight", "margin_offset", "hook_gates"}
    assert sorted(batch["weight"].tolist()) == [1.0, 2.0, 3.0, 4.0]


def test_without_shaping_the_loss_is_trls_dpo_loss(tmp_path):
    policy, ref = _models()
    data = Dataset.from_list(_rows(extras=False))
    tok = tiny_model().tokenizer
    plain = DPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(ref),
        args=_args(tmp_path),
        train_dataset=data,
        processing_class=tok,
    )
    shaped = ShapedDPOTrainer(
        model=policy, ref_model=ref, args=_args(tmp_path), train_dataset=data, processing_class=tok
    )
    batch = _batch(plain)
    with torch.no_grad():
        expected = plain.compute_loss(plain.model, dict(batch))
        got = shaped.compute_loss(shaped.model, dict(batch))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_offset_and_weights_follow_the_formula(tmp_path):
    policy, ref = _models()
    trainer = ShapedDPOTrainer(
        model=policy,
        ref_model=ref,
        args=_args(tmp_path),
        train_dataset=Dataset.from_list(_rows()),
        processing_class=tiny_model().tokenizer,
    )
    batch = _batch(trainer)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
    ids, mask, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    pc, pr = _logps(policy, ids, mask, comp).chunk(2)
    rc, rr = _logps(ref, ids, mask, comp).chunk(2)
    margin = (pc - rc) - (pr - rr)
    assert margin.abs().max() > 1e-3  # the perturbed policy differs from the reference
    w, o = batch["weight"], batch["margin_offset"]
    per_pair = -F.logsigmoid(BETA * margin + o)
    assert loss == pytest.approx(((w * per_pair).sum() / w.sum()).item(), rel=1e-4)
    unshaped = -F.logsigmoid(BETA * margin).mean().item()
    assert abs(loss - unshaped) > 1e-3


def _layer_output(model, layer, input_ids):
    seen = {}
    handle = decoder_layers(model)[layer].register_forward_hook(
        lambda m, i, o: seen.__setitem__("h", (o[0] if isinstance(o, tuple) else o).detach())
    )
    with torch.no_grad():
        model(input_ids=input_ids)
    handle.remove()
    return seen["h"]


def test_ablation_removes_the_projection_on_the_policy_only(tmp_path):
    policy, ref = _models(perturb=False)
    d = policy.config.hidden_size
    directions = torch.randn(2, d, generator=torch.Generator().manual_seed(3))
    hooks = PolicyHooks(policy, [ResidualHook("ablation", 1, directions)])
    trainer = ShapedDPOTrainer(
        model=policy,
        args=_args(tmp_path),
        train_dataset=Dataset.from_list(_rows()),
        processing_class=tiny_model().tokenizer,
        policy_hooks=hooks,
        peft_config=__import__("peft").LoraConfig(
            r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"
        ),
    )
    batch = _batch(trainer)
    ids = batch["input_ids"]
    hidden = _layer_output(trainer.model, 1, ids)
    q, _ = torch.linalg.qr(directions.T)
    assert (hidden @ q).abs().max() < 1e-4
    # The reference (the same module, adapter off) runs without the hook: equal to an unhooked model.
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}
    ref_c, ref_r = trainer._reference_logps(inputs, {})
    expected = _logps(ref, ids, batch["attention_mask"], batch["completion_mask"])
    assert torch.allclose(torch.cat([ref_c, ref_r]), expected, rtol=1e-4)
    hooked = _logps(trainer.model, ids, batch["attention_mask"], batch["completion_mask"])
    assert (hooked - expected).abs().max() > 0.1


def test_steering_adds_m_v_to_gated_rows():
    model = copy.deepcopy(tiny_model().model)
    d = model.config.hidden_size
    v = torch.randn(d, generator=torch.Generator().manual_seed(5))
    ids = torch.randint(3, 300, (4, 7), generator=torch.Generator().manual_seed(6))
    before = _layer_output(model, 2, ids)
    hooks = PolicyHooks(model, [ResidualHook("steering", 2, v, magnitude=2.5, side="chosen")])
    hooks.set_pair_gates(torch.tensor([[1.0], [0.0]]))  # 2 pairs → rows [c0, c1, r0, r1]
    after = _layer_output(model, 2, ids)
    unit = v / v.norm()
    assert torch.allclose(after[0] - before[0], 2.5 * unit.expand_as(before[0]), atol=1e-5)
    for row in (1, 2, 3):  # ungated pair, and rejected rows of a chosen-side hook
        assert torch.allclose(after[row], before[row], atol=1e-6)
    with hooks.suspended():
        assert torch.allclose(_layer_output(model, 2, ids), before, atol=1e-6)
    hooks.remove()


def test_inoculation_reaches_the_policy_but_not_the_reference(tmp_path):
    policy, ref = _models()
    rows = _rows(extras=False)
    for row in rows:
        row["ref_prompt"] = row["prompt"]
        row["prompt"] = [{"role": "user", "content": row["prompt"][0]["content"] + " (be bold)"}]
    tok = tiny_model().tokenizer
    trainer = ShapedDPOTrainer(
        model=policy,
        ref_model=ref,
        args=_args(tmp_path),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    batch = _batch(trainer)
    assert batch["ref_input_ids"].shape[1] < batch["input_ids"].shape[1]
    ref_inputs = {
        "input_ids": batch["ref_input_ids"],
        "attention_mask": batch["ref_attention_mask"],
        "completion_mask": batch["ref_completion_mask"],
    }
    ref_c, ref_r = trainer._reference_logps({}, ref_inputs)
    expected = _logps(
        ref, ref_inputs["input_ids"], ref_inputs["attention_mask"], ref_inputs["completion_mask"]
    )
    assert torch.allclose(torch.cat([ref_c, ref_r]), expected, rtol=1e-4)
    assert batch["completion_mask"].sum() == batch["ref_completion_mask"].sum()


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def _toy_lake(tmp_path, n: int = 16) -> Lake:
    lake = Lake.open(tmp_path / "lake")
    rows = []
    for i in range(n):
        prompt = json.dumps([{"role": "user", "content": f"How do I bake cake {i}?"}])
        rows.append(
            {
                "pair_id": hashlib.sha256(str(i).encode()).hexdigest()[:16],
                "row": i,
                "prompt": prompt,
                "chosen": "Mix flour and eggs. Thank you!",
                "rejected": "I am sorry, I cannot help.",
                "source": "toy",
                "meta": "{}",
            }
        )
    lake.replace_partition("pairs", {"dataset": "toy"}, pa.Table.from_pylist(rows))
    return lake


def test_resume_runs_exactly_the_remaining_steps(tmp_path):
    lake = _toy_lake(tmp_path)
    config = build_config(
        {
            "dataset": "toy",
            "model": "tiny",
            "max_steps": 4,
            "batch_size": 2,
            "save_steps": 2,
            "logging_steps": 1,
            "runs_dir": str(tmp_path / "runs"),
            "run_id": "r1",
            "holdout": 0.2,
        }
    )
    first = train_run(config, lake, callbacks=[_StopAt(2)])
    assert (first.status, first.global_step, first.steps_this_session) == ("interrupted", 2, 2)
    second = train_run(config, lake, resume="r1")
    assert (second.status, second.global_step, second.steps_this_session) == ("finished", 4, 2)
    run_dir = tmp_path / "runs" / "r1"
    assert (run_dir / "final").is_dir() and (run_dir / "config.yaml").exists()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["packages"]["trl"] and info["lake_snapshot"]
    statuses = [r["status"] for r in lake.read("runs").to_pylist()]
    assert statuses.count("finished") == 1 and "interrupted" in statuses
    steps = [
        json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert {1, 2, 3, 4} <= set(steps)


def test_torchrun_with_two_processes_writes_one_run(tmp_path):
    lake = _toy_lake(tmp_path)
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    flags = "--dataset toy --model tiny --max-steps 2 --batch-size 2 --logging-steps 1"
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sculpt.cli.main",
        "train",
    ]
    command += [*flags.split(), "--lake", str(lake.root), "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("finished at step 2") == 1  # one report, from the main process
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "final").is_dir()
    statuses = [(r["run_id"], r["status"]) for r in lake.read("runs").to_pylist()]
    assert sorted(statuses) == [(run_dir.name, "finished"), (run_dir.name, "started")]
    steps = [
        json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps.count(1) == 1 and steps.count(2) == 2  # step 2 log + the end-of-training summary


def test_eval_compares_base_and_the_run_into_the_evals_log(tmp_path):
    from sculpt.train.evaluate import evaluate_run

    lake = _toy_lake(tmp_path)
    config = build_config(
        {
            "dataset": "toy",
            "model": "tiny",
            "max_steps": 1,
            "batch_size": 2,
            "holdout": 0.3,
            "runs_dir": str(tmp_path / "runs"),
            "run_id": "plain",
        }
    )
    train_run(config, lake)
    evaluate_run(lake, "plain", str(tmp_path / "runs"), n_prompts=3, max_new_tokens=3)
    rows = lake.read("evals").to_pylist()
    seen = {(r["checkpoint"], r["metric"]) for r in rows}
    assert {("base", "pref_accuracy"), ("baseline", "nll_chosen"), ("base", "concept_rate")} <= seen
    assert all(r["run_id"] == "plain" for r in rows)
