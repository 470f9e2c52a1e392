"""Does the analysis need more than one machine? `sculpt.analysis.analyze` measured on synthetic sparse lakes
(bench/analyze.py's generator, ~1% of features active per span) along two axes — pairs N at a
fixed SAE width F, and F at a fixed N — then each stage's measured scaling extrapolated to the
preprint's size, 260k pairs × 65,536 features.

Each size runs in a fresh process (honest peak memory). Two extrapolations:
- per stage (read, clusters, global, predictive, write), the log-log slope between the two
  largest sizes of each axis gives t ∝ N^a · F^b (memory above the post-import baseline alike);
- CPU time and memory fitted as c0 + c1·N·F + c2·F² (fixed + ∝ nonzeros + ∝ feature pairs, the
  MI step of the feature clusters), which small sizes cannot hide behind fixed costs.
Read both as orders of magnitude: the sizes measured are 16-65× below the target.

    .venv/bin/python bench/analyze_scale.py                       # N 4k-16k, F 2k-8k
    .venv/bin/python bench/analyze_scale.py --base-pairs 2000 --base-features 1024   # quick
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

from sculpt.lake.store import Lake

TARGET_PAIRS, TARGET_FEATURES = 260_000, 65_536
STAGES = ("read", "clusters", "global", "predictive", "write")
FEATURES_PER_GROUP = 16
"""bench/analyze.py fires features in co-firing groups; a fixed group size keeps density ~1%."""


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
    """Analyze once in this fresh process; print stage times, CPU and memory as JSON."""
    import sculpt.analysis.analyze as analyze_module
    from sculpt.analysis.config import AnalyzeConfig

    marks: list[tuple[float, float]] = []
    # Stage boundaries from analyze's own progress steps (read, clusters, global, predictive,
    # done), without touching its code.
    analyze_module._progress = lambda enabled, name: (  # noqa: SLF001
        lambda step: marks.append((time.perf_counter(), time.process_time()))
    )
    baseline = rss_gb()
    start = (time.perf_counter(), time.process_time())
    analyze_module.analyze(Lake.open(root), dataset, AnalyzeConfig(), progress=False)
    times = [start, *marks]
    stages = {
        clock: dict(
            zip(STAGES, (b[i] - a[i] for a, b in zip(times, times[1:], strict=False)), strict=False)
        )
        for i, clock in enumerate(("wall", "cpu"))
    }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        json.dumps(
            {
                "wall": times[-1][0] - start[0],
                "cpu": times[-1][1] - start[1],
                "stages": stages,
                "baseline_gb": baseline,
                "extra_gb": max(peak - baseline, 0.0),
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
    print(
        f"N={n_pairs:>6} F={n_features:>5}: {result['wall']:6.1f} s wall, "
        f"{result['cpu']:6.1f} s CPU, +{result['extra_gb']:.2f} GB over "
        f"{result['baseline_gb']:.2f} GB of imports | "
        + "CPU "
        + ", ".join(f"{s} {result['stages']['cpu'].get(s, 0):.1f}" for s in STAGES),
        flush=True,
    )
    return result


def slope(small: float, large: float, ratio: float) -> float:
    """Log-log slope, floored at 0 (a stage cannot get cheaper with size)."""
    if small <= 0 or large <= 0:
        return 0.0
    return max(math.log(large / small) / math.log(ratio), 0.0)


def extrapolate(
    clock: str,
    centre: dict[str, Any],
    n_large: dict[str, Any],
    f_large: dict[str, Any],
    n_ratio: float,
    f_ratio: float,
) -> float:
    """Sum over stages of the centre time × each axis ratio ^ that stage's measured slope."""
    total = 0.0
    for stage in STAGES:
        at = centre["stages"][clock].get(stage, 0.0)
        a = slope(at, n_large["stages"][clock].get(stage, 0.0), 2)
        b = slope(at, f_large["stages"][clock].get(stage, 0.0), 2)
        seconds = at * n_ratio**a * f_ratio**b
        total += seconds
        print(f"  {clock:4} {stage:10} a={a:.2f} b={b:.2f}: {at:6.1f} s → {seconds / 60:8.1f} min")
    return total


