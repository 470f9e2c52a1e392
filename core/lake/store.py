"""The Parquet lake: atomic writes, partitions, append-only logs, a manifest, DuckDB views (DESIGN §3)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sculpt.errors import UserError
from sculpt.lake.schemas import TABLES

SCHEMA_VERSION = 1
"""Bumped whenever a table's columns change meaning; readers refuse newer lakes."""

LOG_TABLES = ("decisions", "runs", "evals")
"""Append-only tables: each write is a new small file; latest wins by timestamp."""

NAME_MAX = 200
"""Longest name (dataset, run id, SAE id, vector): a folder name is at most 255 bytes, and the
lake adds a key (`dataset=`) and a staging suffix around it."""

VERSIONS = ".v"
"""Hidden folder beside replaced partitions: `.v/<id>/<key=value>/` holds one version, and the
partition itself is a symlink to the version readers should see (see `Lake._swap`)."""

READ_PATIENCE = 60.0
"""Seconds a reader keeps listing a table again while partitions it listed are swapped out under
it (a writer replacing partitions in a burst): a count of retries gave up within a few seconds
on a loaded machine, where each read takes longer than the writer's next swap."""

_PART_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_VERSION_LINK = re.compile(re.escape(VERSIONS) + r"/[0-9a-f]{12}/[^/]+")
_warned: set[tuple[str, tuple[str, ...]]] = set()
T = TypeVar("T")


def default_root() -> Path:
    """`$SCULPT_LAKE` or `./lake`."""
    return Path(os.environ.get("SCULPT_LAKE") or "lake")


def slug(value: str) -> str:
    """A partition-safe form of a derived id (`HuggingFaceTB/SmolLM2` → `HuggingFaceTB--SmolLM2`).

    Not one-to-one (`a b` and `a-b` meet), so names a person gives go through `check_name`
    instead; never starts with `.` or `-`, so it is never a hidden folder or `..`."""
    return _PART_SAFE.sub("-", value.replace("/", "--")).lstrip(".-").rstrip("-") or "_"


def check_name(value: str, what: str = "dataset") -> str:
    """`value` if it names a folder as it is (ASCII letters, digits, `.`, `_`, `-`), else a
    UserError with a safe spelling to use instead.

    Refused rather than mapped: the folder name is also the `dataset` column DuckDB shows and the
    name decisions, plans and runs record, so only the name itself keeps them one value (a
    mapping made `日本語` and `中文` one dataset `_`, and `team a` the same as `team-a`)."""
    if _is_name(value):
        return value
    hint = slug(value)[:NAME_MAX]
    example = f", e.g. {hint!r}" if hint != "_" else ", e.g. 'data-1'"
    raise UserError(
        f"{what} name {value[:80]!r}{'…' if len(value) > 80 else ''}: use only ASCII letters, "
        f"digits, '.', '_' and '-' (not '.' or '-' first, not '-' last), at most {NAME_MAX} "
        f"characters{example}"
    )


