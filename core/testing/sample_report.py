"""A synthetic lake with every table a report reads, for tests and for looking at the report.

`python -m sculpt.testing.sample_report LAKE [--concepts N]` writes it and renders `LAKE/reports/sample.html`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import pyarrow as pa

from sculpt.lake.store import Lake, write_json_atomic
from sculpt.plan import decisions
from sculpt.testing.sample_lake import finding_members, write_findings

WORDS = (
    "the a model answer helps user clear concise detailed safe kind great question steps".split()
)
SAE_ID = "sample-sae"
HOSTILE = '<script>alert(1)</script> "onerror=alert(2) {{ 7*7 }} </script><!--'
"""Injected into pairs, labels and notes by `write_sample(hostile=True)`; must never act as markup."""


def _text(rng: random.Random, n: int, extra: str = "") -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + extra


def write_sample(
    lake: Lake,
    dataset: str = "sample",
    n_pairs: int = 60,
    n_concepts: int = 30,
    hostile: bool = False,
    seed: int = 0,
) -> None:
    """Every report section's table for `dataset`, with planted 'Great question!' and bold concepts."""
    rng = random.Random(seed)
    bad = HOSTILE if hostile else ""
    pair_rows = []
    for i in range(n_pairs):
        opener = "Great question! " if i % 3 == 0 else ""
        pair_rows.append(
            {
                "pair_id": f"{i:016x}",
                "row": i,
                "prompt": json.dumps(
                    [{"role": "user", "content": f"How do I do thing {i}? {bad}"}]
                ),
                "chosen": opener + _text(rng, rng.randint(20, 90), " **bold** " + bad),
                "rejected": _text(rng, rng.randint(10, 60)),
                "source": "sample.jsonl",
                "meta": "{}",
            }
        )
    part = {"dataset": dataset}
    lake.replace_partition("pairs", part, pa.Table.from_pylist(pair_rows))
    lake.replace_partition(
        "rejects",
        part,
        pa.Table.from_pylist(
            [
                {"row": n_pairs + k, "reason": r, "detail": bad, "pair_id": None}
                for k, r in enumerate(["identical", "identical", "empty_response"])
            ],
            schema=pa.schema(
                [
                    ("row", pa.int64()),
                    ("reason", pa.string()),
                    ("detail", pa.string()),
                    ("pair_id", pa.string()),
                ]
            ),
        ),
    )
    _write_scan(lake, dataset, pair_rows)
    _write_concepts(lake, dataset, pair_rows, n_concepts, bad, rng)
    _write_decisions(lake, dataset, bad)
    _write_run(lake, dataset, bad, n_pairs)


def _write_scan(lake: Lake, dataset: str, pairs: list[dict]) -> None:
    spans = []
    for p in pairs:
        for side in ("chosen", "rejected"):
            tokens = [w + " " for w in p[side].split(" ")]
            spans.append(
                {
                    "pair_id": p["pair_id"],
                    "side": side,
                    "n_tokens": len(tokens),
                    "n_truncated": 0,
                    "token_ids": list(range(len(tokens))),
                    "tokens": tokens,
                }
            )
    lake.replace_partition(
        "spans", {"dataset": dataset, "model": "tiny-llama"}, pa.Table.from_pylist(spans)
    )
    acts = pa.table(
        {
            "pair_id": ["0" * 16],
            "side": ["chosen"],
            "pos": pa.array([0], pa.int32()),
            "token_id": pa.array([0], pa.int32()),
            "act": pa.array([[0.0] * 4], pa.list_(pa.float16(), 4)),
        }
    )
    lake.replace_partition("acts", {"dataset": dataset, "model": "tiny-llama", "layer": 2}, acts)
    write_json_atomic(
        {
            "model": "tiny-llama",
            "layer": 2,
            "d_in": 64,
            "d_sae": 256,
            "k": 16,
            "source": "/abs/should/not/leak",
            "quality": {"fve_heldout": 0.83, "l0": 15.2, "dead_fraction": 0.04},
        },
        lake.root / "saes" / SAE_ID / "sculpt.json",
    )


