"""A lake on object storage: computed on a file system, published by `push`, read by `RemoteLake`.

Object stores have no atomic rename, so a push uploads a fresh snapshot prefix and then writes
one commit object, `_lake.json`, with a single put (atomic on S3/GCS). Readers only read the files
the commit lists, never by listing, so they see the old snapshot or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sculpt.errors import UserError
from sculpt.lake.store import (
    SCHEMA_VERSION,
    Lake,
    Vanished,
    _describe,
    _local_path,
    _newest_schema_version,
    connect_views,
    default_root,
    known_tables,
    partition_folder,
    run_sql,
    slug,
)

COMMIT = "_lake.json"
SNAPSHOTS = "_snapshots"
COMMIT_FORMAT = 1
"""Version of the `_lake.json` layout; readers refuse a newer one."""

STORAGE_OPTIONS_ENV = "SCULPT_STORAGE_OPTIONS"

_SNAPSHOT = re.compile(re.escape(SNAPSHOTS) + r"/[A-Za-z0-9_-]+")
_FILE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._=-]*(/[A-Za-z0-9_-][A-Za-z0-9._=-]*)*\.parquet")
_MANIFEST = re.compile(r"_manifest/[A-Za-z0-9_-][A-Za-z0-9._-]*\.json")
"""What a commit may name: snapshot-relative paths made of the characters sculpt writes, no
`..`, no leading `/`, no glob or quote characters, so a hostile commit reads nothing else."""


def is_remote(root: str | os.PathLike[str]) -> bool:
    """A URI with a scheme other than `file` (one letter is a Windows drive)."""
    scheme = urlparse(os.fspath(root)).scheme
    return len(scheme) > 1 and scheme != "file"


def storage_options(pairs: list[str] | None = None) -> dict[str, Any]:
    """Options for the fsspec filesystem: `$SCULPT_STORAGE_OPTIONS` (JSON), then `KEY=VALUE`s."""
    options: dict[str, Any] = {}
    env = os.environ.get(STORAGE_OPTIONS_ENV)
    if env:
        try:
            options = dict(json.loads(env))
        except (ValueError, TypeError):
            raise UserError(
                f"${STORAGE_OPTIONS_ENV}: not a JSON object; e.g. '{{\"anon\": true}}'"
            ) from None
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--storage-option {pair}: expected KEY=VALUE (e.g. anon=true)")
        try:
            options[key] = json.loads(value)  # true, 3, {"a": 1} typed; anything else a string
        except ValueError:
            options[key] = value
    return options


def remote_filesystem(uri: str, options: Mapping[str, Any] | None = None) -> Any:
    """The fsspec filesystem for `uri`'s scheme, or a one-line UserError naming what to install."""
    import fsspec
    from fsspec.registry import known_implementations

    protocol = urlparse(uri).scheme
    try:
        return fsspec.filesystem(protocol, **dict(options or {}))
    except ImportError:
        package = known_implementations.get(protocol, {}).get("class", protocol).split(".")[0]
        raise UserError(f"lake {uri}: {protocol}:// needs `pip install {package}`") from None
    except ValueError as exc:
        raise UserError(
            f"lake {uri}: {str(exc).splitlines()[0]}; use s3://, gs://, az://…"
        ) from None


def open_any(
    root: str | os.PathLike[str] | None = None, options: Mapping[str, Any] | None = None
) -> Lake | RemoteLake:
    """A local lake, or a read-only remote one for an object-store URI (read-only commands)."""
    root = root if root is not None else default_root()
    if is_remote(root):
        return RemoteLake.open(os.fspath(root), options)
    return Lake.open(root)