def known_tables(names: Iterable[str], where: str) -> list[str]:
    """The names that are sculpt tables (`schemas.TABLES`); the others are ignored, with one
    warning per lake, so a folder or commit key never reaches SQL as a name."""
    names = sorted(set(names))
    unknown = tuple(n for n in names if n not in TABLES)
    if unknown and (where, unknown) not in _warned:
        _warned.add((where, unknown))
        shown = ", ".join(repr(n[:60]) for n in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        print(
            f"sculpt: warning: lake {where}: ignoring {shown}: not a sculpt table "
            f"(known: {', '.join(TABLES)})",
            file=sys.stderr,
        )
    return [n for n in names if n in TABLES]


class Vanished(Exception):
    """A file a reader listed was swapped out before it was read; listing again finds the new
    version (`retrying`)."""


def retrying(read: Callable[[], T]) -> T:
    """`read()`, run again when a partition it listed was replaced under it: readers see the
    old version or the new one, never an error (DESIGN §3)."""
    deadline, attempt = time.monotonic() + READ_PATIENCE, 0
    while True:
        try:
            return read()
        except (FileNotFoundError, Vanished):
            if time.monotonic() > deadline:
                raise UserError(
                    f"lake: partitions kept being replaced for {READ_PATIENCE:.0f} s while "
                    "reading; re-run when the job writing the lake is done"
                ) from None
        except duckdb.IOException as exc:
            if not _vanished(exc) or time.monotonic() > deadline:
                raise UserError(f"lake: cannot read ({str(exc).splitlines()[0]})") from None
        # a writer replacing partitions in a burst: let it pass rather than race it again
        time.sleep(min(0.005 * 2**attempt, 0.25))
        attempt += 1


def _vanished(exc: BaseException) -> bool:
    """A DuckDB error that means a listed file is gone (it was swapped out, not corrupt)."""
    text = str(exc)
    return "No such file or directory" in text or "No files found that match" in text


_WRITE_FIXES = {
    errno.EACCES: "make the lake writable, or pass --lake to a folder you can write",
    errno.EPERM: "make the lake writable, or pass --lake to a folder you can write",
    errno.EROFS: "the lake is on a read-only file system; pass --lake to a writable folder",
    errno.ENOSPC: "the disk is full; free space or pass --lake to another disk",
    errno.ENAMETOOLONG: f"a name is too long; use names of at most {NAME_MAX} characters",
    errno.ENOTDIR: "a file sits where a folder should be; pass --lake to a folder",
}


def _write_error(path: Path, exc: OSError) -> Exception:
    """One line for a write the file system refused (naming the folder and the fix); any other
    OSError as it is."""
    fix = _WRITE_FIXES.get(exc.errno or 0)
    if fix is None:
        return exc
    return UserError(f"{path}: cannot write ({exc.strerror or exc}); {fix}")


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
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", **kwargs)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _write_error(path.parent, exc) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _write_error(path.parent, exc) from None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


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
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"--lake {path}: cannot make the lake folder ({exc.strerror or exc}); "
                "pass --lake PATH to a folder you can write (not under a file)"
            ) from None
        return cls(path)

    # ---- layout -------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_dir(self, table: str, partition: Mapping[str, Any]) -> Path:
        path = self.table_dir(table)
        for key, value in partition.items():
            path = path / partition_folder(key, value)
        return path

    def files(self, table: str, partition: Mapping[str, Any] | None = None) -> list[Path]:
        """The table's (or partition's) Parquet files, each partition as one version: the paths
        name the version folder, so a reader never mixes files of two versions."""
        return retrying(lambda: self._list(table, partition or {}))

    def _list(self, table: str, partition: Mapping[str, Any]) -> list[Path]:
        base: Path | None = self.table_dir(table)
        versioned = False
        for key, value in partition.items():
            link = base / partition_folder(key, value) if base is not None else None
            base = _follow(link) if link is not None else None
            versioned = versioned or base != link
        if base is None or (not versioned and not base.is_dir()):
            return []
        # a version replaced meanwhile is FileNotFoundError here: `files` lists again
        return list(_walk(base))

    def relative(self, path: Path) -> str:
        """`path` (from `files`) relative to the root without version folders:
        `pairs/dataset=hh/part-00000.parquet`, the same before and after a replace."""
        parts = path.relative_to(self.root).parts
        kept = [
            p for i, p in enumerate(parts) if p != VERSIONS and (i == 0 or parts[i - 1] != VERSIONS)
        ]
        return "/".join(kept)

    def has(self, table: str, partition: Mapping[str, Any] | None = None) -> bool:
        return bool(self.files(table, partition))

    # ---- writes -------------------------------------------------------------------------
    def require_writable(self) -> None:
        """A one-line error before a stage starts writing into a lake it cannot write."""
        if not os.access(self.root, os.W_OK):
            raise UserError(
                f"lake {self.root}: read-only here; pass --lake to a folder you can write "
                "(read-only commands such as `sculpt lake sql` and `sculpt report` still work)"
            )

    def write(
        self, table: str, data: pa.Table, partition: Mapping[str, Any], part: str = "part-0"
    ) -> Path:
        """Atomically write one file of a partition (a shard, or the whole partition)."""
        self.require_writable()
        path = self.partition_dir(table, partition) / f"{part}.parquet"
        write_parquet_atomic(with_schema_version(data), path)
        return path

    def replace_partition(
        self, table: str, partition: Mapping[str, Any], parts: Iterable[pa.Table] | pa.Table
    ) -> Path:
        """Replace a whole partition: build it beside the old one, then swap it in."""
        self.require_writable()
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
        self.require_writable()
        target = self.partition_dir(table, partition)
        return target.with_name(f".{target.name}.{slug(key)}.staging")

    def _swap(self, staging: Path, target: Path) -> None:
        """Put `staging` in place of `target` with one rename(2): the partition is a symlink to
        a version folder `.v/<id>/<name>` beside it, and replacing the symlink is atomic, so a
        reader sees the old version or the new one. The old version is then deleted; a reader
        still reading it lists again (`retrying`)."""
        parent = target.parent
        version_id = uuid.uuid4().hex[:12]
        version = parent / VERSIONS / version_id / target.name
        link = parent / f".{target.name}.{version_id}.link"
        try:
            version.parent.mkdir(parents=True)
            os.replace(staging, version)
            try:
                os.symlink(Path(VERSIONS, version_id, target.name), link, target_is_directory=True)
            except OSError:  # no symlinks on this file system: a plain folder, two renames
                os.replace(version, staging)
                shutil.rmtree(version.parent, ignore_errors=True)
                self._swap_folders(staging, target)
                return
            old = _version_root(target)
            if target.is_symlink() or not target.exists():
                os.replace(link, target)  # the commit
            else:  # a partition written before versions: a real folder, moved aside once
                old = target.with_name(f".{target.name}.{version_id}.trash")
                os.replace(target, old)
                os.replace(link, target)
        except OSError as exc:
            _unlink_quietly(link)
            raise _write_error(parent, exc) from None
        _fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _swap_folders(self, staging: Path, target: Path) -> None:
        trash = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.trash")
        if target.exists():
            os.replace(target, trash)
        os.replace(staging, target)
        _fsync_dir(target.parent)
        shutil.rmtree(trash, ignore_errors=True)

    def drop_partition(self, table: str, partition: Mapping[str, Any]) -> None:
        self.require_writable()
        target = self.partition_dir(table, partition)
        if target.is_symlink():
            old = _version_root(target)
            target.unlink()
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        elif target.exists():
            trash = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.trash")
            os.replace(target, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def append_log(self, table: str, rows: list[dict[str, Any]]) -> Path:
        """Append rows to a log table as a new file; concurrent writers never collide."""
        if table not in LOG_TABLES:
            raise ValueError(f"{table} is not a log table ({', '.join(LOG_TABLES)})")
        self.require_writable()
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
        self.require_writable()
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
        if not self.root.is_dir():
            return []
        found = [
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and self.files(p.name)
        ]
        return known_tables(found, str(self.root))

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with one view per table and the `concept_scores` view."""

        def once() -> duckdb.DuckDBPyConnection:
            tables = self.tables()
            for table in tables:
                self._check_version(table)
            return connect_views({t: [str(p) for p in self.files(t)] for t in tables})

        return retrying(once)

    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        return retrying(lambda: run_sql(self.connect(), query, params))

    def read(self, table: str, partition: Mapping[str, Any] | None = None) -> pa.Table:
        """Read one table (or partition) into Arrow; partition keys are not added as columns."""

        def once() -> pa.Table:
            files = self.files(table, partition)
            if not files:
                raise UserError(f"lake {self.root}: no table {table!r}{_describe(partition)} yet")
            # ParquetFile.read, not pq.read_table: the dataset API imports pandas (~0.5 s).
            parts = [pq.ParquetFile(f).read() for f in files]
            data = pa.concat_tables(parts, promote_options="default")
            self._check_version(table, data)
            return data

        return retrying(once)

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

        def once() -> list[tuple[str, int, int, int]]:
            out = []
            for table in self.tables():
                files = self.files(table)
                rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
                size = sum(f.stat().st_size for f in files)
                out.append((table, rows, size, len(files)))
            return out

        return retrying(once)


def _is_name(value: str) -> bool:
    return value == slug(value) and len(value) <= NAME_MAX


def partition_folder(key: str, value: Any) -> str:
    """`key=value`: a dataset name as given (`check_name`), any other value through `slug`."""
    text = check_name(str(value)) if key == "dataset" else slug(str(value))
    return f"{key}={text}"


def _follow(path: Path) -> Path | None:
    """The version folder a partition symlink names now, `path` itself when it is no symlink,
    None for a symlink sculpt did not make: only `.v/<id>/<name>` links beside the partition are
    followed, so a lake's symlinks never lead a reader outside it."""
    if not path.is_symlink():
        return path
    target = os.readlink(path)  # FileNotFoundError if dropped meanwhile: the reader lists again
    if _VERSION_LINK.fullmatch(target) and target.endswith("/" + path.name):
        return path.parent / target
    return None


def _version_root(target: Path) -> Path | None:
    """The `.v/<id>` folder the partition symlink `target` names now, if it is one."""
    followed = _follow(target)
    if followed is None or followed == target:
        return None
    return followed.parent


def _walk(folder: Path) -> Iterator[Path]:
    """Parquet files under `folder`, sorted, skipping hidden entries (staging, trash, old
    versions), following only partition symlinks, each resolved once."""
    with os.scandir(folder) as entries:
        found = sorted(entries, key=lambda e: e.name)
    for entry in found:
        if entry.name.startswith("."):
            continue
        path = folder / entry.name
        if entry.is_symlink():
            followed = _follow(path)
            if followed is not None:  # gone meanwhile: FileNotFoundError, the reader lists again
                yield from _walk(followed)
        elif entry.is_dir():
            yield from _walk(path)
        elif entry.name.endswith(".parquet") and entry.is_file():
            yield path


def connect_views(
    files: Mapping[str, list[str]], con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB (new, or `con`) with one view per table over exactly `files`, plus
    `concept_scores`. An explicit file list, never a glob: a glob would also read hidden staging
    folders (or, on object storage, a snapshot not yet committed)."""
    con = con or duckdb.connect()
    tables = [t for t in files if t in TABLES]  # names are sculpt's own; never spliced from data
    view = "concept_scores"
    try:
        for view in tables:
            listed = ", ".join(_literal(p) for p in files[view])
            con.execute(
                f"create view {_identifier(view)} as select * from read_parquet([{listed}], "
                "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
            )
        _create_concept_scores(con, tables)
    except duckdb.Error as exc:
        con.close()
        if isinstance(exc, duckdb.IOException) and _vanished(exc):
            raise Vanished(str(exc)) from None
        raise UserError(f"lake table {view}: cannot read ({str(exc).splitlines()[0]})") from None
    return con


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_sql(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None
) -> pa.Table:
    """A query's result as Arrow (empty for statements without rows); closes `con`. A bad query
    is a one-line UserError."""
    try:
        relation = con.sql(query, params=params or None)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.IOException as exc:
        if _vanished(exc):
            raise Vanished(str(exc)) from None
        raise UserError(f"sql: {str(exc).splitlines()[0]}") from None
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