def _write_concepts(
    lake: Lake, dataset: str, pairs: list[dict], n_concepts: int, bad: str, rng: random.Random
) -> None:
    span_features, token_features, features, scores = [], [], [], []
    for p in pairs:
        if p["chosen"].startswith("Great question!"):
            span_features.append(
                {
                    "pair_id": p["pair_id"],
                    "side": "chosen",
                    "feature": 0,
                    "max_act": 3.5,
                    "freq": 0.1,
                    "sum_act": 7.0,
                }
            )
            token_features.append(
                {"pair_id": p["pair_id"], "side": "chosen", "pos": 1, "feature": 0, "act": 3.5}
            )
        scores += [
            {"concept_id": "lex:bold", "pair_id": p["pair_id"], "side": "chosen", "score": 1.0},
            {"concept_id": "lex:bold", "pair_id": p["pair_id"], "side": "rejected", "score": 0.0},
        ]
    ctx = {
        "pair_id": pairs[0]["pair_id"],
        "side": "chosen",
        "pos": 1,
        "text_before": "Great ",
        "token": "question",
        "text_after": "! the model " + bad,
        "act": 3.5,
    }
    for f in range(n_concepts):
        features.append(
            {
                "feature": f,
                "density": 0.01 * (f + 1),
                "mean_act": 1.0,
                "label": f"feature {f} {bad}",
                "label_source": "tokens",
                "top_tokens": json.dumps([["question", 2.1], ["great", 1.7], [bad, 0.5]]),
                "contexts": json.dumps([ctx] * 3),
            }
        )
    lake.replace_partition(
        "span_features", {"dataset": dataset, "sae": SAE_ID}, pa.Table.from_pylist(span_features)
    )
    lake.replace_partition(
        "token_features", {"dataset": dataset, "sae": SAE_ID}, pa.Table.from_pylist(token_features)
    )
    lake.replace_partition("features", {"sae": SAE_ID}, pa.Table.from_pylist(features))
    concepts = [
        {
            "concept_id": "lex:bold",
            "kind": "lexical",
            "members": "[]",
            "label": f"markdown bold {bad}",
            "source": json.dumps({"pattern": r"\*\*[^*]+\*\*"}),
        }
    ]
    lake.replace_partition(
        "concepts", {"dataset": dataset, "family": "lexical"}, pa.Table.from_pylist(concepts)
    )
    lake.replace_partition(
        "concept_span_scores",
        {"dataset": dataset, "family": "lexical"},
        pa.Table.from_pylist(scores),
    )
    _write_hypotheses(lake, dataset, len(pairs), n_concepts, bad, rng)


def _write_hypotheses(
    lake: Lake, dataset: str, n_pairs: int, n_concepts: int, bad: str, rng: random.Random
) -> None:
    hyps = []
    for i in range(n_concepts):
        concept = "lex:bold" if i == 1 else f"sae:{SAE_ID}:{i if i != 1 else 0}"
        lean = "rejected" if i % 4 == 3 else "chosen"
        sign = -1 if lean == "rejected" else 1
        delta = sign * (1.0 / (i + 1) + rng.random() * 0.05)
        hyps.append(
            {
                "hypothesis_id": f"h{i}",
                "scope": "global",
                "concept_id": concept,
                "label": ("flattering opener" if i == 0 else f"concept {i}")
                + (f" {bad}" if i < 3 else ""),
                "kind": "lexical" if concept.startswith("lex") else "sae_feature",
                "data_cluster": None,
                "n": n_pairs,
                "n_in": n_pairs,
                "delta": delta,
                "ci_lo": delta - 0.1,
                "ci_hi": delta + 0.1,
                "d": delta * 1.5,
                "z": delta * 4,
                "p": 0.001 * (i + 1),
                "q": 0.002 * (i + 1),
                "split_half_ok": i % 5 != 4,
                "delta_min": abs(delta) * 0.8,
                "delta_len": delta * 0.9,
                "length_only": i == 5,
                "lean": lean,
                "chosen_rate": 0.33 if i == 0 else 0.5,
                "rejected_rate": 0.0 if i == 0 else 0.4,
                "rank": i + 1,
            }
        )
    hyps.append(
        {
            **hyps[2],
            "hypothesis_id": "c0",
            "scope": "conditional",
            "data_cluster": 1,
            "n_in": 20,
            "rank": 1,
        }
    )
    part = {"dataset": dataset, "analysis": "a1b2c3"}
    lake.replace_partition("hypotheses", part, pa.Table.from_pylist(hyps))
    _write_findings(lake, part, [h for h in hyps if h["scope"] == "global"])
    lake.replace_partition(
        "predictive",
        part,
        pa.Table.from_pylist(
            [
                {
                    "model": "concepts",
                    "auc": 0.81,
                    "auc_sd": 0.03,
                    "top_concepts": json.dumps([[f"sae:{SAE_ID}:0", 1.2], ["lex:bold", 0.7]]),
                },
                {
                    "model": "length",
                    "auc": 0.62,
                    "auc_sd": 0.04,
                    "top_concepts": json.dumps([["lex:length", 0.5]]),
                },
            ]
        ),
    )