@dataclass(frozen=True)
class RemoteLake:
    """A pushed lake, read through its commit's file list. `root` is the URI, for messages."""

    root: str
    fs: Any
    commit: dict[str, Any]

    @classmethod
    def open(cls, uri: str, options: Mapping[str, Any] | None = None) -> RemoteLake:
        uri = uri.rstrip("/")
        fs = remote_filesystem(uri, options)
        try:
            commit = json.loads(fs.cat_file(f"{uri}/{COMMIT}"))
        except FileNotFoundError:
            raise UserError(
                f"lake {uri}: no {COMMIT}; publish a lake there first: "
                f"`sculpt lake push {uri} --lake ./lake`"
            ) from None
        except (OSError, ValueError) as exc:
            raise UserError(f"lake {uri}: cannot read {COMMIT}: {exc}") from None
        return cls(uri, fs, _checked_commit(commit, uri))

    # ---- reads --------------------------------------------------------------------------
    def _uri(self, relative: str) -> str:
        return f"{self.root}/{self.commit['snapshot']}/{relative}"

    def _entries(self, table: str, partition: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.commit["tables"].get(table, {}).get("files", [])
        prefix = "/".join([table, *(partition_folder(k, v) for k, v in (partition or {}).items())])
        return [e for e in entries if e["path"].startswith(prefix + "/")]

    def files(self, table: str, partition: Mapping[str, Any] | None = None) -> list[str]:
        return [self._uri(e["path"]) for e in self._entries(table, partition)]

    def has(self, table: str, partition: Mapping[str, Any] | None = None) -> bool:
        return bool(self._entries(table, partition))

    def tables(self) -> list[str]:
        return sorted(t for t, info in self.commit["tables"].items() if info["files"])

    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        try:
            return run_sql(self.connect(), query, params)
        except Vanished:
            raise UserError(
                f"lake {self.root}: a newer push replaced the snapshot being read; re-run"
            ) from None

    def _check_version(self, table: str) -> None:
        found = self.commit["tables"].get(table, {}).get("schema_version")
        if found is not None and found > SCHEMA_VERSION:
            raise UserError(
                f"lake table {table}: schema_version {found} is newer than this sculpt "
                f"({SCHEMA_VERSION}); upgrade sculpt"
            )

    def read(self, table: str, partition: Mapping[str, Any] | None = None) -> pa.Table:
        """Read one table (or partition) into Arrow; partition keys are not added as columns."""
        files = self.files(table, partition)
        if not files:
            raise UserError(f"lake {self.root}: no table {table!r}{_describe(partition)} yet")
        self._check_version(table)
        parts = []
        for uri in files:
            with self.fs.open(uri, "rb") as fh:
                parts.append(pq.ParquetFile(fh).read())
        return pa.concat_tables(parts, promote_options="default")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB reading the commit's files through the same fsspec filesystem."""
        con = duckdb.connect()
        con.register_filesystem(self.fs)
        tables = self.tables()
        for table in tables:
            self._check_version(table)
        try:
            return connect_views({t: self.files(t) for t in tables}, con)
        except Vanished:
            raise UserError(
                f"lake {self.root}: a newer push replaced the snapshot being read; re-run"
            ) from None

    def stats(self) -> list[tuple[str, int, int, int]]:
        """(table, rows, bytes, files) for every table, from the commit (no file is read)."""
        out = []
        for table in self.tables():
            entries = self.commit["tables"][table]["files"]
            rows = sum(e["rows"] for e in entries)
            out.append((table, rows, sum(e["size"] for e in entries), len(entries)))
        return out

    def manifest(self) -> list[dict[str, Any]]:
        names = sorted(self.commit.get("manifest", []))
        if not names:
            return []
        blobs = self.fs.cat([self._uri(n) for n in names])  # concurrent GETs on S3/GCS
        return [json.loads(blobs[key]) for key in sorted(blobs)]

    def done(self, stage: str, key: str) -> dict[str, Any] | None:
        name = f"_manifest/{slug(stage)}__{slug(key)}.json"
        if name not in self.commit.get("manifest", []):
            return None
        result: dict[str, Any] = json.loads(self.fs.cat_file(self._uri(name)))
        return result

    # ---- writes are refused ---------------------------------------------------------------
    def _read_only(self, *_: Any, **__: Any) -> NoReturn:
        raise UserError(
            f"lake {self.root}: read-only (object storage); run `sculpt <stage>` on a "
            "file-system lake and `sculpt lake push` it"
        )

    write = replace_partition = promote = staging_dir = _read_only
    append_log = mark_done = drop_partition = forget = _read_only


def _checked_commit(commit: Any, uri: str) -> dict[str, Any]:
    """The commit with only what a reader may follow: known tables (others ignored, with one
    warning) whose paths stay inside the snapshot; anything malformed is a one-line error."""

    def bad(what: str) -> UserError:
        return UserError(
            f"lake {uri}: {COMMIT} {what}; it was not written by `sculpt lake push`: push again"
        )

    if not isinstance(commit, dict):
        raise bad("is not a JSON object")
    if not isinstance(commit.get("format", 0), int) or commit.get("format", 0) > COMMIT_FORMAT:
        raise UserError(f"lake {uri}: {COMMIT} format is newer than this sculpt; upgrade it")
    if not isinstance(commit.get("snapshot"), str) or not _SNAPSHOT.fullmatch(commit["snapshot"]):
        raise bad("names no snapshot folder under _snapshots/")
    raw = commit.get("tables")
    if not isinstance(raw, dict):
        raise bad("has no `tables` object")
    tables: dict[str, Any] = {}
    for table in known_tables(raw, uri):
        info = raw[table]
        files = info.get("files") if isinstance(info, dict) else None
        if not isinstance(files, list) or not all(_good_entry(e, table) for e in files):
            raise bad(f"lists files of table {table} outside it (or without size and rows)")
        version = info.get("schema_version")
        tables[table] = {
            "files": files,
            "schema_version": version if isinstance(version, int) else None,
        }
    manifest = commit.get("manifest", [])
    if not isinstance(manifest, list) or not all(
        isinstance(n, str) and _MANIFEST.fullmatch(n) for n in manifest
    ):
        raise bad("lists manifest records outside _manifest/")
    return {**commit, "tables": tables, "manifest": manifest}


def _good_entry(entry: Any, table: str) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and entry["path"].startswith(table + "/")
        and _FILE.fullmatch(entry["path"]) is not None
        and all(
            isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool)
            for k in ("size", "rows")
        )
    )


