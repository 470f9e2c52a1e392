"""Where ingest reads records from: JSON lines (plain or gzip), JSON, CSV, Parquet, and folders
(a `datasets` save_to_disk folder, or a folder of data files). Every read error becomes one line
naming the file and line (or row)."""

from __future__ import annotations

import csv
import gzip
import json
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from sculpt.errors import UserError

MAX_LINE_BYTES = 16 * 2**20
"""Longest accepted line (or CSV field): a longer one is an error, never a hang or an OOM."""
MAX_JSON_BYTES = 512 * 2**20
"""Largest single-document .json file; bigger data belongs in JSON lines or Parquet."""
MAX_DEPTH = 100
"""Deepest nesting of lists and objects in a record: preference data is flat or lists of
messages, and JSON readers and writers recurse once per level."""
ARROW_MAX_OPENINGS = 1000
"""Most `[` and `{` on one line the fast reader takes: Arrow's JSON parser recurses once per
level and overflows the stack (the process dies) on a line nested ~20,000 deep."""
SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".csv", ".parquet", ".arrow")
_BOM = b"\xef\xbb\xbf"


_ARROW_JSON = pa_json.ReadOptions(block_size=8 << 20)


class NotFlat(Exception):
    """The fast JSON-lines reader cannot take this file as is; read it line by line instead."""


def _plain_scalar(kind: pa.DataType) -> bool:
    """Types whose Python values equal what json.loads gives (no timestamps, no nesting). Not
    float64: Arrow makes `1` in a column holding `1.5` a 1.0, and an integer past int64 a float."""
    return pa.types.is_string(kind) or pa.types.is_int64(kind) or pa.types.is_boolean(kind)


def _check_shallow(stream: Any) -> None:
    """Raise `NotFlat` if a line of `stream` holds more than ARROW_MAX_OPENINGS `[` and `{`
    (strings included: a bound on the nesting, not a parse). Vectorized: a pass over the file
    costs a fraction of Arrow's."""
    openings = 0  # on the line the previous chunk ended in
    while chunk := stream.read(8 << 20):
        chars = np.frombuffer(chunk, np.uint8)
        brackets = np.flatnonzero((chars == ord("[")) | (chars == ord("{")))
        ends = np.flatnonzero(chars == ord("\n"))
        per_line = np.bincount(np.searchsorted(ends, brackets), minlength=ends.size + 1)
        per_line[0] += openings
        if int(per_line.max()) > ARROW_MAX_OPENINGS:
            raise NotFlat("a line with many brackets")
        openings = int(per_line[-1])


