"""Scan a dataset through a model's residual stream into the lake (DESIGN §1, §3).

`scan` reads `pairs` [dataset], runs the fast truncated forward (core/scan/forward.py) shard by shard,
writes `spans` [dataset, model] and a seeded token sample to `acts` [dataset, model, layer], and
feeds every span's activations to the given sinks (SAE encoders, vector scorers) in the same pass.
Shards land in hidden staging folders and are recorded in the manifest, so a re-run resumes; the
partitions are promoted once every shard is done (core/scan/shards.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.scan.config import ScanConfig
from sculpt.scan.forward import iter_pair_acts
from sculpt.scan.models import LoadedModel, load_model
from sculpt.scan.shards import ScanRun
from sculpt.scan.tokens import TokenizedPair, encode_pair_tokens, tokenize_pair, use_chat_template
from sculpt.scan.types import ScanReport, Sink, SpanBatch, span_batch

__all__ = [
    "ScanConfig",
    "ScanReport",
    "Sink",
    "SpanBatch",
    "encode_pair_tokens",
    "iter_span_batches",
    "read_pairs",
    "scan",
    "tokenize_rows",
]


def read_pairs(lake: Lake, dataset: str) -> list[dict[str, Any]]:
    """Rows of `pairs` [dataset] in source order; a UserError if the dataset was not ingested."""
    if not lake.has("pairs", {"dataset": dataset}):
        raise UserError(
            f"dataset {dataset!r}: not in lake {lake.root}; run `sculpt ingest FILE --name "
            f'{dataset}` first (`sculpt lake sql "select distinct dataset from pairs"` lists '
            "the ingested ones)"
        )
    rows = lake.read("pairs", {"dataset": dataset}).to_pylist()
    return sorted(rows, key=lambda r: (r.get("row") or 0, r["pair_id"]))


def tokenize_rows(
    loaded: LoadedModel, rows: Sequence[dict[str, Any]], config: ScanConfig
) -> list[TokenizedPair]:
    """`pairs` rows → token spans, with the config's template mode and truncation policy."""
    chat = use_chat_template(loaded.tokenizer, config.template, loaded.name)
    return [tokenize_pair(loaded.tokenizer, row, config.truncation, chat) for row in rows]


def iter_span_batches(
    loaded: LoadedModel, pairs: list[dict[str, Any]], config: ScanConfig
) -> Iterator[SpanBatch]:
    """The scan's fast forward in memory, for callers that don't write the lake."""
    config = config.at_layer(loaded.check_layer(config.layer))
    tokenized = tokenize_rows(loaded, pairs, config)
    for results in iter_pair_acts(
        loaded, config.layer, tokenized, config.batch_tokens_for(loaded.device), config.share_prefix
    ):
        yield span_batch(tokenized, results)


def scan(
    lake: Lake,
    dataset: str,
    model: LoadedModel | str | None,
    config: ScanConfig,
    sinks: Sequence[Sink] = (),
    write_acts: bool = True,
    progress: bool = True,
) -> ScanReport:
    """Scan `dataset` at `config.layer`; resumable shard by shard (see the module docstring)."""
    rows = read_pairs(lake, dataset)
    loaded = (
        model if isinstance(model, LoadedModel) else load_model(model, config.device, config.dtype)
    )
    config = config.at_layer(loaded.check_layer(config.layer))
    pairs = tokenize_rows(loaded, rows, config)
    run = ScanRun(lake, dataset, loaded, config, pairs, list(sinks), write_acts)
    return run.execute(progress)
