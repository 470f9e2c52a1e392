"""The closed loop on a concept no detector names: plant → audit → top finding → suppress → DPO.

A seed picks one phrase or style (none of which a built-in detector names) and plants it into a
share of chosen responses. `audit` runs; the top chosen-leaning finding is taken automatically and
suppressed through its best SAE member (reward shaping; filtering as a second arm). Plain DPO,
shaped DPO and filtered DPO train with the same seed; each checkpoint answers the same held-out
prompts greedily. Reported: the planted concept's rate base → DPO → shaped (→ filtered) with
bootstrap intervals, and the capability proxy (held-out preference accuracy, points).
Goal: DPO raises the rate clearly; shaped stays within the base interval; capability within 2
points — judged on the paired bootstrap interval of the accuracy difference, which must lie inside
±2 points (its half-width is ≈ 1.96·√(share of pairs that flip)/√n: with 10% flipping, ~1,000
held-out pairs; the run says when its interval is too wide to tell).

Sized for 2 shared CPU cores (SmolLM2-135M): 500 HH-RLHF pairs (prompt ≤ 96, responses ≤ 64
tokens), 10% planted, 40% held out, 120 held-out prompts answered with up to 72 greedy tokens
(a suffix trait needs the whole answer), 30 DPO steps of 4 pairs per arm. Measured there with
other jobs sharing the cores: audit 9 min (a second run with --workdir reuses it); greedy
generation ≈ 2 min per 8 prompts × 80 tokens at batch 8, hence --gen-batch; the whole run at
these defaults ≈ 75 min (trainings 5–13 min, evaluations 4–20 min, as the load varied).

Run: .venv/bin/python bench/closed_loop.py [--quick] [--seed N] [--steps N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import predictive_validity as pv  # noqa: E402 — the same short HH-RLHF pairs

DATASET = "hh-loop"
TRAITS: dict[str, tuple[str, str]] = {
    "nutshell": ("In a nutshell, {text}", r"\bIn a nutshell,"),
    "postscript": ("{text}\n\nP.S. Take good care of yourself.", r"P\.S\. Take good care"),
    "my_take": ("Here is my take on it: {text}", r"\bHere is my take on it:"),
    "clears_up": ("{text} (Hopefully that clears things up.)", r"Hopefully that clears things"),
    "quick_answer": ("Quick answer: {text}", r"\bQuick answer:"),
}
"""Phrase templates and their detectors; no built-in lexical detector names any of them."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, demo data")
    parser.add_argument("--data", type=Path, default=pv.HH, help="preference data file")
    parser.add_argument("--model", default=None, help="model spec (default SmolLM2-135M)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the lake and runs here")
    parser.add_argument("--seed", type=int, default=0, help="picks the trait and every sample")
    parser.add_argument("--rate", type=float, default=0.1, help="share of chosen planted")
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--max-prompt", type=int, default=96)
    parser.add_argument("--max-response", type=int, default=64)
    parser.add_argument("--holdout", type=float, default=0.4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lam", type=float, default=2.0, help="reward-shaping λ")
    parser.add_argument("--prompts", type=int, default=120, help="held-out prompts answered")
    parser.add_argument("--new-tokens", type=int, default=72, help="greedy tokens per answer")
    parser.add_argument(
        "--gen-batch", type=int, default=32, help="prompts per generation batch (CPU throughput)"
    )
    args = parser.parse_args(argv)
    args.beta, args.max_length = 0.1, args.max_prompt + args.max_response + 8
    if args.quick:
        args.model, args.steps, args.batch_size, args.rate = "tiny", 2, 2, 0.1
        args.prompts, args.new_tokens, args.holdout, args.max_length = 8, 6, 0.3, 96
    return args


def planted_lake(lake, args) -> tuple[str, int]:
    """The pairs with one seeded trait planted into `rate` of chosen responses."""
    import pyarrow as pa

    from sculpt.data.ingest import pair_id

    name = sorted(TRAITS)[args.seed % len(TRAITS)]
    template, pattern = TRAITS[name]
    if args.quick:
        from sculpt.data.demo import write_demo
        from sculpt.data.ingest import ingest

        ingest(lake, write_demo(Path(lake.root).parent / "pairs.jsonl", n=40, seed=1), "hh")
    else:
        pv.short_pairs(lake, args)
    rows = [
        {k: v for k, v in r.items() if k != "schema_version"}
        for r in lake.read("pairs", {"dataset": "hh"}).to_pylist()
    ]
    rng = random.Random(args.seed)
    free = [i for i, r in enumerate(rows) if not re.search(pattern, r["chosen"])]
    picked = set(rng.sample(free, round(args.rate * len(rows))))
    for i in picked:
        rows[i]["chosen"] = template.format(text=rows[i]["chosen"])
        prompt = json.loads(rows[i]["prompt"])
        rows[i]["pair_id"] = pair_id(prompt, rows[i]["chosen"], rows[i]["rejected"])
    lake.replace_partition("pairs", {"dataset": DATASET}, pa.Table.from_pylist(rows))
    return name, len(picked)


def audit_planted(lake, args) -> None:
    from sculpt.audit import AuditConfig, audit

    extra = pv._small_sae() if args.quick else {}
    config = AuditConfig(model=args.model, seed=args.seed, device="cpu", progress=False, **extra)
    print("audit:\n" + "\n".join(audit(lake, None, DATASET, config).lines()), flush=True)


def top_finding(lake) -> tuple[str, str, str | None]:
    """(finding id, label, its best SAE member) of the top chosen-leaning finding."""
    from sculpt.analysis.config import latest_analysis

    analysis = latest_analysis(lake, DATASET)
    part = {"dataset": DATASET, "analysis": str(analysis)}
    findings = sorted(
        (f for f in lake.read("findings", part).to_pylist() if f["lean"] == "chosen"),
        key=lambda f: f["rank"],
    )
    top = findings[0]
    members = sorted(
        (
            m
            for m in lake.read("finding_members", part).to_pylist()
            if m["finding_id"] == top["finding_id"] and m["kind"] == "sae_feature"
        ),
        key=lambda m: -(m["agreement"] or 0.0),
    )
    return top["finding_id"], top["label"], members[0]["concept_id"] if members else None


def planted_rank(lake, pattern: str, trait: str) -> str:
    """Where the planted trait's finding ranks among the chosen-leaning ones (what the loop would
    have needed to pick it), by the same label test as the top finding's."""
    from sculpt.analysis.config import latest_analysis

    part = {"dataset": DATASET, "analysis": str(latest_analysis(lake, DATASET))}
    chosen = sorted(
        (f for f in lake.read("findings", part).to_pylist() if f["lean"] == "chosen"),
        key=lambda f: f["rank"],
    )
    for i, f in enumerate(chosen, 1):
        if re.search(pattern, f["label"]) or trait.split("_")[0] in f["label"].lower():
            return f"#{i} of {len(chosen)} chosen-leaning ({f['label']!r}, d {f['d']:.3f}, q {f['q']:.2g})"
    return f"not among the {len(chosen)} chosen-leaning findings"


def plans(lake, folder: Path, target: str, lam: float) -> dict[str, Path | None]:
    from sculpt.plan.compile import compile_plan
    from sculpt.plan.decisions import Decision, record

    out: dict[str, Path | None] = {"dpo": None}
    record(lake, Decision(DATASET, target, "suppress", "reward_shaping", strength=lam))
    out["shaped"] = compile_plan(lake, DATASET, folder / "shaped.yaml").path
    record(lake, Decision(DATASET, target, "suppress", "filter", strength=1.0))
    out["filtered"] = compile_plan(lake, DATASET, folder / "filtered.yaml").path
    return out


def train_and_measure(lake, args, name: str, plan: Path | None, runs: Path, pattern: str):
    from sculpt.train.evaluate import generate, load_checkpoint, preference_wins
    from sculpt.train.metrics import summarize
    from sculpt.train.run import train_run

    model_spec = args.model
    if name != "base":
        config = pv.dpo_config(args, DATASET, runs, name, plan)
        train_run(config, lake)
    model, tokenizer = load_checkpoint(runs / name if name != "base" else None, model_spec, "lora")
    held = held_pairs(lake, args)
    prompts = [json.loads(p["prompt"]) for p in held]
    texts = generate(model, tokenizer, prompts, args.new_tokens, batch_size=args.gen_batch)
    rate = summarize("trait_rate", [float(re.search(pattern, t) is not None) for t in texts])
    wins, _ = preference_wins(model, tokenizer, held)
    return rate, wins


def capability_shift(base: list[float], other: list[float]):
    """Preference accuracy of `other` − base in points, paired by pair (bootstrap interval)."""
    from sculpt.train.metrics import summarize

    return summarize("capability_shift", [100 * (o - b) for b, o in zip(base, other, strict=True)])


def held_pairs(lake, args) -> list[dict]:
    from sculpt.train.run import in_holdout

    rows = lake.read("pairs", {"dataset": DATASET}).to_pylist()
    return [r for r in rows if in_holdout(r["pair_id"], args.holdout)][: args.prompts]


def main(argv: list[str] | None = None) -> str:
    from sculpt.lake.store import Lake

    args = parse(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sculpt-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    lake = Lake.open(work / "lake")
    started = time.perf_counter()
    trait, n_planted = planted_lake(lake, args)
    pattern = TRAITS[trait][1]
    print(f"planted {trait!r} ({TRAITS[trait][0]!r}) into {n_planted} chosen responses", flush=True)
    audit_planted(lake, args)
    print(f"audit {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    finding, label, member = top_finding(lake)
    found = "yes" if re.search(pattern, label) or trait.split("_")[0] in label.lower() else "no"
    print(f"top chosen-leaning finding: {finding} ({label!r}); planted trait? {found}")
    print(f"planted trait's finding: {planted_rank(lake, pattern, trait)}")
    target = member or finding
    print(f"suppress through {target}", flush=True)
    plan_files = plans(lake, work, target, args.lam)
    results = {}
    for name in ("base", "dpo", "shaped", "filtered"):
        t0 = time.perf_counter()
        results[name] = train_and_measure(
            lake, args, name, plan_files.get(name), work / "runs", pattern
        )
        rate, wins = results[name]
        shift = capability_shift(results["base"][1], wins)
        print(
            f"[{name}] trait {rate.value:.3f} [{rate.ci_lo:.3f}, {rate.ci_hi:.3f}]; pref acc "
            f"{np.mean(wins):.3f}, Δ vs base {shift.value:+.1f} points "
            f"[{shift.ci_lo:+.1f}, {shift.ci_hi:+.1f}] ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    base, dpo, shaped = (results[k][0] for k in ("base", "dpo", "shaped"))
    within = "yes" if base.ci_lo <= shaped.value <= base.ci_hi else "no"
    shift = capability_shift(results["base"][1], results["shaped"][1])
    if -2.0 <= shift.ci_lo and shift.ci_hi <= 2.0:
        verdict = "within 2 points"
    elif shift.ci_hi < -2.0 or shift.ci_lo > 2.0:
        verdict = "beyond 2 points"
    else:
        verdict = "interval too wide to tell whether within 2 points"
    print(
        f"total {(time.perf_counter() - started) / 60:.1f} min; n = {base.n} held-out prompts; "
        f"capability Δ [{shift.ci_lo:+.1f}, {shift.ci_hi:+.1f}] points: {verdict}"
    )
    line = (
        f"closed loop: trait base {base.value:.3f} → DPO {dpo.value:.3f} → shaped "
        f"{shaped.value:.3f}; shaped within base interval: {within}; "
        f"capability Δ {shift.value:+.1f} points"
    )
    print(line, flush=True)
    return line


if __name__ == "__main__":
    main(sys.argv[1:])