def _write_findings(lake: Lake, part: dict[str, str], hyps: list[dict]) -> None:
    """Findings over the global hypotheses: concept 3 repeats the flattering opener (an echo),
    every other concept is a signal of its own."""
    groups: list[list[dict]] = []
    for h in hyps:
        if h["hypothesis_id"] == "h3":
            groups[0].append(h)
        else:
            groups.append([h])
    findings, members = [], []
    for rank, group in enumerate(groups, start=1):
        anchor = group[0]
        finding_id = f"finding:{anchor['concept_id']}"
        share = 0.3 / rank
        sign = -1 if anchor["lean"] == "rejected" else 1
        findings.append(
            {
                "finding_id": finding_id,
                "rank": rank,
                "label": anchor["label"],
                "label_concept": anchor["concept_id"],
                "kinds": ",".join(sorted({h["kind"] for h in group})),
                "members": json.dumps([h["concept_id"] for h in group]),
                "n_members": len(group),
                "lean": anchor["lean"],
                "n": anchor["n"],
                "n_in": anchor["n"] // 2,
                "delta": sign * share,
                "ci_lo": sign * share - 0.05,
                "ci_hi": sign * share + 0.05,
                "d": anchor["d"],
                "z": anchor["z"],
                "p": anchor["p"],
                "q": anchor["q"],
                "split_half_ok": anchor["split_half_ok"],
                "delta_min": share * 0.8,
                "delta_len": sign * share * 0.9,
                "length_only": anchor["length_only"],
                "chosen_share": 0.4 if sign > 0 else 0.4 - share,
                "rejected_share": 0.4 - share if sign > 0 else 0.4,
                "dense": False,
                "template": False,
            }
        )
        members += finding_members(finding_id, group)
    write_findings(lake, part, findings, members)


def _write_decisions(lake: Lake, dataset: str, bad: str) -> None:
    first = decisions.record(
        lake,
        decisions.Decision(
            dataset,
            f"sae:{SAE_ID}:0",
            "suppress",
            "reward_shaping",
            0.5,
            note=f"sycophancy {bad}",
            author="ana",
            ts=time.time() - 60,
        ),
    )
    review = decisions.record(
        lake,
        decisions.Decision(
            dataset, "lex:bold", "review", note="check later", author="ana", ts=time.time() - 30
        ),
    )
    decisions.undo(lake, review)
    del first


def _write_run(lake: Lake, dataset: str, bad: str, n_pairs: int) -> None:
    run_dir = lake.root / "runs" / "run-shaped-1"
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for step in range(1, 41):
            fh.write(
                json.dumps(
                    {
                        "step": step,
                        "loss": 0.69 / (1 + step / 10),
                        "rewards/margins": step / 40,
                        "rewards/accuracies": min(1, 0.5 + step / 60),
                        "shaping/offset": -0.05 * (1 + (step % 5) / 5),
                    }
                )
                + "\n"
            )
    plan = {
        "interventions": [
            {
                "concept_id": f"sae:{SAE_ID}:0",
                "method": "reward_shaping",
                "action": "suppress",
                "strength": 0.5,
                "scope": "all",
                "label": f"flattering opener {bad}",
                "n_pairs": n_pairs,
                "note": bad,
            }
        ]
    }
    lake.append_log(
        "runs",
        [
            {
                "run_id": "run-shaped-1",
                "ts": time.time(),
                "status": "finished",
                "dataset": dataset,
                "config": json.dumps({"beta": 0.1, "lora": True, "out": str(run_dir.resolve())}),
                "plan": json.dumps(plan),
                "dir": str(run_dir.resolve()),
                "metrics": json.dumps({"train_loss": 0.41, "steps": 40}),
            }
        ],
    )
    evals = []
    for cp, rate in (("base", 0.12), ("baseline", 0.31), ("shaped", 0.13)):
        evals.append(
            {
                "run_id": "run-shaped-1",
                "ts": time.time(),
                "checkpoint": cp,
                "metric": "concept_rate",
                "concept_id": f"sae:{SAE_ID}:0",
                "value": rate,
                "n": 200,
                "ci_lo": rate - 0.04,
                "ci_hi": rate + 0.04,
            }
        )
        evals.append(
            {
                "run_id": "run-shaped-1",
                "ts": time.time(),
                "checkpoint": cp,
                "metric": "pref_accuracy",
                "concept_id": None,
                "value": 0.6 + rate / 10,
                "n": 200,
                "ci_lo": None,
                "ci_hi": None,
            }
        )
    lake.append_log("evals", evals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("lake")
    parser.add_argument("--concepts", type=int, default=30)
    parser.add_argument("--hostile", action="store_true")
    args = parser.parse_args()
    from sculpt.reports.render import write_report

    lake = Lake.open(args.lake)
    write_sample(lake, n_concepts=args.concepts, hostile=args.hostile)
    print(write_report(lake, "sample", Path(args.lake) / "reports" / "sample.html"))


if __name__ == "__main__":
    main()