# ---- push ---------------------------------------------------------------------------------
def _table_entries(lake: Lake, table: str) -> tuple[dict[str, Any], list[Path]]:
    """The commit's record of a table (paths without version folders) and the files to upload."""
    files = lake.files(table)
    entries = [
        {"path": lake.relative(f), "size": f.stat().st_size, "rows": pq.read_metadata(f).num_rows}
        for f in files
    ]
    versions = [v for f in files if (v := _newest_schema_version([f])) is not None]
    return {"files": entries, "schema_version": max(versions, default=None)}, files


def _upload(fs: Any, pairs: list[tuple[Path, str, int]], progress: bool) -> None:
    """Copy local files to their remote URIs with one bytes bar; a vanished file is a UserError."""
    from fsspec.callbacks import Callback
    from tqdm import tqdm

    bar = tqdm(
        total=sum(size for _, _, size in pairs),
        unit="B",
        unit_scale=True,
        desc="push",
        file=sys.stderr,
        disable=not progress,
    )

    class BarCallback(Callback):
        def relative_update(self, inc: int = 1) -> None:
            self.value += inc
            bar.update(inc)

    with bar:
        for i, (local, remote, size) in enumerate(pairs):
            bar.set_postfix_str(f"file {i + 1}/{len(pairs)}", refresh=False)
            callback = BarCallback()
            try:
                fs.put_file(str(local), remote, callback=callback)
            except FileNotFoundError:
                raise UserError(
                    f"lake push: {local} changed while pushing; re-run when no job writes the lake"
                ) from None
            bar.update(size - callback.value)  # for filesystems that skip the callback


def _commit(fs: Any, uri: str, record: dict[str, Any]) -> None:
    """The single put that publishes a snapshot (atomic on S3/GCS: readers see old or new)."""
    fs.pipe_file(f"{uri}/{COMMIT}", json.dumps(record, indent=1).encode())


def _drop_older_snapshots(fs: Any, uri: str, keep: str) -> None:
    """Best effort: delete snapshots older than `keep` (a newer one may be another push's)."""
    try:
        listed = fs.ls(f"{uri}/{SNAPSHOTS}", detail=False)
    except FileNotFoundError:
        return
    for path in listed:
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name < keep:
            try:
                fs.rm(f"{uri}/{SNAPSHOTS}/{name}", recursive=True)
            except OSError:
                pass


def push(
    source: str | os.PathLike[str] | None,
    uri: str,
    options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Publish a file-system lake's tables and manifest to `uri`; returns the commit record."""
    if not is_remote(uri):
        raise UserError(f"lake push {uri}: not an object-store URI (s3://bucket/prefix, gs://…)")
    path = _local_path(source if source is not None else default_root())
    lake = Lake(path)
    if not path.is_dir() or not lake.tables():
        raise UserError(f"lake {path}: no tables to push; build the lake there first")
    uri = uri.rstrip("/")
    fs = remote_filesystem(uri, options)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    snapshot = f"{stamp}-{uuid.uuid4().hex[:8]}"
    listed = {table: _table_entries(lake, table) for table in lake.tables()}
    tables = {table: record for table, (record, _) in listed.items()}
    manifest = sorted(p.relative_to(path).as_posix() for p in (path / "_manifest").glob("*.json"))
    prefix = f"{uri}/{SNAPSHOTS}/{snapshot}"
    pairs = [
        (local, f"{prefix}/{entry['path']}", entry["size"])
        for record, files in listed.values()
        for entry, local in zip(record["files"], files, strict=True)
    ]
    pairs += [(path / rel, f"{prefix}/{rel}", (path / rel).stat().st_size) for rel in manifest]
    _upload(fs, pairs, progress)
    record = {
        "format": COMMIT_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(),
        "snapshot": f"{SNAPSHOTS}/{snapshot}",
        "tables": tables,
        "manifest": manifest,
    }
    _commit(fs, uri, record)
    _drop_older_snapshots(fs, uri, snapshot)
    return record