def additive_fit(points: list[tuple[int, int, dict[str, Any]]], what: str) -> list[float]:
    """Non-negative least squares of `what` = c0 + c1·N·F + c2·F² over the measured sizes, in
    terms at the target size: (fixed, ∝ nonzeros N·F, ∝ feature pairs F²). Unlike a power law,
    a sum keeps a cost that is small now but grows fastest (the F² MI step) from hiding."""
    from scipy.optimize import nnls

    def terms(n: float, f: float) -> np.ndarray:
        return np.array([1.0, n * f / 1e8, f * f / 1e8])

    design = np.array([terms(n, f) for n, f, _ in points])
    coef, _ = nnls(design, np.array([result[what] for _, _, result in points]))
    return list(coef * terms(TARGET_PAIRS, TARGET_FEATURES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-pairs",
        type=int,
        default=8000,
        help="N of the centre point; the N axis is N/2, N, 2N",
    )
    parser.add_argument(
        "--base-features",
        type=int,
        default=4096,
        help="F of the centre point; the F axis is F/2, F, 2F",
    )
    parser.add_argument("--child", nargs=2, metavar=("LAKE", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(*args.child)
        return
    synthetic_lake = load_generator()
    n0, f0 = args.base_pairs, args.base_features
    with tempfile.TemporaryDirectory(prefix="sculpt-scale-") as root:
        centre = measure(root, n0, f0, synthetic_lake)
        n_small, n_large = (
            measure(root, n0 // 2, f0, synthetic_lake),
            measure(root, 2 * n0, f0, synthetic_lake),
        )
        f_small, f_large = (
            measure(root, n0, f0 // 2, synthetic_lake),
            measure(root, n0, 2 * f0, synthetic_lake),
        )
    n_ratio, f_ratio = TARGET_PAIRS / n0, TARGET_FEATURES / f0
    print(
        f"\nextrapolated to {TARGET_PAIRS} pairs × {TARGET_FEATURES} features "
        f"(N ×{n_ratio:.1f}, F ×{f_ratio:.0f}), per stage t ∝ N^a · F^b:"
    )
    totals = {
        clock: extrapolate(clock, centre, n_large, f_large, n_ratio, f_ratio)
        for clock in ("cpu", "wall")
    }
    a = slope(centre["extra_gb"], n_large["extra_gb"], 2)
    b = slope(centre["extra_gb"], f_large["extra_gb"], 2)
    memory = centre["extra_gb"] * n_ratio**a * f_ratio**b + centre["baseline_gb"]
    print(
        f"total ≈ {totals['cpu'] / 3600:.1f} h CPU ({totals['wall'] / 3600:.1f} h wall on this "
        f"shared machine); peak memory ≈ {memory:.0f} GB (memory slopes a={a:.2f} b={b:.2f})"
    )
    points = [
        (n0, f0, centre),
        (n0 // 2, f0, n_small),
        (2 * n0, f0, n_large),
        (n0, f0 // 2, f_small),
        (n0, 2 * f0, f_large),
    ]
    cpu, extra = additive_fit(points, "cpu"), additive_fit(points, "extra_gb")
    print(
        f"additive fit c0 + c1·N·F + c2·F²: ≈ {sum(cpu) / 3600:.1f} h CPU (fixed "
        f"{cpu[0]:.0f} s, N·F {cpu[1] / 60:.0f} min, F² {cpu[2] / 60:.0f} min); memory ≈ "
        f"{sum(extra) + centre['baseline_gb']:.0f} GB (N·F {extra[1]:.0f} GB, F² {extra[2]:.0f} GB)"
    )
    print(
        f"(N axis {n_small['wall']:.0f}/{centre['wall']:.0f}/{n_large['wall']:.0f} s, "
        f"F axis {f_small['wall']:.0f}/{centre['wall']:.0f}/{f_large['wall']:.0f} s wall; "
        "stage slopes use the two largest sizes of each axis)"
    )


if __name__ == "__main__":
    main()