@dataclass(frozen=True)
class Source:
    path: Path
    name: str
    """How messages and the `source` column name it (the file name)."""
    _reading: list[Any] = field(default_factory=list, compare=False, repr=False)
    """The open binary file while records() runs, so progress can ask how far it got."""

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def bytes_read(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for .gz): for a progress bar."""
        if not self._reading:
            return 0
        handle = self._reading[0]
        handle = getattr(handle, "fileobj", None) or handle  # a GzipFile's compressed stream
        try:
            return int(handle.tell())
        except (OSError, ValueError, AttributeError):
            return 0

    @property
    def kind(self) -> str:
        name = self.path.name.lower()
        for suffix, kind in (
            (".json", "json"),
            (".json.gz", "json"),
            (".csv", "csv"),
            (".parquet", "parquet"),
            (".arrow", "arrow"),
        ):
            if name.endswith(suffix):
                return kind
        return "jsonl"

    def where(self, loc: int | None) -> str:
        """`data.jsonl line 7`, `data.parquet row 7` or `data.json record 7`."""
        if loc is None:
            return self.name
        unit = {"jsonl": "line", "csv": "line", "json": "record"}.get(self.kind, "row")
        return f"{self.name} {unit} {loc}"

    def records(self, fast: bool = False) -> Iterator[tuple[int, Any]]:
        """(location, record) for every record, in file order.

        `fast` reads JSON lines with Arrow's parser when every value is a plain scalar; the
        locations are then record numbers, not lines, and anything unusual raises `NotFlat`:
        read again without `fast` for a message that names the line."""
        if fast and self.kind == "jsonl":
            yield from self._jsonl_arrow()
            return
        reader = {
            "jsonl": self._jsonl,
            "json": self._json,
            "csv": self._csv,
            "parquet": self._parquet,
            "arrow": self._arrow,
        }[self.kind]
        try:
            yield from reader()
        except (OSError, EOFError, zlib.error) as exc:
            if self.path.name.endswith(".gz") and not isinstance(exc, PermissionError):
                raise UserError(
                    f"{self.name}: not a whole gzip file ({exc}); `gzip -t` checks it: fetch or "
                    "compress it again"
                ) from None
            if isinstance(exc, OSError) and exc.errno is not None:  # the system said no
                raise UserError(
                    f"{self.name}: cannot read ({exc.strerror}); check that the file exists "
                    "and is readable"
                ) from None
            raise UserError(
                f"{self.name}: unreadable ({exc}); the file is cut short or damaged: write it again"
            ) from None

    def _jsonl(self) -> Iterator[tuple[int, Any]]:
        opener = gzip.open if self.path.name.endswith(".gz") else open
        with opener(self.path, "rb") as fh:
            self._reading[:] = [fh]
            line = 0
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                line += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise UserError(
                        f"{self.where(line)}: line longer than {MAX_LINE_BYTES >> 20} MiB; "
                        "expected one JSON record per line"
                    )
                if line == 1 and raw.startswith(_BOM):
                    raw = raw[3:]
                if raw.isspace():
                    continue
                yield line, self._loads(raw, line)

    def _jsonl_arrow(self) -> Iterator[tuple[int, Any]]:
        try:
            raw, stream = self._arrow_stream()
            try:
                _check_shallow(stream)
            finally:
                raw.close()
            raw, stream = self._arrow_stream()
        except (pa.ArrowException, OSError) as exc:
            raise NotFlat(f"{self.name}: {exc}") from None
        self._reading[:] = [raw]
        row = 0
        try:
            for batch in pa_json.open_json(stream, read_options=_ARROW_JSON):
                if batch.num_rows and (
                    not all(map(_plain_scalar, batch.schema.types))
                    or any(column.null_count for column in batch.columns)
                ):
                    raise NotFlat(f"{self.name}: nested values or missing keys")
                names = batch.schema.names
                for values in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                    row += 1
                    yield row, dict(zip(names, values, strict=True))
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise NotFlat(f"{self.name}: {exc}") from None
        finally:
            raw.close()

    def _arrow_stream(self) -> tuple[Any, Any]:
        """(the open file, its bytes as an Arrow stream: decompressed for .gz)."""
        raw = pa.OSFile(str(self.path))
        return raw, pa.CompressedInputStream(raw, "gzip") if self.path.name.endswith(".gz") else raw

    def _loads(self, raw: bytes, line: int) -> Any:
        try:  # decoding here skips json's encoding sniffing and checks UTF-8 strictly
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{self.where(line)}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1}); re-save the file as UTF-8"
            ) from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{self.where(line)}: invalid JSON ({exc.msg} at column {exc.pos + 1}); "
                "expected one JSON object per line"
            ) from None
        except (RecursionError, ValueError) as exc:
            raise UserError(f"{self.where(line)}: {_unreadable_json(exc)}") from None
        if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
            check_depth(value, self.where(line))
        return value

    def _json(self) -> Iterator[tuple[int, Any]]:
        if self.path.stat().st_size > MAX_JSON_BYTES:
            raise UserError(
                f"{self.name}: over {MAX_JSON_BYTES >> 20} MiB as one JSON document; "
                "convert it to JSON lines (.jsonl) or Parquet"
            )
        opener = gzip.open if self.path.name.endswith(".gz") else open
        with opener(self.path, "rb") as fh:
            data = fh.read(MAX_JSON_BYTES + 1)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise UserError(
                f"{self.name} line {line}: not UTF-8 (byte 0x{data[exc.start]:02x}); "
                "re-save the file as UTF-8"
            ) from None
        if not text.strip():
            return
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text.lstrip().startswith("{"):
                yield from self._jsonl()  # JSON lines saved as .json
                return
            raise UserError(
                f"{self.name} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except (RecursionError, ValueError) as exc:
            raise UserError(f"{self.name}: {_unreadable_json(exc)}") from None
        for number, record in enumerate(_record_list(doc, self.name), start=1):
            check_depth(record, self.where(number), MAX_DEPTH - 1)  # below the list itself
            yield number, record

    def _csv(self) -> Iterator[tuple[int, Any]]:
        csv.field_size_limit(MAX_LINE_BYTES)
        with open(self.path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            self._reading[:] = [fh.buffer]
            # strict: a stray quote is an error, where the default reads on to the next quote
            # (or the end of the file) as one field.
            reader = csv.DictReader(fh, strict=True)
            start = 2
            try:
                for record in reader:
                    if None in record:
                        raise UserError(f"{self.where(start)}: more fields than the header")
                    if None in record.values():
                        raise UserError(
                            f"{self.where(start)}: fewer fields than the header "
                            f"({', '.join(k for k, v in record.items() if v is None)} missing)"
                        )
                    try:
                        "".join(v or "" for v in record.values()).encode("utf-8")
                    except UnicodeEncodeError:
                        raise UserError(
                            f"{self.where(start)}: not UTF-8; re-save the file as UTF-8"
                        ) from None
                    yield start, record
                    start = reader.line_num + 1
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise UserError(
                        f"{self.where(start)}: a quoted field never closes before the end of "
                        'the file; close the quote, or write a quote inside a field as ""'
                    ) from None
                raise UserError(
                    f'{self.where(start)}: {exc}; a quote inside a field is written ""'
                ) from None

    def _parquet(self) -> Iterator[tuple[int, Any]]:
        try:
            parquet = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{self.name}: not a readable Parquet file ({exc})") from None
        yield from _batch_records(parquet.iter_batches(batch_size=2048), self)

    def _arrow(self) -> Iterator[tuple[int, Any]]:
        with pa.memory_map(str(self.path)) as mapped:
            try:
                batches: Iterator[pa.RecordBatch] = iter(pa.ipc.open_stream(mapped))
            except pa.ArrowInvalid:
                mapped.seek(0)
                try:
                    reader = pa.ipc.open_file(mapped)
                except pa.ArrowInvalid as exc:
                    raise UserError(f"{self.name}: not an Arrow file ({exc})") from None
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            yield from _batch_records(batches, self)


def _unreadable_json(exc: Exception) -> str:
    """The message for JSON that parses into something Python can't hold."""
    if isinstance(exc, RecursionError):
        return f"JSON nested deeper than {MAX_DEPTH} levels; records are flat or lists of messages"
    if "digits" in str(exc):  # Python's bound on int <-> str conversion
        return "a number over 4,300 digits long; write it as a string (in quotes)"
    return f"invalid JSON ({exc})"


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse `value` if its lists and objects nest deeper than `limit` (walked without
    recursion, so any depth is safe to check)."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [
            child
            for item in level
            if isinstance(item, list | dict)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return
    raise UserError(
        f"{where}: JSON nested deeper than {MAX_DEPTH} levels; records are flat or lists of "
        "messages"
    )


