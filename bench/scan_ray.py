"""Ray scan overhead: the local backend vs the Ray backend with 2 workers, same HH-RLHF pairs.

Both scan the same ingested pairs with the same config into separate temporary lakes. The local
backend uses all cores in one process; the Ray backend starts a local cluster (`ray.init`) with 2
single-core actors, each holding a model replica. On one machine Ray cannot be faster: the point
is its overhead (goal: Ray ≥ 0.8× local pairs/s over the shard loop). Startup (cluster, worker
processes, model loads) is printed apart: it is paid once per cluster, not per pair.

    .venv/bin/python bench/scan_ray.py --pairs 96                 # SmolLM2, layer 15
    .venv/bin/python bench/scan_ray.py --pairs 200 --model tiny   # quick
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from sculpt.data.ingest import ingest
from sculpt.lake.store import Lake
from sculpt.scan.models import load_model
from sculpt.scan.ray_backend import ScanWorkers, scan_ray
from sculpt.scan.run import ScanConfig, scan

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
)
GOAL = 0.8


def ingest_first(lake: Lake, n: int, folder: Path) -> None:
    """The first `n` HH-RLHF records through the real ingest path."""
    sample = folder / "hh.jsonl"
    with gzip.open(DATA, "rt") as fh, open(sample, "w") as out:
        out.writelines(itertools.islice(fh, n))
    ingest(lake, sample, "hh")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--model", default=None, help="'tiny', a folder, or the default SmolLM2")
    parser.add_argument("--layer", type=int, default=None, help="default 15 (tiny: 2)")
    parser.add_argument(
        "--shard-size",
        type=int,
        default=8,
        help="pairs per shard (several shards per worker keep both busy)",
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"missing {DATA}")
    layer = args.layer if args.layer is not None else (2 if args.model == "tiny" else 15)
    config = ScanConfig(layer=layer, shard_size=args.shard_size, device="cpu", dtype="fp32")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lakes = {name: Lake.open(folder / name) for name in ("local", "single", "ray")}
        for lake in lakes.values():
            ingest_first(lake, args.pairs, folder)

        loaded = load_model(args.model, "cpu", "fp32")
        threads = torch.get_num_threads()
        print(
            f"{args.pairs} pairs, {loaded.name}, layer {layer}, shard size {args.shard_size}, "
            f"local: 1 process × {threads} threads; ray: {args.workers} actors × 1 thread"
        )
        local = scan(lakes["local"], "hh", loaded, config, progress=False)
        # One thread, as each Ray actor runs: on a loaded machine torch's threads can contend.
        torch.set_num_threads(1)
        single = scan(lakes["single"], "hh", loaded, config, progress=False)
        torch.set_num_threads(threads)

        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level=logging.WARNING)
        with ScanWorkers(args.model, args.workers, device="cpu", dtype="fp32") as workers:
            workers.card()
            startup = time.perf_counter() - started
            wall = time.perf_counter()
            distributed = scan_ray(
                lakes["ray"], "hh", args.model, config, workers=workers, progress=False
            )
            wall = time.perf_counter() - wall
        ray.shutdown()

    same = (local.key, local.acts_rows) == (distributed.key, distributed.acts_rows)
    print(
        f"local : {local.pairs_per_s:6.2f} pairs/s ({local.scanned_pairs} pairs in "
        f"{local.seconds:.1f} s, {threads} threads)"
    )
    print(
        f"local1: {single.pairs_per_s:6.2f} pairs/s ({single.seconds:.1f} s, 1 thread: "
        f"what one Ray actor can do at best)"
    )
    print(
        f"ray   : {distributed.pairs_per_s:6.2f} pairs/s over the shard loop "
        f"({distributed.seconds:.1f} s); {distributed.scanned_pairs / wall:.2f} pairs/s with "
        f"tokenization and dispatch ({wall:.1f} s); startup {startup:.1f} s once"
    )
    ratio = distributed.pairs_per_s / local.pairs_per_s
    print(
        f"ratio ray/local: {ratio:.2f}x (goal ≥ {GOAL}x) — "
        f"{'met' if ratio >= GOAL else 'NOT met'}; same scan key and acts rows: {same}"
    )
    efficiency = distributed.pairs_per_s / (args.workers * single.pairs_per_s)
    print(
        f"ray / ({args.workers} × local 1-thread): {efficiency:.2f}x — the share of each "
        "actor's time spent scanning rather than on Ray's overhead (noisy on a shared machine)"
    )


if __name__ == "__main__":
    main()
