"""A lake on object storage: `sculpt lake push` publishes a snapshot plus one `_lake.json` commit,
the read-only commands read it in place, an interrupted push leaves the old snapshot served, and
writes are refused. fsspec's in-memory filesystem plays the object store (no atomic rename)."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest
from lakes import cake_pairs, pairs_lake

import sculpt.lake.remote as lake_remote
from sculpt.analysis.analyze import analyze
from sculpt.analysis.config import AnalyzeConfig
from sculpt.cli.main import main
from sculpt.concepts.lexical import score_dataset
from sculpt.data.demo import write_demo
from sculpt.data.ingest import ingest
from sculpt.errors import UserError
from sculpt.lake.remote import RemoteLake, open_any, push, storage_options
from sculpt.lake.store import SCHEMA_VERSION, Lake

WRITES = (
    "write",
    "replace_partition",
    "promote",
    "staging_dir",
    "append_log",
    "mark_done",
    "drop_partition",
    "forget",
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real lake: demo pairs ingested, lexical concepts scored, one analysis, one decision."""
    root = tmp_path_factory.mktemp("audited") / "lake"
    lake = Lake.open(root)
    ingest(lake, write_demo(root.parent / "demo.jsonl", n=80, seed=3), "demo")
    score_dataset(lake, "demo")
    analyze(lake, "demo", AnalyzeConfig(n_boot=100, n_perm=200), progress=False)
    lake.append_log("decisions", [{"ts": 1.0, "concept_id": "lex:bold", "action": "allow"}])
    return root


@pytest.fixture
def bucket() -> Iterator[str]:
    uri = f"memory://lake-{uuid.uuid4().hex[:8]}"
    yield uri
    fs = fsspec.filesystem("memory")
    if fs.exists(uri):
        fs.rm(uri, recursive=True)


def _out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def _snapshots(uri: str) -> list[str]:
    fs = fsspec.filesystem("memory")
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{uri}/_snapshots", detail=False))


def test_read_only_commands_give_the_same_answers_on_the_pushed_lake(audited, bucket, capsys):
    local = str(audited)
    _out(capsys, ["lake", "push", bucket, "--lake", local, "--quiet"])
    queries = [
        "select pair_id, dataset, chosen from pairs order by pair_id",
        "select concept_id, side, count(*) n, sum(score) s from concept_scores "
        "group by all order by all",
        "select concept_id, action from decisions",
    ]
    for query in queries:
        here = _out(capsys, ["lake", "sql", query, "--format", "json", "--lake", local])
        there = _out(capsys, ["lake", "sql", query, "--format", "json", "--lake", bucket])
        assert here == there and here.count("\n") > 0
    assert _out(capsys, ["lake", "ls", "--lake", bucket]) == _out(
        capsys, ["lake", "ls", "--lake", local]
    )
    hypotheses = ["hypotheses", "demo", "--top", "0", "--format", "json"]
    here = _out(capsys, [*hypotheses, "--lake", local])
    assert here and here == _out(capsys, [*hypotheses, "--lake", bucket])

    remote, lake = open_any(bucket), Lake.open(audited)
    assert isinstance(remote, RemoteLake) and remote.root == bucket
    assert remote.tables() == lake.tables()
    assert remote.read("pairs", {"dataset": "demo"}).equals(lake.read("pairs", {"dataset": "demo"}))
    assert remote.manifest() == lake.manifest()
    assert remote.done("ingest", "demo") == lake.done("ingest", "demo")
    assert remote.done("scan", "nothing") is None
    assert remote.has("concept_span_scores", {"dataset": "demo", "family": "lexical"})
    assert not remote.has("pairs", {"dataset": "other"})


def test_a_re_push_serves_the_new_data_and_drops_the_old_snapshot(tmp_path, bucket, capsys):
    lake = pairs_lake(tmp_path / "lake", cake_pairs(6))
    first = push(lake.root, bucket, progress=False)
    lake.replace_partition("pairs", {"dataset": "demo"}, pa.Table.from_pylist(cake_pairs(9)))
    lake.replace_partition("pairs", {"dataset": "more"}, pa.Table.from_pylist(cake_pairs(2)))
    second = push(lake.root, bucket, progress=False)
    assert first["snapshot"] != second["snapshot"]
    count = "select dataset, count(*) n from pairs group by 1 order by 1"
    assert open_any(bucket).sql(count).to_pylist() == [
        {"dataset": "demo", "n": 9},
        {"dataset": "more", "n": 2},
    ]
    assert _snapshots(bucket) == [second["snapshot"].rsplit("/", 1)[-1]]
    commit = json.loads(fsspec.filesystem("memory").cat_file(f"{bucket}/_lake.json"))
    assert commit["schema_version"] == SCHEMA_VERSION
    assert [e["rows"] for e in commit["tables"]["pairs"]["files"]] == [9, 2]