def _batch_records(batches: Iterator[pa.RecordBatch], source: Source) -> Iterator[tuple[int, Any]]:
    row = 0
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            records = batch.to_pylist()
        except (UnicodeDecodeError, pa.ArrowException) as exc:
            raise UserError(
                f"{source.where(row)}…: unreadable ({exc}); the file is cut short or damaged: "
                "write it again"
            ) from None
        for record in records:
            yield row, record
            row += 1


def _record_list(doc: Any, name: str) -> list[Any]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(lists) == 1 and len(doc) == 1:
            return lists[0]  # {"train": [...]}
        if all(k in doc for k in ("chosen", "rejected")) or "response_a" in doc:
            return [doc]
    raise UserError(
        f"{name}: expected a JSON list of records (or JSON lines); found {type(doc).__name__}"
    )


def find_sources(path: Path) -> list[Source]:
    """The files to read for `path`: itself, a `datasets` folder's Arrow files, or a folder's
    data files (not recursive)."""
    try:
        if path.is_dir():
            return _folder_sources(path)
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    if not path.name.lower().endswith(SUFFIXES):
        raise UserError(
            f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)} "
            "or a datasets save_to_disk folder"
        )
    return [_regular(path, path.name)]


def _regular(path: Path, name: str) -> Source:
    """A Source for `path` if it is a readable regular file: opening a FIFO blocks forever, and a
    device can stream without end."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode):
            with open(path, "rb"):
                return Source(path, name)
    except OSError as exc:
        raise UserError(
            f"{name}: cannot read ({exc.strerror}); check that it exists and is readable"
        ) from None
    raise UserError(
        f"{name}: not a regular file (a FIFO, socket or device); save the data to a file and "
        "ingest that"
    )


def _plain_name(name: Any) -> bool:
    """A file name with no folder part, so it stays inside the folder that lists it."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\x00")
    )


