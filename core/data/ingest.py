"""Ingest a preference file into the lake's `pairs` and `rejects` tables (DESIGN §3).

Everything is validated before anything lands: pairs stream into a hidden staging folder in
parts, and only a fully read source that keeps at least one pair is promoted; any bad record
aborts with one line naming the file and line, and the lake is left as it was.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sculpt.data import formats
from sculpt.data.formats import Format, Pair, RecordError, Reject
from sculpt.data.sources import NotFlat, Source, find_sources
from sculpt.errors import UserError
from sculpt.lake import schemas
from sculpt.lake.store import Lake, slug, with_schema_version

PAIRS_SCHEMA = schemas.PAIRS
REJECTS_SCHEMA = schemas.REJECTS
PART_ROWS = 100_000
"""Pairs per Parquet part: bounds memory on large files."""


def _to_json(messages: list[dict[str, str]]) -> str:
    """The stored prompt: what json.dumps(messages, ensure_ascii=False) gives, written directly
    because ingest spends a good share of its time here."""
    return (
        "["
        + ", ".join(
            f'{{"role": "{m["role"]}", "content": {encode_basestring(m["content"])}}}'
            for m in messages
        )
        + "]"
    )


_meta_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


def pair_id(prompt: list[dict[str, str]], chosen: str, rejected: str) -> str:
    """16 hex chars of the sha256 of the normalized prompt + chosen + rejected."""
    messages = [{"role": m["role"], "content": formats.clean(m["content"])} for m in prompt]
    return _pair_id(_to_json(messages), formats.clean(chosen), formats.clean(rejected))


def _pair_id(prompt_json: str, chosen: str, rejected: str) -> str:
    """`pair_id` for already-cleaned texts and the prompt as stored (JSON of its messages)."""
    text = f"{prompt_json}\x1d{chosen}\x1d{rejected}"
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return hashlib.sha256(_utf8(text)).hexdigest()[:16]


def _utf8(text: str) -> bytes:
    """`text` as UTF-8; a lone surrogate (JSON's "\\ud800" without its pair) is not Unicode,
    and no Parquet file can hold it."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecordError(
            f"text holds a lone surrogate \\u{ord(text[exc.start]):04x} (half of a UTF-16 "
            "pair, not a character); fix or remove that escape in the file"
        ) from None


@dataclass
class IngestReport:
    dataset: str
    sources: list[str]
    format: str
    rows: int
    kept: int
    rejected: dict[str, int]
    examples: list[dict[str, Any]] = field(default_factory=list)
    """The first few rejects: {source, row, reason, detail}."""
    empty_turns: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """What `sculpt ingest` prints."""
        n_rej = sum(self.rejected.values())
        by_reason = ", ".join(f"{r} {n:,}" for r, n in sorted(self.rejected.items()))
        out = [
            f"{', '.join(self.sources)} ({self.format}) → dataset {self.dataset!r}: "
            f"{self.rows:,} rows, {self.kept:,} kept, {n_rej:,} rejected"
            + (f" ({by_reason})" if n_rej else "")
            + f" in {self.seconds:.1f}s"
        ]
        if self.empty_turns:
            out.append(
                f"  kept {self.empty_turns:,} pairs whose final assistant turn is empty on "
                "one side (meta.empty_turn)"
            )
        out += [
            f"  {e['source']} row {e['row']}: {e['reason']}: {e['detail']}" for e in self.examples
        ]
        if n_rej > len(self.examples):
            out.append(
                f'  all rejects: sculpt lake sql "select * from rejects '
                f"where dataset = '{slug(self.dataset)}'\""
            )
        return out


