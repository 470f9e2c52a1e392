"""Benchmark `analyze` on synthetic sparse lakes: N pairs × 4,096 SAE features (~1% density)
in 256 co-firing groups (→ feature clusters). Prints wall time and peak memory per N, the ratio
to the smallest N (linear = N ratio) and the goal (100k pairs in < 2 min and < 8 GB).

    .venv/bin/python bench/analyze.py                    # 25k, 50k, 100k pairs
    .venv/bin/python bench/analyze.py --sizes 2000 5000  # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

from sculpt.lake.store import Lake

GOAL_SECONDS, GOAL_GB = 120.0, 8.0


def synthetic_lake(
    lake: Lake, dataset: str, n_pairs: int, n_features: int, n_groups: int, seed: int
) -> None:
    """Write `pairs` and `span_features` (lake/README.md schemas) for a synthetic dataset.

    Each span turns on each group with prob 1.25% (its features then fire with prob 0.6) plus
    10 background features: ~41 active features per span (1% of 4,096). Features 0–15 (group 0)
    fire more on the chosen side of 8% of pairs, the planted lean.
    """
    rng = np.random.default_rng(seed)
    pair_ids = np.array([f"{i * 0x9E3779B97F4A7C15 % (1 << 64):016x}" for i in range(n_pairs)])
    len_c, len_r = rng.integers(5, 120, n_pairs), rng.integers(5, 120, n_pairs)
    lake.replace_partition(
        "pairs",
        {"dataset": dataset},
        pa.table(
            {
                "pair_id": pair_ids,
                "row": np.arange(n_pairs),
                "prompt": ['[{"role": "user", "content": "q"}]'] * n_pairs,
                "chosen": ["w " * int(k) for k in len_c],
                "rejected": ["w " * int(k) for k in len_r],
                "source": ["bench"] * n_pairs,
                "meta": ["{}"] * n_pairs,
            }
        ),
    )
    group_size = n_features // n_groups
    planted = rng.random(n_pairs) < 0.08
    parts = []
    for side in ("prompt", "chosen", "rejected"):
        for start in range(0, n_pairs, 20000):
            stop = min(start + 20000, n_pairs)
            active = rng.random((stop - start, n_groups)) < 0.0125
            if side == "chosen":
                active[:, 0] |= planted[start:stop]
            span, group = np.nonzero(active)
            feature = (group[:, None] * group_size + np.arange(group_size)[None, :]).ravel()
            span = np.repeat(span, group_size)
            keep = rng.random(span.size) < 0.6
            noise = rng.integers(0, n_features, size=(stop - start) * 10)
            span = np.concatenate([span[keep], np.repeat(np.arange(stop - start), 10)]) + start
            feature = np.concatenate([feature[keep], noise])
            unique = np.unique(span.astype(np.int64) * n_features + feature)
            span, feature = unique // n_features, unique % n_features
            max_act = rng.gamma(2.0, 1.0, unique.size).astype(np.float32)
            freq = rng.uniform(0.005, 0.3, unique.size).astype(np.float32)
            parts.append(
                pa.table(
                    {
                        "pair_id": pa.DictionaryArray.from_arrays(
                            pa.array(span, pa.int32()), pa.array(pair_ids)
                        ),
                        "side": pa.array([side] * unique.size),
                        "feature": pa.array(feature, pa.int32()),
                        "max_act": max_act,
                        "freq": freq,
                        "sum_act": max_act * freq,
                    }
                )
            )
    lake.replace_partition("span_features", {"dataset": dataset, "sae": "bench"}, parts)


def run_child(root: str, dataset: str) -> None:
    """Time one analysis in this (fresh) process and print wall time and peak RSS as JSON."""
    from sculpt.analysis.analyze import analyze
    from sculpt.analysis.config import AnalyzeConfig

    started = time.perf_counter()
    report = analyze(Lake.open(root), dataset, AnalyzeConfig(), progress=False)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_gb = usage.ru_maxrss / 1024**2
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": usage.ru_utime + usage.ru_stime,
                "peak_gb": peak_gb,
                "tested": report.n_tested,
                "significant": report.n_significant,
                "conditional": report.n_conditional,
                "auc": report.auc.get("concepts", (0, 0))[0],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25000, 50000, 100000])
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--groups", type=int, default=256)
    parser.add_argument("--lake", default=None, help="lake folder (default: a temporary one)")
    parser.add_argument(
        "--reuse", action="store_true", help="keep synthetic datasets already in --lake"
    )
    parser.add_argument("--child", nargs=2, metavar=("LAKE", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(*args.child)
        return
    root = args.lake or tempfile.mkdtemp(prefix="sculpt-bench-")
    lake = Lake.open(root)
    results = []
    for n in args.sizes:
        dataset = f"bench{n}"
        started = time.perf_counter()
        done = lake.has("span_features", {"dataset": dataset, "sae": "bench"})
        if not (args.reuse and done):
            synthetic_lake(lake, dataset, n, args.features, args.groups, seed=n)
        made = time.perf_counter() - started
        out = subprocess.run(
            [sys.executable, __file__, "--child", root, dataset],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append((n, result))
        print(
            f"N={n:>7}: analyze {result['wall']:7.1f} s wall, {result['cpu']:7.1f} s CPU, "
            f"peak {result['peak_gb']:5.2f} GB "
            f"(lake written in {made:.0f} s; {result['tested']} concepts tested, "
            f"{result['significant']} q<0.05, {result['conditional']} conditional, "
            f"AUC {result['auc']:.3f})",
            flush=True,
        )
    base_n, base = results[0]
    for n, result in results[1:]:
        print(
            f"N ×{n / base_n:.1f} → wall ×{result['wall'] / base['wall']:.2f}, "
            f"CPU ×{result['cpu'] / base['cpu']:.2f}, "
            f"memory ×{result['peak_gb'] / base['peak_gb']:.2f} (linear = ×{n / base_n:.1f})"
        )
    n, last = results[-1]
    print("(CPU: the whole child process, imports included; wall: analyze() alone)")
    print(
        f"goal at N={n}: {last['wall']:.1f} s / {GOAL_SECONDS:.0f} s = "
        f"{last['wall'] / GOAL_SECONDS:.2f}; {last['peak_gb']:.2f} GB / {GOAL_GB:.0f} GB = "
        f"{last['peak_gb'] / GOAL_GB:.2f}"
    )


if __name__ == "__main__":
    main()