def _manifest(path: Path, key: str, kind: type) -> Any:
    """`key` of the JSON object in `path` (a datasets save_to_disk file), checked to be `kind`."""
    fix = "save the dataset again with save_to_disk, or ingest its data files"
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); {fix}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise UserError(f"{path}: not valid JSON ({str(exc)[:80]}); {fix}") from None
    value = doc.get(key, kind()) if isinstance(doc, dict) else None
    if not isinstance(value, kind):
        raise UserError(f"{path}: expected an object with a {kind.__name__} {key!r}; {fix}")
    return value


def _folder_sources(folder: Path, nested: bool = False) -> list[Source]:
    splits_file = folder / "dataset_dict.json"
    if splits_file.exists():
        splits = _manifest(splits_file, "splits", list)
        if not all(map(_plain_name, splits)):
            raise UserError(
                f"{splits_file}: split names must be plain folder names (no / or ..); "
                "a datasets folder lists only its own splits"
            )
        if len(splits) != 1:
            raise UserError(
                f"{folder}: a DatasetDict with splits {', '.join(splits)}; pass one, "
                f"e.g. {folder / (splits[0] if splits else 'train')}"
            )
        split = folder / splits[0]
        if nested or not split.is_dir():  # a split is one Dataset folder; a link back would loop
            raise UserError(
                f"{split}: not a split's Dataset folder; pass the folder holding its state.json"
            )
        return _folder_sources(split, nested=True)
    state = folder / "state.json"
    if state.exists():
        entries = _manifest(state, "_data_files", list)
        files: list[Any] = [e.get("filename") if isinstance(e, dict) else None for e in entries]
        if not files or not all(map(_plain_name, files)):
            raise UserError(
                f"{state}: _data_files must list plain file names (no / or ..) of the folder's "
                "Arrow files; save the dataset again with save_to_disk"
            )
        return [_regular(folder / f, f"{folder.name}/{f}") for f in files]
    try:
        found = sorted(
            p
            for p in folder.iterdir()
            if p.name.lower().endswith(SUFFIXES) and not p.name.startswith(".") and not p.is_dir()
        )
    except OSError as exc:
        raise UserError(
            f"{folder}: cannot list the folder ({exc.strerror}); check its permissions"
        ) from None
    if not found:
        raise UserError(
            f"{folder}: folder has no data files ({', '.join(SUFFIXES)}) and is not a "
            "datasets save_to_disk folder"
        )
    return [_regular(p, f"{folder.name}/{p.name}") for p in found]