class _Collector:
    """Accumulates kept pairs (flushed to staging in parts) and rejects."""

    def __init__(self, staging: Path, source: str) -> None:
        self.staging, self.source = staging, source
        self.cols: dict[str, list[Any]] = {name: [] for name in PAIRS_SCHEMA.names}
        self.rejects: dict[str, list[Any]] = {name: [] for name in REJECTS_SCHEMA.names}
        self.seen: dict[str, tuple[str, int]] = {}
        self.parts = 0
        self.kept = 0
        self.empty_turns = 0

    def add(self, row: int, result: Pair | Reject) -> None:
        if isinstance(result, Reject):
            self.reject(row, result.reason, result.detail, None)
            return
        prompt = _to_json(result.prompt)
        pid = _pair_id(prompt, result.chosen, result.rejected)
        first = self.seen.get(pid)
        if first is not None:
            self.reject(row, "duplicate", f"same pair as {first[0]} row {first[1]}", pid)
            return
        self.seen[pid] = (self.source, row)
        cols = self.cols
        cols["pair_id"].append(pid)
        cols["row"].append(row)
        cols["prompt"].append(prompt)
        cols["chosen"].append(result.chosen)
        cols["rejected"].append(result.rejected)
        cols["source"].append(self.source)
        meta = _meta_json(result.meta) if result.meta else "{}"
        if not meta.isascii():
            _utf8(meta)
        cols["meta"].append(meta)
        self.empty_turns += "empty_turn" in result.meta
        self.kept += 1
        if len(cols["row"]) >= PART_ROWS:
            self.flush()

    def reject(self, row: int, reason: str, detail: str, pid: str | None) -> None:
        for key, value in (
            ("row", row),
            ("reason", reason),
            ("detail", detail),
            ("pair_id", pid),
            ("source", self.source),
        ):
            self.rejects[key].append(value)

    def report(
        self, dataset: str, sources: list[str], fmt: str, rows: int, seconds: float
    ) -> IngestReport:
        rejects = self.rejects
        examples = [
            {"source": s, "row": r, "reason": why, "detail": d}
            for s, r, why, d in zip(
                rejects["source"][:8],
                rejects["row"][:8],
                rejects["reason"][:8],
                rejects["detail"][:8],
                strict=True,
            )
        ]
        return IngestReport(
            dataset,
            sources,
            fmt,
            rows,
            self.kept,
            dict(Counter(rejects["reason"])),
            examples,
            self.empty_turns,
            seconds,
        )

    def flush(self) -> None:
        if self.cols["row"] or not self.parts:
            table = pa.table(self.cols, schema=PAIRS_SCHEMA)
            path = self.staging / f"part-{self.parts:05d}.parquet"
            _write_staged(table, path)
            self.parts += 1
            self.cols = {name: [] for name in PAIRS_SCHEMA.names}


