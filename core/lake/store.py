"""The Parquet lake: atomic writes, partitions, append-only logs, a manifest, DuckDB views (DESIGN §3)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sculpt.errors import UserError

SCHEMA_VERSION = 1
"""Bumped whenever a table's columns change meaning; readers refuse newer lakes."""

LOG_TABLES = ("decisions", "runs", "evals")
"""Append-only tables: each write is a new small file; latest wins by timestamp."""

_PART_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_root() -> Path:
    """`$SCULPT_LAKE` or `./lake`."""
    return Path(os.environ.get("SCULPT_LAKE") or "lake")


def slug(value: str) -> str:
    """A partition-safe form of a name (`HuggingFaceTB/SmolLM2` → `HuggingFaceTB--SmolLM2`)."""
    return _PART_SAFE.sub("-", value.replace("/", "--")).strip("-") or "_"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, path: Path, **kwargs: Any) -> None:
    """Write `path` so a reader sees the whole file or none: tmp, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", **kwargs)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def with_schema_version(table: pa.Table) -> pa.Table:
    if "schema_version" in table.column_names:
        return table
    return table.append_column(
        "schema_version", pa.array([SCHEMA_VERSION] * table.num_rows, pa.int16())
    )


@dataclass(frozen=True)
class Lake:
    """A lake rooted at `root`. Tables are folders of hive-partitioned Parquet files."""

    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Lake:
        path = _local_path(root) if root is not None else _local_path(default_root())
        if path.exists() and not path.is_dir():
            raise UserError(f"lake {path}: not a folder; pass --lake PATH to a folder")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    # ---- layout -------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_dir(self, table: str, partition: Mapping[str, Any]) -> Path:
        path = self.table_dir(table)
        for key, value in partition.items():
            path = path / f"{key}={slug(str(value))}"
        return path

    def files(self, table: str, partition: Mapping[str, Any] | None = None) -> list[Path]:
        base = self.partition_dir(table, partition or {})
        if not base.exists():
            return []
        # Hidden folders are partitions being built (staging) or swapped out (trash).
        return sorted(
            p
            for p in base.rglob("*.parquet")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts)
        )

    def has(self, table: str, partition: Mapping[str, Any] | None = None) -> bool:
        return bool(self.files(table, partition))

    # ---- writes -------------------------------------------------------------------------
    def write(
        self, table: str, data: pa.Table, partition: Mapping[str, Any], part: str = "part-0"
    ) -> Path:
        """Atomically write one file of a partition (a shard, or the whole partition)."""
        path = self.partition_dir(table, partition) / f"{part}.parquet"
        write_parquet_atomic(with_schema_version(data), path)
        return path

    def replace_partition(
        self, table: str, partition: Mapping[str, Any], parts: Iterable[pa.Table] | pa.Table
    ) -> Path:
        """Replace a whole partition: build it beside the old one, then swap folders."""
        target = self.partition_dir(table, partition)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.staging")
        if isinstance(parts, pa.Table):
            parts = [parts]
        try:
            for i, data in enumerate(parts):
                write_parquet_atomic(with_schema_version(data), staging / f"part-{i:05d}.parquet")
            staging.mkdir(parents=True, exist_ok=True)
            self._swap(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def promote(self, staging: Path, table: str, partition: Mapping[str, Any]) -> Path:
        """Move a finished staging folder (from `staging_dir`) into place as the partition."""
        target = self.partition_dir(table, partition)
        self._swap(staging, target)
        return target

    def staging_dir(self, table: str, partition: Mapping[str, Any], key: str) -> Path:
        """A stable hidden folder for building a partition shard by shard (resumable)."""
        target = self.partition_dir(table, partition)
        return target.with_name(f".{target.name}.{slug(key)}.staging")

    def _swap(self, staging: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        trash = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.trash")
        if target.exists():
            os.replace(target, trash)
        os.replace(staging, target)
        _fsync_dir(target.parent)
        shutil.rmtree(trash, ignore_errors=True)

    def drop_partition(self, table: str, partition: Mapping[str, Any]) -> None:
        target = self.partition_dir(table, partition)
        if target.exists():
            trash = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.trash")
            os.replace(target, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def append_log(self, table: str, rows: list[dict[str, Any]]) -> Path:
        """Append rows to a log table as a new file; concurrent writers never collide."""
        if table not in LOG_TABLES:
            raise ValueError(f"{table} is not a log table ({', '.join(LOG_TABLES)})")
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{time.time_ns() % 10**9:09d}-{uuid.uuid4().hex[:8]}"
        data = pa.Table.from_pylist(rows)
        path = self.table_dir(table) / f"{name}.parquet"
        write_parquet_atomic(with_schema_version(data), path)
        return path

    # ---- manifest -----------------------------------------------------------------------
    def _manifest_path(self, stage: str, key: str) -> Path:
        return self.root / "_manifest" / f"{slug(stage)}__{slug(key)}.json"

    def mark_done(self, stage: str, key: str, info: Mapping[str, Any] | None = None) -> None:
        """Record that a stage finished for `key` (call only after its files landed)."""
        record = {"stage": stage, "key": key, "ts": time.time(), **(info or {})}
        write_json_atomic(record, self._manifest_path(stage, key))

    def done(self, stage: str, key: str) -> dict[str, Any] | None:
        path = self._manifest_path(stage, key)
        if not path.exists():
            return None
        with open(path) as fh:
            result: dict[str, Any] = json.load(fh)
        return result

    def forget(self, stage: str, key: str) -> None:
        self._manifest_path(stage, key).unlink(missing_ok=True)

    def manifest(self) -> list[dict[str, Any]]:
        folder = self.root / "_manifest"
        if not folder.exists():
            return []
        out = []
        for path in sorted(folder.glob("*.json")):
            with open(path) as fh:
                out.append(json.load(fh))
        return out

    # ---- reads --------------------------------------------------------------------------
    def tables(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and self.files(p.name)
        )

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with one view per table and the `concept_scores` view."""
        tables = self.tables()
        for table in tables:
            self._check_version(table)
        return connect_views({t: [str(p) for p in self.files(t)] for t in tables})

    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        return run_sql(self.connect(), query, params)

    def read(self, table: str, partition: Mapping[str, Any] | None = None) -> pa.Table:
        """Read one table (or partition) into Arrow; partition keys are not added as columns."""
        files = self.files(table, partition)
        if not files:
            raise UserError(f"lake {self.root}: no table {table!r}{_describe(partition)} yet")
        # ParquetFile.read, not pq.read_table: the dataset API imports pandas (~0.5 s).
        parts = [pq.ParquetFile(f).read() for f in files]
        data = pa.concat_tables(parts, promote_options="default")
        self._check_version(table, data)
        return data

    def _check_version(self, table: str, data: pa.Table | None = None) -> None:
        """Refuse a table written by a newer sculpt (DESIGN §3)."""
        if data is not None and "schema_version" in data.column_names:
            found = pc.max(data.column("schema_version")).as_py()
        else:
            found = _newest_schema_version(self.files(table))
        if found is not None and found > SCHEMA_VERSION:
            raise UserError(
                f"lake table {table}: schema_version {found} is newer than this sculpt "
                f"({SCHEMA_VERSION}); upgrade sculpt"
            )

    def stats(self) -> list[tuple[str, int, int, int]]:
        """(table, rows, bytes, files) for every table."""
        out = []
        for table in self.tables():
            files = self.files(table)
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            size = sum(f.stat().st_size for f in files)
            out.append((table, rows, size, len(files)))
        return out


