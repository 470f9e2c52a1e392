"""HH-RLHF ingest throughput beside a bare json.loads + pyarrow write of the same file.

Goal: ratio ≥ 0.5 (validation, parsing, hashing and dedup cost at most 2×).
Run: .venv/bin/python bench/ingest.py [--repeat 5] [--file PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sculpt.data.ingest import ingest
from sculpt.lake.store import Lake

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def bare(path: Path, out: Path) -> int:
    """The floor: decompress, json.loads every line, one Arrow table, one Parquet file."""
    with gzip.open(path, "rb") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    pq.write_table(pa.Table.from_pylist(records), out / "bare.parquet", compression="zstd")
    return len(records)


def best_times(
    sides: dict[str, Callable[[], int]], repeat: int
) -> dict[str, tuple[float, float, int]]:
    """Best wall and CPU time per side, the sides interleaved so both see the same load."""
    best: dict[str, tuple[float, float, int]] = {}
    for _ in range(repeat):
        for name, fn in sides.items():
            wall, cpu = time.perf_counter(), time.process_time()
            count = fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            old = best.get(name, (wall, cpu, count))
            best[name] = (min(wall, old[0]), min(cpu, old[1]), count)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=HH)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if not args.file.exists():
        sys.exit(f"{args.file}: missing")
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake.open(Path(tmp) / "lake")
        ingest(lake, args.file, "warmup")  # imports and first-touch costs, on neither side
        best = best_times(
            {
                "bare": lambda: bare(args.file, Path(tmp)),
                "sculpt": lambda: ingest(lake, args.file, "bench").kept,
            },
            args.repeat,
        )
    (t_bare, cpu_bare, n_bare), (t_sculpt, cpu_sculpt, n_kept) = best["bare"], best["sculpt"]
    bare_rate, sculpt_rate = n_bare / t_bare, n_bare / t_sculpt
    print(
        f"file           {args.file.name} ({n_bare:,} records; best of {args.repeat}, "
        "sides interleaved)"
    )
    print(
        f"bare json+pq   {bare_rate:>8,.0f} records/s  wall {t_bare * 1000:4.0f} ms  "
        f"cpu {cpu_bare * 1000:4.0f} ms"
    )
    print(
        f"sculpt ingest  {sculpt_rate:>8,.0f} records/s  wall {t_sculpt * 1000:4.0f} ms  "
        f"cpu {cpu_sculpt * 1000:4.0f} ms  ({n_kept:,} kept; includes fsyncs and the manifest)"
    )
    print(
        f"ratio          {sculpt_rate / bare_rate:8.2f}  (wall; goal ≥ 0.5)   "
        f"cpu ratio {cpu_bare / cpu_sculpt:.2f}"
    )


if __name__ == "__main__":
    main()