def _write_staged(table: pa.Table, path: Path) -> None:
    """Write a file inside a private staging folder: no tmp-and-rename needed, since readers
    only ever see the folder once `Lake.promote` swaps it in whole; fsync so it is on disk first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pq.write_table(with_schema_version(table), fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())


def ingest(
    lake: Lake,
    path: str | Path,
    name: str,
    fmt: str = "auto",
    mapping: str | Mapping[str, str] | None = None,
    progress: bool = False,
) -> IngestReport:
    """Read `path`, validate every record, then replace the `pairs` and `rejects` partitions."""
    if fmt not in formats.FORMATS:
        raise UserError(f"--format {fmt}: unknown; choose one of {', '.join(formats.FORMATS)}")
    if not name or not name.strip():
        raise UserError("--name: empty; give the dataset a name, e.g. --name hh")
    columns = formats.parse_mapping(mapping)
    sources = find_sources(Path(path))
    started = time.perf_counter()
    partition = {"dataset": name}
    _remove_abandoned_staging(lake, partition)
    key = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    pairs_stage = lake.staging_dir("pairs", partition, _STAGING_PREFIX + key)
    rejects_stage = lake.staging_dir("rejects", partition, _STAGING_PREFIX + key)
    try:
        collector = _Collector(pairs_stage, sources[0].name)
        try:
            detected, rows = _read_all(sources, fmt, columns, collector, progress, fast=True)
        except (NotFlat, UserError):
            # The fast reader names records, not lines, and takes only flat files: start over
            # line by line, which either succeeds or fails naming the exact file and line.
            shutil.rmtree(pairs_stage, ignore_errors=True)
            collector = _Collector(pairs_stage, sources[0].name)
            detected, rows = _read_all(sources, fmt, columns, collector, progress, fast=False)
        if not collector.kept:
            names = [s.name for s in sources]
            raise UserError(_nothing_kept(collector.report(name, names, detected, rows, 0.0)))
        collector.flush()
        rejects = pa.table(collector.rejects, schema=REJECTS_SCHEMA)
        _write_staged(rejects, rejects_stage / "part-00000.parquet")
        lake.promote(pairs_stage, "pairs", partition)
        lake.promote(rejects_stage, "rejects", partition)
    finally:
        shutil.rmtree(pairs_stage, ignore_errors=True)
        shutil.rmtree(rejects_stage, ignore_errors=True)
    report = collector.report(
        name, [s.name for s in sources], detected, rows, time.perf_counter() - started
    )
    lake.mark_done(
        "ingest",
        name,
        {
            "sources": report.sources,
            "format": detected,
            "rows": rows,
            "kept": report.kept,
            "rejected": report.rejected,
        },
    )
    return report


def _nothing_kept(report: IngestReport) -> str:
    """The error for a source whose every row was rejected: replacing a dataset with an empty
    one is never what a re-ingest meant."""
    reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(report.rejected.items()))
    first = report.examples[0] if report.examples else None
    example = f"; e.g. {first['source']} row {first['row']}: {first['detail']}" if first else ""
    return (
        f"{', '.join(report.sources)}: no pair kept of {report.rows:,} rows ({reasons})"
        f"{example}; dataset {report.dataset!r} is left as it was: fix the file, or its "
        "--format or --map"
    )


_STAGING_PREFIX = "ingest-"


def _remove_abandoned_staging(lake: Lake, partition: Mapping[str, Any]) -> None:
    """Delete staging folders that ingests of this dataset left when killed (`kill -9`, power
    loss): their names carry the process id, and a live process keeps its own."""
    for table in ("pairs", "rejects"):
        target = lake.partition_dir(table, partition)
        pattern = f".{glob.escape(target.name)}.{_STAGING_PREFIX}*.staging"
        for folder in target.parent.glob(pattern):
            owner = folder.name[len(target.name) + 2 + len(_STAGING_PREFIX) :].split("-")[0]
            if not (owner.isdigit() and _running(int(owner))):
                shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, under another user
    return True


def _read_all(
    sources: list[Source],
    fmt: str,
    columns: Mapping[str, str],
    collector: _Collector,
    progress: bool,
    fast: bool,
) -> tuple[str, int]:
    """Parse every record of every source into the collector; returns (format(s), rows read)."""
    from tqdm import tqdm

    # Progress in bytes of input: the only unit with a known total, hence a rate and an ETA.
    bar = tqdm(
        desc="ingest",
        total=sum(s.size for s in sources),
        unit="B",
        unit_scale=True,
        disable=not progress or None,
        leave=False,
        mininterval=0.5,
    )
    found: list[str] = []
    rows = done = 0
    for source in sources:
        collector.source = source.name
        base = done

        def advance(got: int, base: int = base) -> None:
            bar.update(base + got - bar.n)

        detected, count = _read_source(source, fmt, columns, collector, fast, advance)
        found += [detected] if detected not in found else []
        rows += count
        done += source.size
        bar.update(done - bar.n)
    bar.close()
    return "+".join(found), rows


def _read_source(
    source: Source,
    fmt: str,
    columns: Mapping[str, str],
    collector: _Collector,
    fast: bool,
    advance: Callable[[int], Any],
) -> tuple[str, int]:
    """One file; with --format auto its first record decides the format (files may differ)."""
    detected: Format | None = None if fmt == "auto" else fmt  # type: ignore[assignment]
    parse = formats.parser_for(detected) if detected else None
    where: int | None = None
    row = -1
    try:
        for row, where, record in _records(source, columns, fast):  # noqa: B007 (read on error)
            if parse is None:
                detected = formats.detect_format(record)
                parse = formats.parser_for(detected)
            collector.add(row, parse(record))
            if row % 2048 == 2047:
                advance(source.bytes_read())
    except RecordError as exc:
        raise UserError(f"{source.where(where)}: {exc}") from None
    if row < 0 or detected is None:
        raise UserError(
            f"{source.name}: empty; expected one preference record per "
            "line/row (see `sculpt ingest --help`)"
        )
    return detected, row + 1


def _records(
    source: Source, columns: Mapping[str, str], fast: bool
) -> Iterator[tuple[int, Any, dict[str, Any]]]:
    """(row, location, record) with `--map` applied; checks the mapped columns exist."""
    for row, (loc, record) in enumerate(source.records(fast)):
        if not isinstance(record, dict):
            raise RecordError(f"record is {formats._type(record)}, expected a JSON object")
        if columns:
            if row == 0:
                missing = [f"{k}={c}" for k, c in columns.items() if c not in record]
                if missing:
                    raise UserError(
                        f"{source.name}: --map {', '.join(missing)}: no such column "
                        f"(columns: {formats.column_names(record)})"
                    )
            formats.apply_mapping(record, columns)
        yield row, loc, record