def connect_views(
    files: Mapping[str, list[str]], con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB (new, or `con`) with one view per table over exactly `files`, plus
    `concept_scores`. An explicit file list, never a glob: a glob would also read hidden staging
    folders (or, on object storage, a snapshot not yet committed)."""
    con = con or duckdb.connect()
    for table, paths in files.items():
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        con.execute(
            f"create view {table} as select * from read_parquet([{listed}], "
            "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
        )
    _create_concept_scores(con, list(files))
    return con


def run_sql(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None
) -> pa.Table:
    """A query's result as Arrow (empty for statements without rows); closes `con`. A bad query
    is a one-line UserError."""
    try:
        relation = con.sql(query, params=params or None)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise UserError(f"sql: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def fetch_dicts(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None
) -> list[dict[str, Any]]:
    """A query's rows as dicts keyed by column name."""
    result = con.execute(query, params or [])
    names = [d[0] for d in result.description]
    return [dict(zip(names, rec, strict=True)) for rec in result.fetchall()]


def _local_path(root: str | os.PathLike[str]) -> Path:
    """A lake root as a local path: plain paths and `file://` URIs; object stores are refused."""
    text = os.fspath(root)
    if text.startswith("file://"):
        return Path(unquote(urlparse(text).path))
    scheme = urlparse(text).scheme
    if len(scheme) > 1:  # one letter is a Windows drive
        raise UserError(
            f"--lake {text}: sculpt writes lakes on a file system (local or a shared mount); "
            f"build it there, publish it with `sculpt lake push {text}`, and read it in place "
            "with `sculpt lake ls|sql` or `sculpt hypotheses` (README: Scaling out)"
        )
    return Path(text)


def _newest_schema_version(files: list[Path]) -> int | None:
    """schema_version of the newest file, from its footer statistics (no data read)."""
    if not files:
        return None
    meta = pq.ParquetFile(max(files, key=lambda f: f.stat().st_mtime)).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "schema_version" not in names:
        return None
    col = names.index("schema_version")
    found = None
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(col).statistics
        if stats is not None and stats.has_min_max:
            found = max(found or 0, int(stats.max))
    return found


def _describe(partition: Mapping[str, Any] | None) -> str:
    if not partition:
        return ""
    return " for " + ", ".join(f"{k}={v}" for k, v in partition.items())


def _create_concept_scores(con: duckdb.DuckDBPyConnection, tables: list[str]) -> None:
    """`concept_scores`: one per-span score for every concept kind (DESIGN §3)."""
    selects = []
    if "span_features" in tables:
        selects.append(
            "select dataset, 'sae:' || sae || ':' || cast(feature as varchar) as concept_id, "
            "pair_id, side, max_act as score from span_features"
        )
    if "concept_span_scores" in tables:
        selects.append("select dataset, concept_id, pair_id, side, score from concept_span_scores")
    if selects:
        con.execute("create view concept_scores as " + " union all ".join(selects))
