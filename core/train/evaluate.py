"""What training changed: base vs plain DPO (baseline) vs shaped DPO on held-out prompts (DESIGN §5).

Per checkpoint: each targeted concept's rate in greedy generations and the log-prob margin of
concept-bearing vs concept-free continuations; off-target concept rates; a capability proxy
(held-out preference accuracy by mean token log-prob, NLL of chosen); and the preprint's check:
every concept the audit tested, scored on the generations (core/train/observed.py), its observed
change set against the audit's predicted Δ (core/train/validity.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.train.metrics import Metric, summarize

Detector = Callable[[str], float]
"""A concept's score on a text (lexical: 1.0 if it fires)."""


# ---- model measurements ------------------------------------------------------------------------


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[dict[str, str]]],
    max_new_tokens: int = 40,
    batch_size: int = 8,
) -> list[str]:
    """Greedy completions (left-padded batches)."""
    from sculpt.scan.run import encode_pair_tokens

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = []
        for prompt in prompts[start : start + batch_size]:
            ids_with_stub, prompt_len = encode_pair_tokens(tokenizer, prompt, "x")
            encoded.append(ids_with_stub[:prompt_len])
        width = max(len(ids) for ids in encoded)
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        out.extend(tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True))
    return out


@torch.no_grad()
def response_logps(
    model: Any,
    tokenizer: Any,
    items: list[tuple[list[dict[str, str]], str]],
    batch_size: int = 8,
    max_length: int = 256,
) -> list[tuple[float, int]]:
    """(sum of response-token log-probs, number of response tokens) for each (prompt, response)."""
    from sculpt.scan.run import encode_pair_tokens

    device = next(model.parameters()).device
    out: list[tuple[float, int]] = []
    for start in range(0, len(items), batch_size):
        encoded = [
            encode_pair_tokens(tokenizer, p, r) for p, r in items[start : start + batch_size]
        ]
        encoded = [(ids[:max_length], min(n, max_length - 1)) for ids, n in encoded]
        width = max(len(ids) for ids, _ in encoded)
        ids = torch.zeros((len(encoded), width), dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        target = torch.zeros_like(ids)
        for row, (seq, prompt_len) in enumerate(encoded):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            target[row, prompt_len : len(seq)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        keep = target[:, 1:].float()
        sums = (token * keep).sum(1).tolist()
        counts = keep.sum(1).long().tolist()
        out.extend(zip(sums, counts, strict=True))
    return out


def measure(
    model: Any,
    tokenizer: Any,
    pairs: list[dict[str, Any]],
    prompts: list[list[dict]],
    detectors: dict[str, Detector],
    contrasts: dict[str, list[tuple[list[dict], str, str]]],
    max_new_tokens: int = 40,
) -> tuple[list[Metric], dict[str, float], list[str]]:
    """All metrics of one checkpoint; also each concept's generation rate and the generations."""
    model.eval()
    texts = generate(model, tokenizer, prompts, max_new_tokens)
    metrics: list[Metric] = []
    rates: dict[str, float] = {}
    for concept_id, detect in detectors.items():
        fired = [float(detect(t) > 0) for t in texts]
        metrics.append(summarize("concept_rate", fired, concept_id))
        rates[concept_id] = float(np.mean(fired)) if fired else float("nan")
    for concept_id, triples in contrasts.items():
        if not triples:
            continue
        bearing = response_logps(model, tokenizer, [(p, b) for p, b, _ in triples])
        free = response_logps(model, tokenizer, [(p, f) for p, _, f in triples])
        margins = [b[0] - f[0] for b, f in zip(bearing, free, strict=True)]
        metrics.append(summarize("concept_logp_margin", margins, concept_id))
    metrics.extend(capability(model, tokenizer, pairs))
    return metrics, rates, texts


def capability(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> list[Metric]:
    """Held-out preference accuracy (mean token log-prob chosen > rejected) and NLL of chosen."""
    wins, nll = preference_wins(model, tokenizer, pairs)
    return [summarize("pref_accuracy", wins), summarize("nll_chosen", nll)]


def preference_wins(
    model: Any, tokenizer: Any, pairs: list[dict[str, Any]]
) -> tuple[list[float], list[float]]:
    """Per pair: 1.0 where chosen has the higher mean token log-prob, and chosen's NLL (paired
    differences between checkpoints need the per-pair values)."""
    prompts = [_messages(p["prompt"]) for p in pairs]
    chosen = response_logps(
        model, tokenizer, list(zip(prompts, [p["chosen"] for p in pairs], strict=True))
    )
    rejected = response_logps(
        model, tokenizer, list(zip(prompts, [p["rejected"] for p in pairs], strict=True))
    )
    wins = [
        float(c[0] / max(c[1], 1) > r[0] / max(r[1], 1))
        for c, r in zip(chosen, rejected, strict=True)
    ]
    return wins, [-c[0] / max(c[1], 1) for c in chosen]


def contrast_triples(
    pairs: list[dict[str, Any]], detect: Detector
) -> list[tuple[list[dict], str, str]]:
    """(prompt, concept-bearing, concept-free) from pairs whose sides disagree on the concept."""
    out = []
    for p in pairs:
        c, r = detect(p["chosen"]) > 0, detect(p["rejected"]) > 0
        if c != r:
            bearing, free = (p["chosen"], p["rejected"]) if c else (p["rejected"], p["chosen"])
            out.append((_messages(p["prompt"]), bearing, free))
    return out


def _messages(prompt: Any) -> list[dict[str, str]]:
    messages = json.loads(prompt) if isinstance(prompt, str) else prompt
    return [{"role": m["role"], "content": m["content"]} for m in messages]


# ---- checkpoints and the command -------------------------------------------------------------


def load_checkpoint(run_dir: Path | None, model_spec: str | None, finetune: str) -> tuple[Any, Any]:
    """The base model (run_dir None) or a run's final weights (LoRA merged)."""
    import copy

    from sculpt.scan.models import TINY_MODEL, load_model

    loaded = load_model(model_spec)
    model = copy.deepcopy(loaded.model) if model_spec == TINY_MODEL else loaded.model
    if run_dir is None:
        return model, loaded.tokenizer
    final = run_dir / "final"
    if not final.exists():
        raise UserError(
            f"run {run_dir.name}: no final weights; finish it with `sculpt train --resume`"
        )
    if finetune == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(final)).merge_and_unload()
    else:
        model = load_model(str(final)).model
    return model.eval(), loaded.tokenizer


def lexical_detectors(lake: Lake, dataset: str, concept_ids: Sequence[str]) -> dict[str, Detector]:
    """Text detectors of the lexical concepts in `concepts` (built-ins even before any audit)."""
    from sculpt.concepts.lexical import BUILTIN
    from sculpt.train.observed import text_detector

    detectors: dict[str, Any] = {
        f"lex:{name}": d for name, d in BUILTIN.items() if name != "length"
    }  # length is a word count, not something that fires or not
    if lake.has("concepts"):
        rows = lake.sql(
            "select concept_id, kind, members, source from concepts "
            "where dataset = ? and kind = 'lexical'",
            [dataset],
        ).to_pylist()
        for row in rows:
            if row["concept_id"] not in detectors and row["concept_id"] != "lex:length":
                found = text_detector(row)
                if found is not None:
                    detectors[row["concept_id"]] = found
    missing = [c for c in concept_ids if c not in detectors]
    if missing:
        print(f"eval: no text detector for {', '.join(missing)} (only lexical concepts are rated)")
    return {cid: _text_detector(d) for cid, d in detectors.items()}


def _text_detector(detector: Any) -> Detector:
    from sculpt.concepts.lexical import score_texts

    return lambda text: float(score_texts([text], {"d": detector})["d"][0])


def to_rows(run_id: str, checkpoint: str, metrics: list[Metric]) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {
            "run_id": run_id,
            "ts": now,
            "checkpoint": checkpoint,
            "metric": m.metric,
            "concept_id": m.concept_id,
            "value": m.value,
            "n": m.n,
            "ci_lo": m.ci_lo,
            "ci_hi": m.ci_hi,
        }
        for m in metrics
    ]


def evaluate_run(
    lake: Lake,
    run: str,
    runs_dir: str = "runs",
    prompts_file: str | None = None,
    baseline: str | None = None,
    n_prompts: int = 48,
    max_new_tokens: int = 40,
) -> list[dict[str, Any]]:
    """Measure base, baseline and this run on the same held-out prompts; each checkpoint's
    metrics, and each audited concept's predicted Δ against its observed change, go to `evals`."""
    import yaml

    from sculpt.train.run import load_pairs
    from sculpt.train.validity import audit_metrics

    run_dir = _find_run(run, runs_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    plan = (
        yaml.safe_load((run_dir / "plan" / "plan.yaml").read_text())
        if (run_dir / "plan" / "plan.yaml").exists()
        else {"interventions": []}
    )
    targeted = sorted({i["concept_id"] for i in plan.get("interventions") or []})
    pairs = load_pairs(lake, config["dataset"])
    held_ids = set(json.loads((run_dir / "holdout.json").read_text()))
    held = [p for p in pairs if p["pair_id"] in held_ids] or pairs[:n_prompts]
    prompts = _prompts(prompts_file, held)[:n_prompts]
    pair_ids = None if prompts_file else [p["pair_id"] for p in held[:n_prompts]]
    detectors = lexical_detectors(lake, config["dataset"], targeted)
    contrasts = {c: contrast_triples(held, detectors[c]) for c in targeted if c in detectors}
    checkpoints: list[tuple[str, Path | None]] = [("base", None)]
    baseline_dir = _baseline_dir(lake, config["dataset"], run_dir, baseline, runs_dir)
    if baseline_dir is not None and baseline_dir.resolve() != run_dir.resolve():
        checkpoints.append(("baseline", baseline_dir))
    checkpoints.append(("shaped" if targeted else "baseline", run_dir))
    measured: dict[str, list[Metric]] = {}
    rates: dict[str, dict[str, float]] = {}
    generations: dict[str, list[str]] = {}
    for name, folder in checkpoints:
        model, tokenizer = load_checkpoint(
            folder, config.get("model"), config.get("finetune", "lora")
        )
        measured[name], rates[name], generations[name] = measure(
            model, tokenizer, held[:n_prompts], prompts, detectors, contrasts, max_new_tokens
        )
        del model
        if name != "base":
            measured[name].extend(
                Metric(
                    "off_target_shift",
                    rates[name][c] - rates["base"][c],
                    len(prompts),
                    float("nan"),
                    float("nan"),
                    c,
                )
                for c in rates[name]
                if c not in targeted
            )
    changed = audit_metrics(
        lake, config["dataset"], generations, prompts, pair_ids, config.get("model")
    )
    rows: list[dict[str, Any]] = []
    for name, metrics in measured.items():
        rows.extend(to_rows(run_dir.name, name, metrics + changed.get(name, [])))
    if rows:
        lake.append_log("evals", rows)
    return rows


def _find_run(run: str, runs_dir: str) -> Path:
    for candidate in (Path(run), Path(runs_dir) / run):
        if (candidate / "config.yaml").exists():
            return candidate
    raise UserError(f"eval {run}: no run folder with config.yaml (looked in {runs_dir}/)")


def _baseline_dir(
    lake: Lake, dataset: str, run_dir: Path, baseline: str | None, runs_dir: str
) -> Path | None:
    """--baseline, else the newest finished run of the dataset with an empty plan."""
    if baseline is not None:
        return _find_run(baseline, runs_dir)
    if not lake.has("runs"):
        return None
    rows = lake.sql(
        "select dir, plan from runs where dataset = ? and status = 'finished' order by ts desc",
        [dataset],
    ).to_pylist()
    for row in rows:
        if not (json.loads(row["plan"] or "{}").get("interventions")):
            folder = Path(row["dir"])
            if (folder / "final").exists():
                return folder
    return None


def _prompts(prompts_file: str | None, held: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    if prompts_file is None:
        return [_messages(p["prompt"]) for p in held]
    out = []
    for number, line in enumerate(Path(prompts_file).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(
                f'{prompts_file}:{number}: not JSON; one {{"prompt": ...}} per line'
            ) from None
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if isinstance(prompt, str):
            out.append([{"role": "user", "content": prompt}])
        elif isinstance(prompt, list):
            out.append(_messages(prompt))
        else:
            raise UserError(f'{prompts_file}:{number}: needs a "prompt" (text or messages)')
    return out
