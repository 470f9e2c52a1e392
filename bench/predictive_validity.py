"""Does the audit predict what DPO learns? HH-RLHF, SmolLM2-135M, plain DPO (LoRA), on CPU.

The preprint's central check: audit the preference data (every concept's predicted Δ, chosen −
rejected), train plain DPO on it, generate greedily from the same held-out prompts with the base
and the trained model, score both sets of answers with every concept the audit tested (SAE
features through the audit's SAE at its layer, feature clusters, lexical detectors, n-grams), and
fit observed change against predicted Δ across concepts (both in units of the concept's per-pair
spread in the data). Reported: R² and Spearman ρ with bootstrap intervals over concepts, over
every tested concept and over those with q < 0.05, and the feature-conditioned view.

Run: .venv/bin/python bench/predictive_validity.py [--quick] [--steps N] [--workdir DIR]
(--workdir keeps the lake, so a second run reuses the audit).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
DATASET = "hh"
FITS = (
    ("r2_predicted_observed", "spearman_predicted_observed", "every tested concept"),
    (
        "r2_predicted_observed_significant",
        "spearman_predicted_observed_significant",
        "tested, q < 0.05",
    ),
    (
        "r2_conditional_predicted_observed",
        "spearman_conditional_predicted_observed",
        "feature-conditioned (B_k × T_m)",
    ),
    ("r2_findings_predicted_observed", "spearman_findings_predicted_observed", "findings"),
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, demo data")
    parser.add_argument("--data", type=Path, default=HH, help="preference data file")
    parser.add_argument("--model", default=None, help="model spec (default SmolLM2-135M)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the lake and runs here")
    parser.add_argument("--steps", type=int, default=120, help="DPO optimizer steps")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="LoRA learning rate")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=1000, help="HH-RLHF pairs audited")
    parser.add_argument("--max-prompt", type=int, default=128, help="prompt token cap")
    parser.add_argument("--max-response", type=int, default=96, help="response token cap")
    parser.add_argument("--holdout", type=float, default=0.25, help="share of pairs held out")
    parser.add_argument("--prompts", type=int, default=250, help="held-out prompts to answer")
    parser.add_argument("--new-tokens", type=int, default=40, help="greedy tokens per answer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.steps, args.batch_size = "tiny", 2, 2
        args.prompts, args.new_tokens, args.holdout, args.max_length = 8, 6, 0.3, 96
    return args


def short_pairs(lake, args) -> int:
    """HH-RLHF's pairs whose prompt and responses fit the token caps (a seeded
    sample of `--pairs`), as the dataset the audit and DPO read: short sequences keep the scan,
    DPO and generation within a CPU budget."""
    import json
    import random

    import pyarrow as pa

    from sculpt.data.ingest import ingest
    from sculpt.scan.models import load_model
    from sculpt.scan.run import encode_pair_tokens

    if lake.has("pairs", {"dataset": DATASET}):
        return lake.read("pairs", {"dataset": DATASET}).num_rows
    ingest(lake, args.data, "hh-all")
    tokenizer = load_model(args.model, device="cpu").tokenizer
    rows = lake.read("pairs", {"dataset": "hh-all"}).to_pylist()
    random.Random(args.seed).shuffle(rows)
    kept = []
    for row in rows:
        prompt = json.loads(row["prompt"])
        ids, prompt_len = encode_pair_tokens(tokenizer, prompt, row["chosen"])
        rejected, _ = encode_pair_tokens(tokenizer, prompt, row["rejected"])
        longest = max(len(ids), len(rejected)) - prompt_len
        if prompt_len <= args.max_prompt and 4 <= longest <= args.max_response:
            kept.append({k: v for k, v in row.items() if k != "schema_version"})
        if len(kept) == args.pairs:
            break
    lake.replace_partition("pairs", {"dataset": DATASET}, pa.Table.from_pylist(kept))
    return len(kept)


def _small_sae() -> dict:
    """A 32-feature SAE for the smoke run."""
    from sculpt.sae.config import SaeTrainConfig

    return {"sae_train": SaeTrainConfig(width=32, k=4, epochs=1.0)}


def audit_data(lake, args) -> float:
    from sculpt.audit import AuditConfig, audit

    started = time.perf_counter()
    data = None
    extra: dict = {}
    if args.quick:
        from sculpt.data.demo import write_demo

        data = write_demo(Path(lake.root).parent / "pairs.jsonl", n=40, seed=1)
        extra = _small_sae()
    else:
        n = short_pairs(lake, args)
        print(
            f"data: {n} HH-RLHF pairs (prompt ≤ {args.max_prompt} tokens, "
            f"responses ≤ {args.max_response})",
            flush=True,
        )
    config = AuditConfig(model=args.model, seed=args.seed, device="cpu", progress=False, **extra)
    report = audit(lake, data, DATASET, config)
    print("audit:\n" + "\n".join(report.lines()), flush=True)
    return time.perf_counter() - started


def dpo_config(args, dataset: str, runs: Path, run_id: str, plan: Path | None = None):
    """The DPO (LoRA) run every bench trains: the bench's steps, batch, lr, β, lengths, seed."""
    from sculpt.train.config import build_config

    return build_config(
        {
            "dataset": dataset,
            "plan": str(plan) if plan else None,
            "model": args.model,
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "beta": args.beta,
            "max_length": args.max_length,
            "holdout": args.holdout,
            "seed": args.seed,
            "save_steps": 10_000,
            "logging_steps": max(1, args.steps // 12),
            "runs_dir": str(runs),
            "run_id": run_id,
            "device": "cpu",
        }
    )


def train(lake, args, runs: Path) -> tuple[str, float]:
    from sculpt.train.run import train_run

    run_id = f"dpo-{args.steps}steps-lr{args.lr:g}-seed{args.seed}"
    if (runs / run_id / "final").exists():
        print(f"DPO: reusing {runs / run_id} (same steps, lr and seed)", flush=True)
        return run_id, 0.0
    started = time.perf_counter()
    config = dpo_config(args, DATASET, runs, run_id)
    result = train_run(config, lake)
    print(f"DPO: {result.status} at step {result.global_step}", flush=True)
    return run_id, time.perf_counter() - started


def latest(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The newest row per (metric, concept) of the trained checkpoint."""
    out: dict[tuple[str, str], dict] = {}
    for row in sorted(rows, key=lambda r: r["ts"]):
        if row["checkpoint"] != "base":
            out[(row["metric"], row["concept_id"] or "")] = row
    return out


def report(rows: dict[tuple[str, str], dict], seconds: dict[str, float]) -> str:
    """Print the fits and the strongest predictions; return the last line."""
    print(f"\n{'view':<34}{'concepts':>9}{'R² [95% CI]':>26}{'Spearman ρ [95% CI]':>28}")
    for r2_name, rho_name, label in FITS:
        if (r2_name, "") not in rows:
            continue
        r2, rho = rows[(r2_name, "")], rows[(rho_name, "")]
        print(
            f"{label:<34}{r2['n']:>9}"
            f"{r2['value']:>10.3f} [{r2['ci_lo']:6.3f}, {r2['ci_hi']:6.3f}]"
            f"{rho['value']:>12.3f} [{rho['ci_lo']:6.3f}, {rho['ci_hi']:6.3f}]"
        )
    predicted = {c: r for (m, c), r in rows.items() if m == "predicted_delta"}
    observed = {c: r for (m, c), r in rows.items() if m == "observed_change_sd"}
    strongest = sorted(predicted, key=lambda c: -abs(predicted[c]["value"]))[:10]
    print(f"\n{'concept (strongest predicted)':<34}{'predicted':>10}{'observed [95% CI]':>30}")
    for c in strongest:
        o = observed[c]
        print(
            f"{c[:33]:<34}{predicted[c]['value']:>10.3f}"
            f"{o['value']:>12.3f} [{o['ci_lo']:7.3f}, {o['ci_hi']:7.3f}]"
        )
    times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
    print(f"\ntimes: {times}; total {sum(seconds.values()) / 60:.1f} min")
    head = rows[("r2_predicted_observed", "")]
    return (
        f"R² predicted vs observed: {head['value']:.3f} "
        f"[{head['ci_lo']:.3f}, {head['ci_hi']:.3f}] over {head['n']} concepts"
    )


def main(argv: list[str] | None = None) -> str:
    from sculpt.lake.store import Lake
    from sculpt.train.evaluate import evaluate_run

    args = parse(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sculpt-validity-"))
    work.mkdir(parents=True, exist_ok=True)
    lake = Lake.open(work / "lake")
    runs = work / "runs"
    seconds = {"audit": audit_data(lake, args)}
    run_id, seconds["train"] = train(lake, args, runs)
    started = time.perf_counter()
    rows = evaluate_run(
        lake, run_id, str(runs), n_prompts=args.prompts, max_new_tokens=args.new_tokens
    )
    seconds["eval"] = time.perf_counter() - started
    held = next(r["n"] for r in rows if r["metric"] == "observed_change")
    print(f"eval: {held} held-out prompts × {args.new_tokens} greedy tokens, base vs DPO")
    line = report(latest(rows), seconds)
    print(line, flush=True)
    return line


if __name__ == "__main__":
    main(sys.argv[1:])
