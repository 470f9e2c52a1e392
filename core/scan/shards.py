"""The shard loop of a scan: staging folders, manifest records, resume, promotion (DESIGN §3)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sculpt.errors import UserError
from sculpt.lake.store import Lake, with_schema_version, write_parquet_atomic
from sculpt.scan.config import ScanConfig
from sculpt.scan.forward import iter_pair_acts
from sculpt.scan.models import LoadedModel
from sculpt.scan.tables import ActsSample, TokenText, sample_masks, spans_table
from sculpt.scan.tokens import SIDES, TokenizedPair
from sculpt.scan.types import ScanReport, Sink, span_batch

STAGE = "scan"
OWNER_STAGE = "scan-owner"
"""Manifest records naming the scan whose files a partition holds (a later scan with another
config replaces them, so an earlier scan's "complete" no longer means its data is there)."""


def _owner(table: str, partition: dict[str, Any]) -> str:
    return "/".join([table, *(f"{k}={v}" for k, v in partition.items())])


def scan_key(
    dataset: str,
    loaded: LoadedModel,
    config: ScanConfig,
    pairs: Sequence[TokenizedPair],
    sinks: Sequence[Sink],
    write_acts: bool,
) -> str:
    """Identity of a scan: same key ⇒ same lake contents, so a re-run may resume."""
    settings = {k: v for k, v in asdict(config).items() if k != "device"}
    ident = {
        "dataset": dataset,
        "model": loaded.name,
        "dtype": str(loaded.dtype),
        "config": settings,
        "sinks": sorted(s.key for s in sinks),
        "write_acts": write_acts,
        "pairs": hashlib.sha256("".join(p.pair_id for p in pairs).encode()).hexdigest(),
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return f"{dataset}.{loaded.name}.L{config.layer}.{digest}"


class ScanRun:
    """One scan of tokenized pairs: shards → staging → manifest; promote when all are done."""

    def __init__(
        self,
        lake: Lake,
        dataset: str,
        loaded: LoadedModel,
        config: ScanConfig,
        pairs: list[TokenizedPair],
        sinks: list[Sink],
        write_acts: bool,
    ) -> None:
        if not pairs:
            raise UserError(f"dataset {dataset!r}: no pairs to scan; re-run `sculpt ingest`")
        self.lake, self.dataset, self.loaded, self.config = lake, dataset, loaded, config
        self.pairs, self.sinks = pairs, sinks
        self.write_acts = write_acts and config.sample_tokens > 0
        self.key = scan_key(dataset, loaded, config, pairs, sinks, self.write_acts)
        self.partitions: dict[str, dict[str, Any]] = {
            "spans": {"dataset": dataset, "model": loaded.name},
        }
        if self.write_acts:
            self.partitions["acts"] = {
                "dataset": dataset,
                "model": loaded.name,
                "layer": config.layer,
            }
        size = config.shard_size
        self.shards = [range(i, min(i + size, len(pairs))) for i in range(0, len(pairs), size)]
        self.skip_ids = set(loaded.tokenizer.all_special_ids)
        self.token_text = TokenText(loaded.tokenizer)
        self.rate = self._sample_rate()

    def _sample_rate(self) -> float:
        eligible = sum(
            sum(1 for t in pair.side(side) if t not in self.skip_ids)
            for pair in self.pairs
            for side in SIDES
        )
        return min(1.0, self.config.sample_tokens / eligible) if eligible else 0.0

    def staging(self, table: str) -> Path:
        return self.lake.staging_dir(table, self.partitions[table], self.key)

    def execute(self, progress: bool) -> ScanReport:
        record = self.lake.done(STAGE, self.key)
        report = self._report()
        if record is not None and self.is_complete(record):
            report.already_done = True
            report.acts_rows = sum(record.get("acts_rows", {}).values())
            return report
        if record is not None and (record.get("complete") or not self._staged(record)):
            record = None  # its files were promoted and since replaced, or lost: start over
        if record is None:
            for table in self.partitions:
                shutil.rmtree(self.staging(table), ignore_errors=True)
        done = {int(s) for s in (record or {}).get("shards_done", [])}
        acts_rows = {int(k): int(v) for k, v in (record or {}).get("acts_rows", {}).items()}
        report.resumed_shards = len(done)
        bar = tqdm(
            total=len(self.pairs),
            initial=sum(len(self.shards[s]) for s in done),
            unit="pair",
            desc=f"scan {self.dataset} L{self.config.layer}",
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        start = time.perf_counter()
        try:
            for shard in range(len(self.shards)):
                if shard in done:
                    continue
                acts_rows[shard] = self._scan_shard(shard, bar)
                done.add(shard)
                report.scanned_pairs += len(self.shards[shard])
                self._record(done, acts_rows, complete=False)
        finally:
            bar.close()
            report.seconds = time.perf_counter() - start
        self._promote()
        for sink in self.sinks:
            sink.finish(self.lake)
        self._record(done, acts_rows, complete=True)
        report.acts_rows = sum(acts_rows.values())
        return report

    def _scan_shard(self, shard: int, bar: tqdm) -> int:
        """Forward one shard, feed the sinks, write its staging files; return acts rows written."""
        pairs = [self.pairs[i] for i in self.shards[shard]]
        masks = sample_masks(pairs, self.rate, self.config.seed, shard, self.skip_ids)
        sample = ActsSample(self.loaded.d_model)
        for results in iter_pair_acts(
            self.loaded,
            self.config.layer,
            pairs,
            self.config.batch_tokens_for(self.loaded.device),
            self.config.share_prefix,
        ):
            if self.sinks:
                batch = span_batch(pairs, results)
                for sink in self.sinks:
                    sink.consume(batch)
            if self.write_acts:
                for result in results:
                    pair = pairs[result.index]
                    for side in SIDES:
                        sample.add(
                            result.index, pair, side, result.acts[side], masks[result.index][side]
                        )
            bar.update(len(results))
        name = f"part-{shard:05d}.parquet"
        spans = spans_table(pairs, self.token_text)
        write_parquet_atomic(with_schema_version(spans), self.staging("spans") / name)
        if self.write_acts:
            acts = sample.table([p.pair_id for p in pairs])
            write_parquet_atomic(with_schema_version(acts), self.staging("acts") / name)
        for sink in self.sinks:
            sink.end_shard(self.lake, shard)
        return len(sample) if self.write_acts else 0

    def _record(self, done: set[int], acts_rows: dict[int, int], complete: bool) -> None:
        self.lake.mark_done(
            STAGE,
            self.key,
            {
                "dataset": self.dataset,
                "model": self.loaded.name,
                "layer": self.config.layer,
                "n_shards": len(self.shards),
                "shards_done": sorted(done),
                "acts_rows": {str(k): v for k, v in sorted(acts_rows.items())},
                "complete": complete,
                "config": asdict(self.config),
                "sinks": [s.key for s in self.sinks],
                "write_acts": self.write_acts,
            },
        )

    def _staged(self, record: dict[str, Any]) -> bool:
        """Every shard the record lists as done still has its staging files."""
        return all(
            (self.staging(table) / f"part-{int(shard):05d}.parquet").exists()
            for table in self.partitions
            for shard in record.get("shards_done", [])
        )

    def is_complete(self, record: dict[str, Any] | None) -> bool:
        """This exact scan finished and its partitions were not since replaced by another."""
        return bool(record and record.get("complete")) and all(
            self.lake.has(table, partition)
            and (self.lake.done(OWNER_STAGE, _owner(table, partition)) or {}).get("scan")
            == self.key
            for table, partition in self.partitions.items()
        )

    def _promote(self) -> None:
        for table, partition in self.partitions.items():
            staging = self.staging(table)
            if staging.exists():
                self.lake.promote(staging, table, partition)
                self.lake.mark_done(OWNER_STAGE, _owner(table, partition), {"scan": self.key})

    def _report(self) -> ScanReport:
        tokens = {s: sum(len(p.side(s)) for p in self.pairs) for s in SIDES}
        cut_spans = {s: sum(1 for p in self.pairs if p.truncated.get(s, 0)) for s in SIDES}
        cut_tokens = {s: sum(p.truncated.get(s, 0) for p in self.pairs) for s in SIDES}
        fallbacks: dict[str, list[str]] = {}
        for pair in self.pairs:
            if pair.fallback:
                fallbacks.setdefault(pair.fallback, []).append(pair.pair_id)
        return ScanReport(
            dataset=self.dataset,
            model=self.loaded.name,
            layer=self.config.layer,
            key=self.key,
            pairs=len(self.pairs),
            shards=len(self.shards),
            tokens=tokens,
            truncated_spans=cut_spans,
            policy=(
                f"prompt ≤ {self.config.max_prompt_tokens} keeps its {self.config.prompt_keep}, "
                f"responses ≤ {self.config.max_response_tokens} keep their "
                f"{self.config.response_keep}"
            ),
            truncated_tokens=cut_tokens,
            fallbacks=fallbacks,
        )
