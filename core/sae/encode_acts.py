"""Encode spans through a freshly trained SAE from the scan's activations, without a forward pass.

When the scan's `acts` sample holds every token (its `sample_tokens` covers the dataset, as for
the demo), the SAE trained on that sample can encode the same rows directly: the audit then
needs one forward pass instead of two. Template markers are never sampled, so span statistics
cover the non-special tokens (for responses only the closing end-of-turn marker is left out),
and activations are the stored fp16 values. Otherwise the audit runs `sculpt.sae.encode.encode`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sculpt.lake.store import Lake

BATCH_TOKENS = 8192


def acts_cover_spans(lake: Lake, dataset: str, model: str, layer: int, sample_tokens: int) -> bool:
    """True when the scan sampled every eligible token (its budget ≥ all tokens scanned)."""
    if not lake.has("acts", {"dataset": dataset, "model": model, "layer": layer}):
        return False
    files = lake.files("spans", {"dataset": dataset, "model": model})
    if not files:
        return False
    total = sum(
        int(pq.read_table(f, columns=["n_tokens"]).column(0).to_numpy().sum()) for f in files
    )
    return sample_tokens >= total


def encode_from_acts(
    lake: Lake, dataset: str, sae_id: str, model: str, layer: int, progress: bool = True
) -> int:
    """Feed the SAE sink span by span from `acts`; returns the number of tokens encoded."""
    from tqdm import tqdm

    from sculpt.sae.encode import sae_sink

    sink = sae_sink(lake, sae_id, dataset)
    partition = {"dataset": dataset, "sae": sae_id}
    for table in ("span_features", "token_features"):  # leftovers of an interrupted run
        shutil.rmtree(lake.staging_dir(table, partition, sink.key), ignore_errors=True)
    files = lake.files("acts", {"dataset": dataset, "model": model, "layer": layer})
    positions: dict[tuple[str, str], np.ndarray] = {}
    encoded = 0
    bar = tqdm(
        files,
        desc=f"encode {dataset} from acts",
        unit="shard",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    for shard, path in enumerate(bar):
        for batch, spans in _batches(pq.read_table(path)):
            sink.consume(batch)
            positions.update(spans)
            encoded += len(batch.acts)
        sink.end_shard(lake, shard)
    bar.close()
    sink.finish(lake)
    _restore_positions(lake, partition, positions)
    return encoded


def _batches(table: pa.Table) -> Iterator[tuple[Any, dict[tuple[str, str], np.ndarray]]]:
    """SpanBatches of whole spans (rows are stored grouped by pair, then side, pos ascending)."""
    import torch

    from sculpt.scan.types import SpanBatch

    pair_ids = table.column("pair_id").to_numpy(zero_copy_only=False)
    sides = table.column("side").to_numpy(zero_copy_only=False)
    pos = table.column("pos").to_numpy()
    column = table.column("act").combine_chunks()
    width = column.type.list_size
    acts = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    token_ids = table.column("token_id").to_numpy().astype(np.int64)
    change = np.flatnonzero((pair_ids[1:] != pair_ids[:-1]) | (sides[1:] != sides[:-1])) + 1
    starts = np.concatenate([[0], change, [len(pair_ids)]]).astype(np.int64)
    first = 0
    while first < len(starts) - 1:
        last = first + 1
        while last < len(starts) - 1 and starts[last + 1] - starts[first] <= BATCH_TOKENS:
            last += 1
        lo, hi = int(starts[first]), int(starts[last])
        spans = range(first, last)
        yield (
            SpanBatch(
                pair_ids=[str(pair_ids[starts[i]]) for i in spans],
                sides=[str(sides[starts[i]]) for i in spans],
                offsets=torch.from_numpy(starts[first : last + 1] - lo),
                token_ids=torch.from_numpy(token_ids[lo:hi]),
                acts=torch.from_numpy(acts[lo:hi].astype(np.float32)),
            ),
            {
                (str(pair_ids[starts[i]]), str(sides[starts[i]])): pos[starts[i] : starts[i + 1]]
                for i in spans
            },
        )
        first = last


def _restore_positions(
    lake: Lake, partition: dict[str, str], positions: dict[tuple[str, str], np.ndarray]
) -> None:
    """The sink numbers tokens by row within the rows it was given; map back to span positions."""
    data = lake.read("token_features", partition)
    if not data.num_rows:
        return
    rows = data.drop_columns([c for c in ("schema_version",) if c in data.column_names])
    pair_ids = rows.column("pair_id").to_pylist()
    sides = rows.column("side").to_pylist()
    index = rows.column("pos").to_pylist()
    fixed = [int(positions[(p, s)][i]) for p, s, i in zip(pair_ids, sides, index, strict=True)]
    pos_field = rows.schema.field("pos")
    rows = rows.set_column(
        rows.schema.get_field_index("pos"), pos_field, pa.array(fixed, pos_field.type)
    )
    lake.replace_partition("token_features", partition, rows)
