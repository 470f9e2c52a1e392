"""Triage TUI at scale: first paint, sorts and filters on 1M hypotheses / 100k pairs (Pilot).

Builds the synthetic lake once (core/testing/sample_lake.py) under $TMPDIR and reuses it; its
analysis has findings, so the list on screen is findings (one per concept at this scale). Prints
the time from app start to the first rows on screen, each sort and filter as seen on screen,
showing a finding's members, and the same hypotheses page query against the Parquet views vs the
materialized DuckDB table (ratio).
Usage: .venv/bin/python bench/tui.py [--pairs 100000] [--hypotheses 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sculpt.lake.store import Lake
from sculpt.tui.data import Filters, Sort

GOAL_PAINT, GOAL_ACTION = 1.0, 0.2
CPU: list[float] = []
"""CPU seconds of this process (all threads) per timed action: the wall clock of a shared,
overloaded machine says more about its neighbours than about the app."""


def lake_for(n_pairs: int, n_hypotheses: int) -> Lake:
    root = Path(tempfile.gettempdir()) / f"sculpt-bench-tui-{n_pairs}-{n_hypotheses}"
    if (root / "_manifest").exists():
        return Lake.open(root)
    from sculpt.testing.sample_lake import build_sample_lake

    start = time.perf_counter()
    lake = build_sample_lake(root, n_pairs=n_pairs, n_hypotheses=n_hypotheses, seed=0)
    print(f"built {root} in {time.perf_counter() - start:.0f} s (reused next time)")
    return lake


async def wait(pilot, condition, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the app did not answer in time")
        await asyncio.sleep(0.002)
    return time.perf_counter() - start


async def on_screen(pilot, key: str, typed: str = "") -> float:
    """Seconds from the key event to the new page in the table (typing before it not counted).

    The key is posted as a real key event (App.simulate_key): Pilot.press also waits for the
    whole app to go idle, which would time the loading spinner's animation, not the answer.
    """
    screen = pilot.app.screen
    if typed:
        await pilot.press("slash", "ctrl+a", *typed)
    before = screen.loads
    start, cpu = time.perf_counter(), time.process_time()
    pilot.app.simulate_key(key)
    await wait(pilot, lambda: screen.loads > before)
    CPU.append(time.process_time() - cpu)
    return time.perf_counter() - start


async def members(pilot) -> float:
    """Seconds from space to the finding's members on screen, then space again to hide them."""
    screen = pilot.app.screen
    start, cpu = time.perf_counter(), time.process_time()
    pilot.app.simulate_key("space")
    await wait(pilot, lambda: bool(screen.expanded))
    CPU.append(time.process_time() - cpu)
    elapsed = time.perf_counter() - start
    pilot.app.simulate_key("space")
    await wait(pilot, lambda: not screen.expanded)
    return elapsed


async def measure(lake: Lake) -> dict[str, list[float]]:
    from sculpt.tui.app import TriageApp
    from sculpt.tui.hypotheses import HypothesesScreen

    HypothesesScreen.SEARCH_DEBOUNCE = 60.0  # time the Enter path alone, not typing pauses
    results: dict[str, list[float]] = {}
    start, cpu = time.perf_counter(), time.process_time()
    app = TriageApp(lake, "demo")
    async with app.run_test(size=(160, 48)) as pilot:
        await wait(pilot, lambda: isinstance(app.screen, HypothesesScreen))
        results["first paint: screen"] = [time.perf_counter() - start]
        await wait(pilot, lambda: isinstance(app.screen, HypothesesScreen) and app.screen.loads > 0)
        results["first paint: rows"] = [time.perf_counter() - start]
        results["  cpu time of this process"] = [time.process_time() - cpu]
        await wait(pilot, lambda: app.data.source == "hyp_cache", timeout=300)
        results["cache ready (background)"] = [time.perf_counter() - start]
        await pilot.pause(0.5)
        results["sort (s, each column)"] = [await on_screen(pilot, "s") for _ in range(8)]
        results["reverse sort (S)"] = [await on_screen(pilot, "S") for _ in range(2)]
        results["filter scope/lean/split-half"] = [
            await on_screen(pilot, key) for key in ("g", "l", "h", "c")
        ]
        results["text search (enter)"] = [
            await on_screen(pilot, "enter", word) for word in ("apology", "sorry", "zz")
        ]
        await on_screen(pilot, "c")
        results["show a finding's members (space)"] = [await members(pilot) for _ in range(3)]
    results["  cpu time per sort/filter"] = list(CPU)
    return results


def query_ratio(lake: Lake) -> tuple[float, float]:
    """Median page query (sort by |Δ| + count) on the Parquet view vs the DuckDB table."""
    from sculpt.tui.data import TriageData

    data = TriageData(lake, "demo")
    timings = {}
    for source in ("hyp_src", "hyp_cache"):
        if source == "hyp_cache":
            data.materialize()
        data.source = source
        runs = []
        for column in ("delta", "q", "d"):
            start = time.perf_counter()
            data.page(Filters(scope="conditional", text="apolog"), Sort(column, True))
            runs.append(time.perf_counter() - start)
        timings[source] = statistics.median(runs)
    data.close()
    return timings["hyp_src"], timings["hyp_cache"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--hypotheses", type=int, default=1_000_000)
    args = parser.parse_args()
    lake = lake_for(args.pairs, args.hypotheses)
    results = asyncio.run(measure(lake))
    print(f"\nsculpt triage on {args.hypotheses:,} hypotheses / {args.pairs:,} pairs (160x48)")
    for name, values in results.items():
        goal = GOAL_PAINT if name.startswith(("first", "  cpu time of")) else GOAL_ACTION
        mark = "" if name.startswith("cache") else ("  ✓" if max(values) < goal else "  ✗ over")
        print(
            f"  {name:<30} median {statistics.median(values) * 1000:7.0f} ms   "
            f"max {max(values) * 1000:7.0f} ms   (goal {goal * 1000:.0f} ms){mark}"
        )
    view, table = query_ratio(lake)
    print(
        f"  page query, Parquet view {view * 1000:.0f} ms vs DuckDB table {table * 1000:.0f} ms"
        f" → {view / table:.1f}x"
    )


if __name__ == "__main__":
    main()
