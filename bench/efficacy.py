"""Does shaping stop DPO from learning a planted trait? HH-RLHF, SmolLM2-135M, LoRA, on CPU.

A trait ("Absolutely!" opener) is planted into a known share of chosen responses. Then plain DPO
and shaped DPO (reward shaping, filter, CAFT ablation) train with the same seed and steps, and each
checkpoint (base → DPO → shaped) is measured on held-out prompts: the trait's rate in greedy
generations, the log-prob margin of the trait-bearing over the trait-free continuation, and the
capability proxy (held-out preference accuracy, NLL of chosen). Goal: DPO raises the trait; shaping
and filtering keep it near base while capability moves < 2 points.

Run: .venv/bin/python bench/efficacy.py [--quick] [--steps N] [--pairs N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

import pyarrow as pa
import torch

from sculpt.data.ingest import ingest
from sculpt.lake.store import Lake
from sculpt.plan.compile import compile_plan
from sculpt.plan.decisions import Decision, record
from sculpt.plan.plan import Intervention, Plan, save_plan
from sculpt.scan.models import decoder_layers, load_model
from sculpt.scan.run import encode_pair_tokens
from sculpt.testing.plant import PLANTABLE, plant
from sculpt.train.config import build_config
from sculpt.train.evaluate import capability, generate, response_logps
from sculpt.train.metrics import summarize
from sculpt.train.run import in_holdout, train_run

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
TRAIT = "absolutely"
CONCEPT = f"lex:{TRAIT}"
DATASET = "hh-planted"
HOLDOUT = 0.2


def short_pairs(lake: Lake, tokenizer, n: int, seed: int, max_prompt: int, max_response: int):
    rows = lake.sql("select * from pairs where dataset = 'hh' order by row").to_pylist()
    random.Random(seed).shuffle(rows)
    out = []
    for row in rows:
        prompt = json.loads(row["prompt"])
        if len(prompt) != 1:  # single-turn prompts keep sequences short
            continue
        ids, prompt_len = encode_pair_tokens(tokenizer, prompt, row["chosen"])
        _, rej_len = encode_pair_tokens(tokenizer, prompt, row["rejected"])
        if (
            prompt_len <= max_prompt
            and 4 <= len(ids) - prompt_len <= max_response
            and (rej_len <= max_prompt + max_response)
        ):
            out.append(row)
        if len(out) == n:
            break
    return out


def planted_lake(root: Path, tokenizer, args) -> tuple[Lake, list[dict], list[dict]]:
    """Ingest HH, plant the trait into a share of chosen responses, write concept scores."""
    lake = Lake.open(root)
    ingest(lake, HH, "hh")
    originals = short_pairs(
        lake, tokenizer, args.pairs, args.seed, args.max_prompt, args.max_response
    )
    planted, _ = plant(originals, TRAIT, args.rate, seed=args.seed)
    lake.replace_partition("pairs", {"dataset": DATASET}, pa.Table.from_pylist(planted))
    spec = PLANTABLE[TRAIT]
    scores = [
        {
            "concept_id": CONCEPT,
            "pair_id": p["pair_id"],
            "side": side,
            "score": float(spec.detects(p[side])),
        }
        for p in planted
        for side in ("chosen", "rejected")
    ]
    lake.replace_partition(
        "concept_span_scores",
        {"dataset": DATASET, "family": "lexical"},
        pa.Table.from_pylist(scores),
    )
    return lake, planted, originals


@torch.no_grad()
def trait_direction(model, tokenizer, planted, originals, layer: int) -> torch.Tensor:
    """Difference of mean residual (block `layer` output, response tokens) with vs without the trait."""
    seen: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output) -> None:
        seen["h"] = output[0] if isinstance(output, tuple) else output

    def mean_act(rows):
        total, count = None, 0
        for row in rows:
            ids, start = encode_pair_tokens(tokenizer, json.loads(row["prompt"]), row["chosen"])
            handle = decoder_layers(model)[layer].register_forward_hook(keep)
            model(input_ids=torch.tensor([ids]))
            handle.remove()
            h = seen["h"][0, start:].sum(0)
            total = h if total is None else total + h
            count += len(ids) - start
        return total / max(count, 1)

    with_trait = [p for p, o in zip(planted, originals, strict=True) if p["chosen"] != o["chosen"]]
    without = [o for p, o in zip(planted, originals, strict=True) if p["chosen"] != o["chosen"]]
    return mean_act(with_trait[:32]) - mean_act(without[:32])


def plans(
    lake: Lake, folder: Path, direction: torch.Tensor, layer: int, lam: float
) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {"dpo": None}
    record(lake, Decision(DATASET, CONCEPT, "suppress", "reward_shaping", strength=lam))
    out["shaping"] = compile_plan(lake, DATASET, folder / "shaping.yaml").path
    record(lake, Decision(DATASET, CONCEPT, "suppress", "filter", strength=1.0))
    out["filter"] = compile_plan(lake, DATASET, folder / "filter.yaml").path
    torch.save(direction[None, :], folder / "trait_direction.pt")
    ablation = Plan(
        dataset=DATASET,
        interventions=[
            Intervention(
                concept_id="vec:trait",
                method="ablation",
                layer=layer,
                vector_file="trait_direction.pt",
                label="Absolutely! opener",
            )
        ],
    )
    out["ablation"] = save_plan(ablation, folder / "ablation.yaml")
    return out


def measure(
    model, tokenizer, held_planted, held_original, args
) -> dict[str, tuple[float, float, float]]:
    spec = PLANTABLE[TRAIT]
    rng = random.Random(args.seed)

    prompts = [json.loads(p["prompt"]) for p in held_original][: args.eval_prompts]
    texts = generate(model, tokenizer, prompts, args.new_tokens)
    rate = summarize("rate", [float(spec.detects(t)) for t in texts])
    triples = [
        (json.loads(p["prompt"]), spec.apply(p["chosen"], rng), p["chosen"]) for p in held_original
    ]
    bearing = response_logps(model, tokenizer, [(p, b) for p, b, _ in triples])
    free = response_logps(model, tokenizer, [(p, f) for p, _, f in triples])
    margin = summarize("margin", [b[0] - f[0] for b, f in zip(bearing, free, strict=True)])
    acc, nll = capability(model, tokenizer, held_original)
    return {
        m: (x.value, x.ci_lo, x.ci_hi)
        for m, x in (
            ("trait rate", rate),
            ("logp margin", margin),
            ("pref acc", acc),
            ("NLL chosen", nll),
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a couple of minutes: tiny sizes")
    parser.add_argument("--pairs", type=int, default=240)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rate", type=float, default=0.5, help="share of chosen responses planted")
    parser.add_argument("--lam", type=float, default=2.0, help="reward-shaping λ")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--eval-prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--max-prompt", type=int, default=64)
    parser.add_argument("--max-response", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="dpo,shaping,filter,ablation")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.steps, args.batch_size, args.eval_prompts = 48, 6, 2, 8
        args.new_tokens, args.max_prompt, args.max_response = 8, 40, 32
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    base = load_model(None, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="sculpt-efficacy-"))
    lake, planted, originals = planted_lake(tmp / "lake", base.tokenizer, args)
    held = [i for i, p in enumerate(planted) if in_holdout(p["pair_id"], HOLDOUT)]
    held_planted = [planted[i] for i in held]
    held_original = [originals[i] for i in held]
    train_idx = [i for i in range(len(planted)) if i not in set(held)]
    direction = trait_direction(
        base.model,
        base.tokenizer,
        [planted[i] for i in train_idx],
        [originals[i] for i in train_idx],
        args.layer,
    )
    plan_files = plans(lake, tmp, direction, args.layer, args.lam)
    n_planted = sum(PLANTABLE[TRAIT].detects(planted[i]["chosen"]) for i in train_idx)
    print(
        f"{len(train_idx)} training pairs ({n_planted} planted), {len(held)} held out; "
        f"{args.steps} steps × {args.batch_size} pairs, LoRA, lr {args.lr}",
        flush=True,
    )
    results = {"base": measure(base.model, base.tokenizer, held_planted, held_original, args)}
    print(f"[base] {results['base']}", flush=True)
    for name in args.only.split(","):
        config = build_config(
            {
                "dataset": DATASET,
                "plan": str(plan_files[name]) if plan_files[name] else None,
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "learning_rate": args.lr,
                "holdout": HOLDOUT,
                "seed": args.seed,
                "save_steps": 10_000,
                "logging_steps": 5,
                "max_length": args.max_prompt + args.max_response + 8,
                "runs_dir": str(tmp / "runs"),
                "run_id": name,
                "device": "cpu",
            }
        )
        t0 = time.perf_counter()
        run = train_run(config, lake)
        from sculpt.train.evaluate import load_checkpoint

        model, tok = load_checkpoint(run.dir, None, "lora")
        results[name] = measure(model, tok, held_planted, held_original, args)
        print(
            f"[{name}] trained + measured in {time.perf_counter() - t0:.0f}s: {results[name]}",
            flush=True,
        )
    report(results, args, time.perf_counter() - started)


def report(results, args, seconds: float) -> None:
    metrics = ["trait rate", "logp margin", "pref acc", "NLL chosen"]
    print(f"\nplanted trait: {TRAIT!r} in {args.rate:.0%} of chosen; value [95% bootstrap CI]")
    print(f"{'checkpoint':<11}" + "".join(f"{m:>26}" for m in metrics))
    for name, values in results.items():
        cells = "".join(
            f"{values[m][0]:>9.3f} [{values[m][1]:6.2f},{values[m][2]:6.2f}]" for m in metrics
        )
        print(f"{name:<11}{cells}")
    base_acc = results["base"]["pref acc"][0]
    for name, values in results.items():
        if name == "base":
            continue
        shift = 100 * (values["pref acc"][0] - base_acc)
        print(
            f"{name}: Δ trait rate vs base {values['trait rate'][0] - results['base']['trait rate'][0]:+.3f}, "
            f"Δ margin {values['logp margin'][0] - results['base']['logp margin'][0]:+.2f} nats, "
            f"Δ pref acc {shift:+.1f} points"
        )
    print(f"total {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
