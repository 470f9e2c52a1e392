"""Small lakes for tests that scan: pairs of varied lengths, some multi-turn."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from sculpt.lake import schemas
from sculpt.lake.store import Lake


def cake_pairs(n: int) -> list[dict[str, object]]:
    """Pairs with varied prompt and response lengths, some multi-turn, so shards and batches
    differ in shape."""
    rows = []
    for i in range(n):
        messages = [{"role": "user", "content": "How do I bake a cake? " * (1 + i % 4)}]
        if i % 3 == 0:
            messages += [
                {"role": "assistant", "content": "Which cake?"},
                {"role": "user", "content": f"A chocolate one, number {i}."},
            ]
        rows.append(
            {
                "pair_id": f"{i:016x}",
                "row": i,
                "prompt": json.dumps(messages),
                "chosen": "Mix flour, sugar and eggs, then bake. " * (1 + i % 5),
                "rejected": "I am sorry, but I cannot help with that." * (1 + (i * 7) % 3),
                "source": "test.jsonl",
                "meta": "{}",
            }
        )
    return rows


def pairs_lake(root: Path, rows: list[dict[str, object]], dataset: str = "demo") -> Lake:
    """A lake at `root` whose only table is `pairs` [dataset] = rows."""
    lake = Lake.open(root)
    table = pa.Table.from_pylist(rows, schema=schemas.PAIRS)
    lake.replace_partition("pairs", {"dataset": dataset}, table)
    return lake
