"""`sculpt plan`, `sculpt train`, `sculpt eval`: decisions → plan → shaped DPO run → what changed."""

from __future__ import annotations

import argparse
from typing import Any

from sculpt.cli.options import add_config_flags, given
from sculpt.cli.output import print_table
from sculpt.lake.datasets import pick_dataset
from sculpt.lake.store import Lake
from sculpt.terminal import visible


def register(add: Any) -> None:
    plan = add(
        "plan",
        "Compile the decisions in force for a dataset into an editable plan.yaml.",
        "sculpt plan demo -o plan.yaml",
    )
    plan.add_argument("dataset", metavar="NAME", help="lake dataset whose decisions to compile")
    plan.add_argument(
        "-o", "--output", default="plan.yaml", metavar="FILE", help="plan file to write"
    )
    plan.set_defaults(func=cmd_plan)

    train = add(
        "train",
        "Run DPO headless: plain (no plan) or shaped by a plan; writes runs/<run_id>/.",
        "sculpt train --config run.yaml --dataset demo --plan plan.yaml --max-steps 60",
    )
    train.add_argument("--config", metavar="FILE", help="YAML file of TrainConfig keys")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run (id or folder)")
    from sculpt.train.config import TrainConfig

    add_config_flags(train, TrainConfig, dest="train")
    train.set_defaults(func=cmd_train)

    evaluate = add(
        "eval",
        "Compare base, plain DPO and a shaped run on held-out prompts, and each audited concept's "
        "observed change with the audit's predicted Δ; rows to the evals log.",
        "sculpt eval demo-plan-20260101-120000 --prompts prompts.jsonl",
    )
    evaluate.add_argument("run", metavar="RUN", help="run id (under --runs-dir) or run folder")
    evaluate.add_argument("--prompts", metavar="FILE", help='JSONL of {"prompt": text or messages}')
    evaluate.add_argument(
        "--baseline", metavar="RUN", help="plain-DPO run to compare (default: newest)"
    )
    evaluate.add_argument("--runs-dir", default="runs", metavar="DIR", help="where run folders are")
    evaluate.add_argument("--n", type=int, default=48, help="held-out prompts to generate from")
    evaluate.add_argument("--max-new-tokens", type=int, default=40, help="greedy tokens per prompt")
    evaluate.set_defaults(func=cmd_eval)


def cmd_plan(args: argparse.Namespace) -> int:
    from sculpt.plan.compile import compile_plan

    lake = Lake.open(args.lake)
    plan = compile_plan(lake, pick_dataset(lake, args.dataset), args.output)
    if not plan.interventions:
        print(
            f"plan {args.output}: no suppress/amplify decisions for {args.dataset}; "
            "training with it is plain DPO (the baseline)"
        )
        return 0
    print_table(
        ["concept", "method", "action", "strength", "scope", "pairs"],
        [
            [i.finding or i.concept_id, i.method, i.action, i.strength, i.scope, i.n_pairs]
            for i in plan.interventions
        ],
    )
    for i in plan.interventions:
        if i.finding:  # a decision on a finding: which member's score drives it, and why
            print(f"  {i.finding} ({visible(i.label, newlines=False)}): {i.driver}")
    print(
        f"wrote {args.output} ({len(plan.interventions)} interventions); "
        f"train with `sculpt train --dataset {args.dataset} --plan {args.output}`"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sculpt.train.config import load_config

    config = load_config(args.config, given(args, "train"))  # a bad key fails before torch loads
    from accelerate import PartialState

    from sculpt.train.run import train_run

    lake = Lake.open(args.lake)
    result = train_run(config, lake, resume=args.resume)
    state = PartialState()
    if state.use_distributed:  # torchrun / accelerate launch: one report, from the main process
        state.wait_for_everyone()
        state.destroy_process_group()
        if not state.is_main_process:
            return 0
    print(
        f"run {result.run_id}: {result.status} at step {result.global_step} "
        f"({result.steps_this_session} this session) → {result.dir}"
    )
    if result.status != "finished":
        print(f"resume with `sculpt train --resume {result.run_id}`")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from sculpt.train.evaluate import evaluate_run
    from sculpt.train.metrics import PER_CONCEPT

    lake = Lake.open(args.lake)
    rows = evaluate_run(
        lake, args.run, args.runs_dir, args.prompts, args.baseline, args.n, args.max_new_tokens
    )
    shown = [r for r in rows if r["metric"] not in PER_CONCEPT]
    print_table(
        ["checkpoint", "metric", "concept", "value", "95% CI", "n"],
        [
            [
                r["checkpoint"],
                r["metric"],
                r["concept_id"] or "",
                round(r["value"], 4),
                f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]",
                r["n"],
            ]
            for r in shown
        ],
    )
    concepts = len({r["concept_id"] for r in rows if r["metric"] == "observed_change"})
    if concepts:
        print(
            f"{concepts} audited concepts: predicted Δ and observed change per checkpoint in "
            "the evals log (metrics predicted_delta, observed_change, observed_change_sd)"
        )
    return 0
