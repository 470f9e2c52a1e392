"""Does the analysis need more than one machine? `sculpt.analysis.analyze` measured on synthetic
sparse lakes (bench/analyze.py's generator: co-firing groups of 16 features, ~0.8% of features
active per span) up to 65,536 features, then its cost extrapolated to the preprint's size,
260k pairs × 65,536 features.

Each size runs in a fresh process (honest peak memory); the child also counts what the work is
made of, so the fit is on counts, not on N and F:
- nonzeros of span_features (read, global lean, predictive, write all scale with them);
- multiply-adds of the co-firing counts Xᵀ·X of the feature clusters (Σ over samples of
  (active features)² / 2, for the span counts and the discordance counts);
- feature pairs that co-fire at least once (each is scored: normalized MI, the top share).
CPU seconds (summed over threads) = c0 + c1·nonzeros + c2·features + c3·co-firing pairs +
c4·multiply-adds. The measured sizes cannot tell multiply-adds from the rest (at 2k-64k pairs
they are a small share; at 260k pairs a large one), so c4 is calibrated on its own: the feature
graph at 32,768 features with the target's row length (~500 active features a sample, since a
sample's cost is one visit per active feature plus its multiply-adds) over 20k and 60k samples,
where every pair already co-fires and only the counting grows. c0-c3, and peak memory above the
imports = m0 + m1·nonzeros + m2·features + m3·edges kept, are non-negative least squares over the
sizes measured (relative error). At the target every count is known without running it:
nonzeros and multiply-adds grow as N·F and N·F² at a fixed density; a pair co-fires at least
once with probability 1 − exp(−λ), λ ∝ N, so λ measured at the largest N gives the co-firing
pairs at 260k (about every pair, there).

    .venv/bin/python bench/analyze_scale.py                 # N 4k-64k at F 4,096; F to 65,536
    .venv/bin/python bench/analyze_scale.py --quick         # smaller, a minute or two
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sculpt.lake.store import Lake

TARGET_PAIRS, TARGET_FEATURES = 260_000, 65_536
STAGES = ("read", "clusters", "global", "predictive", "write")
FEATURES_PER_GROUP = 16
"""bench/analyze.py fires features in co-firing groups; a fixed group size keeps density fixed."""
SIZES = [
    (4000, 4096),
    (16000, 4096),
    (64000, 4096),
    (2000, 16384),
    (2000, 32768),
    (2000, 65536),
]
"""Pairs N at a fixed width, then width F at a fixed N (what separates ∝ N·F from ∝ F)."""
QUICK = [(1000, 2048), (2000, 2048), (4000, 2048), (1000, 4096), (1000, 8192)]


def load_generator() -> Any:
    """`synthetic_lake` from bench/analyze.py (a script, not a package: load it by path)."""
    path = Path(__file__).with_name("analyze.py")
    spec = importlib.util.spec_from_file_location("bench_analyze", path)
    if spec is None or spec.loader is None:
        sys.exit(f"missing {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_lake


def rss_gb() -> float:
    with open("/proc/self/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return kb / 1024**2


def run_child(root: str, dataset: str) -> None:
    """Analyze once in this fresh process; print stage CPU times, memory and counts as JSON."""
    import sculpt.analysis.analyze as analyze_module
    from sculpt.analysis import clusters
    from sculpt.analysis.config import AnalyzeConfig

    marks: list[tuple[float, float]] = []
    # Stage boundaries from analyze's own progress steps, and the co-firing products counted as
    # they stream by, without touching the product's code paths.
    analyze_module._progress = lambda enabled, name: (  # noqa: SLF001
        lambda step: marks.append((time.perf_counter(), time.process_time()))
    )
    products: list[dict[str, float]] = []
    candidates = clusters._candidate_blocks  # noqa: SLF001

    def counted(x: Any, *args: Any) -> Any:
        per_sample = np.diff(x.tocsr().indptr).astype(np.float64)
        record = {"samples": float(x.shape[0]), "features": float(x.shape[1])}
        record |= {"work": float((per_sample**2).sum() / 2), "pairs": 0.0}
        products.append(record)
        for block in candidates(x, *args):
            record["pairs"] += float(block[3])
            yield block

    clusters._candidate_blocks = counted  # noqa: SLF001
    baseline = rss_gb()
    start = (time.perf_counter(), time.process_time())
    analyze_module.analyze(Lake.open(root), dataset, AnalyzeConfig(), progress=False)
    times = [start, *marks]
    stages = {
        clock: {stage: b[i] - a[i] for stage, a, b in zip(STAGES, times, times[1:], strict=False)}
        for i, clock in enumerate(("wall", "cpu"))
    }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    nonzeros = Lake.open(root).read("span_features", {"dataset": dataset}).num_rows
    print(
        json.dumps(
            {
                "wall": times[-1][0] - start[0],
                "cpu": times[-1][1] - start[1],
                "stages": stages,
                "baseline_gb": baseline,
                "extra_gb": max(peak - baseline, 0.0),
                "nonzeros": nonzeros,
                "products": products,
            }
        )
    )


def measure(root: str, n_pairs: int, n_features: int, synthetic_lake: Any) -> dict[str, Any]:
    dataset = f"n{n_pairs}f{n_features}"
    synthetic_lake(
        Lake.open(root),
        dataset,
        n_pairs,
        n_features,
        n_features // FEATURES_PER_GROUP,
        seed=n_pairs + n_features,
    )
    out = subprocess.run(
        [sys.executable, __file__, "--child", root, dataset],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result |= {"n": n_pairs, "f": n_features}
    pairs = sum(p["pairs"] for p in result["products"])
    print(
        f"N={n_pairs:>6} F={n_features:>6}: {result['cpu']:7.1f} s CPU ({result['wall']:6.1f} s "
        f"wall), +{result['extra_gb']:.2f} GB over {result['baseline_gb']:.2f} GB of imports; "
        f"{result['nonzeros'] / 1e6:.1f}M nonzeros, {pairs / 1e6:.0f}M co-firing pairs | CPU "
        + ", ".join(f"{s} {result['stages']['cpu'].get(s, 0):.1f}" for s in STAGES),
        flush=True,
    )
    return result


COUNTS = ("nonzeros", "features", "multiply-adds", "co-firing pairs", "edges kept")
CPU_TERMS = [0, 1, 3]
"""Fitted CPU terms (the multiply-adds' cost is calibrated on its own)."""
MEMORY_TERMS = [0, 1, 4]


def kept_edges(n_features: float) -> float:
    """Edges the feature graph keeps per product: the top 1% of pairs (at least 4 per feature)."""
    return max(0.01 * n_features * (n_features - 1) / 2, 4 * n_features)


def counts(result: dict[str, Any]) -> np.ndarray:
    """(nonzeros, features, multiply-adds, co-firing pairs, edges kept) of one measured run."""
    products = result["products"]
    return np.array(
        [
            result["nonzeros"],
            result["f"],
            sum(p["work"] for p in products),
            sum(p["pairs"] for p in products),
            sum(kept_edges(p["features"]) for p in products),
        ]
    )


def target_counts(results: list[dict[str, Any]]) -> np.ndarray:
    """The same counts at 260k pairs × 65,536 features, from the densities measured: nonzeros
    per pair·feature and multiply-adds per pair·feature² at the widest run; co-firing pairs
    from λ = −ln(1 − share of pairs co-firing) at the largest N (λ ∝ N)."""
    widest = max(results, key=lambda r: (r["f"], r["n"]))
    n_t, f_t = TARGET_PAIRS, TARGET_FEATURES
    nonzeros = widest["nonzeros"] / (widest["n"] * widest["f"]) * n_t * f_t
    work = sum(p["work"] for p in widest["products"]) / (widest["n"] * widest["f"] ** 2)
    largest = max(results, key=lambda r: (r["n"], -r["f"]))
    pairs = 0.0
    for product in largest["products"]:
        possible = product["features"] * (product["features"] - 1) / 2
        share = min(product["pairs"] / possible, 1 - 1e-12)
        lam = -math.log1p(-share) * n_t / largest["n"]
        live_share = product["features"] / largest["f"]  # features firing ≥ 3 times
        pairs += -math.expm1(-lam) * (live_share * f_t) ** 2 / 2
    edges = len(widest["products"]) * kept_edges(f_t)
    return np.array([nonzeros, f_t, work * n_t * f_t**2, pairs, edges])


def calibrate_products(samples: list[int], n_features: int, active: float) -> float:
    """CPU seconds per multiply-add of the co-firing counts, measured where only they grow: the
    feature graph (`mi_edges`) of synthetic co-firing groups (16 features, as in the lakes) with
    `active` features per sample — the target's row length, since each sample's cost is one
    visit per active feature plus its multiply-adds — over enough samples that every pair
    already co-fires (N·ρ² ≥ 5), so the scoring work is the same at each size. The slope between
    the smallest and the largest sample count is the cost of one multiply-add."""
    from sculpt.analysis import clusters

    rng = np.random.default_rng(0)
    groups = n_features // FEATURES_PER_GROUP
    on = (active - 10) / (groups * FEATURES_PER_GROUP * 0.6)  # 60% of a group's members fire
    clusters.mi_edges(sp.random(50, 50, density=0.2, random_state=0))  # compiled before timing
    points = []
    for n in samples:
        row, group = np.nonzero(rng.random((n, groups)) < on)
        member = (group[:, None] * FEATURES_PER_GROUP + np.arange(FEATURES_PER_GROUP)).ravel()
        row = np.repeat(row, FEATURES_PER_GROUP)
        keep = rng.random(row.size) < 0.6
        row = np.concatenate([row[keep], np.repeat(np.arange(n), 10)])
        col = np.concatenate([member[keep], rng.integers(0, n_features, 10 * n)])
        x = sp.csr_matrix((np.ones(row.size), (row, col)), shape=(n, n_features))
        x.data[:] = 1.0
        work = float((np.diff(x.indptr).astype(np.float64) ** 2).sum() / 2)
        started = time.process_time()
        clusters.mi_edges(x)
        points.append((work, time.process_time() - started))
        print(
            f"  product calibration: {n} samples × {n_features} features, "
            f"{x.nnz / n:.0f} active per sample, {work / 1e9:.1f}G multiply-adds, "
            f"{points[-1][1]:.1f} s CPU",
            flush=True,
        )
    (w0, t0), (w1, t1) = points[0], points[-1]
    return max((t1 - t0) / (w1 - w0), 0.0)


def fit(results: list[dict[str, Any]], what: str, columns: list[int]) -> np.ndarray:
    """Non-negative least squares of `what` on [1, counts[columns]], rows weighted 1/what so
    small runs count as much as large ones (relative error)."""
    from scipy.optimize import nnls

    design = np.array([[1.0, *counts(r)[columns]] for r in results])
    target = np.array([r[what] for r in results])
    weight = 1.0 / np.maximum(target, 1e-3)
    scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
    coef, _ = nnls(design / scale * weight[:, None], target * weight)
    return np.asarray(coef / scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a minute or two)")
    parser.add_argument("--child", nargs=2, metavar=("LAKE", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(*args.child)
        return
    synthetic_lake = load_generator()
    with tempfile.TemporaryDirectory(prefix="sculpt-scale-") as root:
        results = [measure(root, n, f, synthetic_lake) for n, f in (QUICK if args.quick else SIZES)]
    at_target = target_counts(results)
    active = at_target[0] / (3 * TARGET_PAIRS)  # features active per span at the target
    if args.quick:
        per_op = calibrate_products([3_000, 12_000], 8192, active / 4)
    else:
        per_op = calibrate_products([20_000, 60_000], 32768, active)
    for result in results:  # the product's share is known; the rest is fitted
        result["cpu_rest"] = result["cpu"] - per_op * counts(result)[2]
    cpu = fit(results, "cpu_rest", CPU_TERMS)
    memory = fit(results, "extra_gb", MEMORY_TERMS)
    names = ("fixed", *(COUNTS[i] for i in CPU_TERMS), "multiply-adds")
    cpu = np.append(cpu, per_op)
    cpu_terms = cpu * np.array([1.0, *at_target[CPU_TERMS], at_target[2]])
    gb_terms = memory * np.array([1.0, *at_target[MEMORY_TERMS]])
    print(
        f"\nat {TARGET_PAIRS} pairs × {TARGET_FEATURES} features: {at_target[0] / 1e9:.2f}G "
        f"nonzeros, {at_target[2] / 1e12:.2f}T multiply-adds, {at_target[3] / 1e9:.2f}G "
        f"co-firing pairs, {at_target[4] / 1e6:.0f}M edges kept"
    )
    for name, coef, term in zip(names, cpu, cpu_terms, strict=True):
        print(f"  CPU {name:16} {coef:10.3g} s each → {term / 60:7.1f} min")
    memory_names = ("fixed", *(COUNTS[i] for i in MEMORY_TERMS))
    for name, coef, term in zip(memory_names, memory, gb_terms, strict=True):
        print(f"  memory {name:13} {coef:10.3g} GB each → {term:7.1f} GB")
    worst = max(abs(fit_error(r, cpu, memory)) for r in results)
    print(f"  (largest relative error of the fit on a measured run: {worst:.0%})")
    gb = sum(gb_terms) + max(r["baseline_gb"] for r in results)
    print(
        f"preprint scale ({TARGET_PAIRS // 1000}k pairs × {TARGET_FEATURES:,} features): "
        f"{sum(cpu_terms) / 60:.0f} min, {gb:.1f} GB peak"
    )


def fit_error(result: dict[str, Any], cpu: np.ndarray, memory: np.ndarray) -> float:
    """Relative error of the CPU fit on one measured run."""
    row = counts(result)
    predicted = cpu @ np.array([1.0, *row[CPU_TERMS], row[2]])
    return float(predicted / result["cpu"] - 1)


if __name__ == "__main__":
    main()