def test_a_push_interrupted_before_its_commit_leaves_the_old_snapshot_served(
    tmp_path, bucket, monkeypatch
):
    lake = pairs_lake(tmp_path / "lake", cake_pairs(6))
    push(lake.root, bucket, progress=False)
    reader = RemoteLake.open(bucket)  # holds the old commit through the failed push
    lake.replace_partition("pairs", {"dataset": "demo"}, pa.Table.from_pylist(cake_pairs(9)))

    def lost_connection(*args: object) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(lake_remote, "_commit", lost_connection)
    with pytest.raises(OSError):
        push(lake.root, bucket, progress=False)
    assert len(_snapshots(bucket)) == 2  # the new files landed, but nothing points at them
    for remote in (reader, RemoteLake.open(bucket)):
        assert remote.sql("select count(*) n from pairs").to_pylist() == [{"n": 6}]
        assert remote.read("pairs").num_rows == 6
    monkeypatch.undo()
    done = push(lake.root, bucket, progress=False)
    assert RemoteLake.open(bucket).read("pairs").num_rows == 9
    assert _snapshots(bucket) == [done["snapshot"].rsplit("/", 1)[-1]]  # the orphan is gone too


def test_a_remote_lake_refuses_writes_in_one_line(tmp_path, bucket, capsys):
    push(pairs_lake(tmp_path / "lake", cake_pairs(3)).root, bucket, progress=False)
    remote = RemoteLake.open(bucket)
    for name in WRITES:
        with pytest.raises(UserError, match=r"read-only \(object storage\)") as info:
            getattr(remote, name)("pairs", {"dataset": "demo"}, pa.table({"x": [1]}))
        assert "\n" not in str(info.value) and "sculpt lake push" in str(info.value)
    # the writing commands open lakes with Lake.open, which points at push
    assert main(["concept", "lexical", "demo", "--lake", bucket]) == 2
    assert "sculpt lake push" in capsys.readouterr().err


def test_a_newer_table_in_the_commit_is_refused(tmp_path, bucket):
    push(pairs_lake(tmp_path / "lake", cake_pairs(3)).root, bucket, progress=False)
    fs = fsspec.filesystem("memory")
    commit = json.loads(fs.cat_file(f"{bucket}/_lake.json"))
    commit["tables"]["pairs"]["schema_version"] = SCHEMA_VERSION + 1
    fs.pipe_file(f"{bucket}/_lake.json", json.dumps(commit).encode())
    with pytest.raises(UserError, match="upgrade sculpt"):
        RemoteLake.open(bucket).sql("select * from pairs")


def test_missing_commits_unknown_protocols_and_empty_sources_are_one_line_errors(
    tmp_path, bucket, capsys
):
    cases = [
        (["lake", "ls", "--lake", bucket], "no _lake.json; publish a lake there first"),
        (["lake", "sql", "select 1", "--lake", "nosuchfs://x"], "nosuchfs"),
        (["lake", "push", bucket, "--lake", str(tmp_path / "missing")], "no tables to push"),
        (["lake", "push", str(tmp_path / "x"), "--lake", str(tmp_path)], "not an object-store"),
        (["lake", "ls", "--lake", bucket, "--storage-option", "novalue"], "KEY=VALUE"),
    ]
    if importlib.util.find_spec("s3fs") is None:
        cases.append((["lake", "ls", "--lake", "s3://bucket/lake"], "pip install s3fs"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "missing").exists()  # a typo'd source is not created


def test_storage_options_come_from_the_environment_and_flags(monkeypatch):
    monkeypatch.setenv("SCULPT_STORAGE_OPTIONS", '{"anon": true, "region": "eu"}')
    got = storage_options(["region=us-east-1", "max_concurrency=8", "profile=prod"])
    assert got == {"anon": True, "region": "us-east-1", "max_concurrency": 8, "profile": "prod"}
    monkeypatch.setenv("SCULPT_STORAGE_OPTIONS", "anon")
    with pytest.raises(UserError, match="not a JSON object"):
        storage_options()
