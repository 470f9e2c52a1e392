"""The lake: pairs → Parquet → DuckDB round trip, the `lake` commands, atomic partition swaps
under an injected crash, the manifest, append-only logs, and refusing a newer schema."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sculpt.lake.store as lake_module
from sculpt.cli.main import main
from sculpt.data.ingest import ingest
from sculpt.errors import UserError
from sculpt.lake.store import SCHEMA_VERSION, Lake

FIXTURES = Path(__file__).parent / "fixtures"


def _pairs(n: int, tag: str = "") -> pa.Table:
    return pa.table(
        {
            "pair_id": [f"{tag}{i:013x}" for i in range(n)],
            "row": pa.array(range(n), pa.int64()),
            "prompt": [
                json.dumps([{"role": "user", "content": f"question {i} ✓"}]) for i in range(n)
            ],
            "chosen": [f"good answer {i}" for i in range(n)],
            "rejected": [f"bad answer {i}" for i in range(n)],
        }
    )


def test_pairs_round_trip_through_duckdb(tmp_path):
    lake = Lake.open(tmp_path)
    lake.replace_partition("pairs", {"dataset": "demo-v1"}, _pairs(50))
    lake.replace_partition("pairs", {"dataset": "other"}, _pairs(7))
    back = lake.sql("select * from pairs where dataset = 'demo-v1' order by row")
    assert back.num_rows == 50
    assert back.column("chosen").to_pylist() == _pairs(50).column("chosen").to_pylist()
    assert json.loads(back.column("prompt")[3].as_py())[0]["content"] == "question 3 ✓"
    assert set(back.column("schema_version").to_pylist()) == {SCHEMA_VERSION}
    assert lake.read("pairs", {"dataset": "other"}).num_rows == 7
    assert lake.sql("select count(*) n from pairs").to_pylist() == [{"n": 57}]


def test_lake_ls_and_sql_commands(tmp_path, capsys):
    root = str(tmp_path / "lake")
    assert (
        main(["ingest", str(FIXTURES / "trl.jsonl"), "--name", "t", "--lake", root, "--quiet"]) == 0
    )
    capsys.readouterr()
    assert main(["lake", "ls", "--lake", root]) == 0
    listing = capsys.readouterr().out
    assert "pairs" in listing and "rejects" in listing
    query = "select row, chosen from pairs order by row"
    assert main(["lake", "sql", query, "--format", "csv", "--lake", root]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["row", "chosen"] and [r[0] for r in rows[1:]] == ["0", "1", "5"]
    assert (
        main(
            [
                "lake",
                "sql",
                "select reason from rejects order by row",
                "--format",
                "json",
                "--lake",
                root,
            ]
        )
        == 0
    )
    reasons = [json.loads(line)["reason"] for line in capsys.readouterr().out.splitlines()]
    assert reasons == ["identical", "empty_response", "duplicate"]
    assert main(["lake", "sql", "select nope from pairs", "--lake", root]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_crash_mid_write_leaves_the_old_partition_and_no_partial_table(tmp_path):
    lake = Lake.open(tmp_path)
    lake.replace_partition("pairs", {"dataset": "d"}, _pairs(10, "old"))

    def parts():
        yield _pairs(100, "new")
        raise RuntimeError("disk full")  # the crash, after one part landed in staging

    with pytest.raises(RuntimeError):
        lake.replace_partition("pairs", {"dataset": "d"}, parts())
    assert lake.read("pairs", {"dataset": "d"}).column("pair_id")[0].as_py().startswith("old")
    assert lake.sql("select count(*) n from pairs").to_pylist() == [{"n": 10}]
    # nothing left over: no staging or trash folder, one version of the partition
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == [".v", "dataset=d"]
    assert len(list((tmp_path / "pairs" / ".v").iterdir())) == 1


def test_a_crash_inside_the_parquet_writer_leaves_no_file(tmp_path, monkeypatch):
    lake = Lake.open(tmp_path)
    real = pq.write_table

    def half_write(table, where, **kwargs):
        real(table.slice(0, 1), where, **kwargs)  # some bytes reach the tmp file…
        raise OSError("killed")  # …then the process dies

    monkeypatch.setattr(lake_module.pq, "write_table", half_write)
    with pytest.raises(OSError):
        lake.replace_partition("pairs", {"dataset": "d"}, _pairs(10))
    with pytest.raises(OSError):
        ingest(lake, FIXTURES / "trl.jsonl", "d")  # ingest's own staging is cleaned up too
    monkeypatch.undo()
    assert not lake.has("pairs") and lake.tables() == []
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_staging_folder_left_by_a_killed_process_is_invisible(tmp_path):
    lake = Lake.open(tmp_path)
    lake.replace_partition("pairs", {"dataset": "d"}, _pairs(5))
    staging = lake.staging_dir("pairs", {"dataset": "d"}, "scan-abc")
    lake_module.write_parquet_atomic(_pairs(99), staging / "part-00000.parquet")
    assert lake.files("pairs") == lake.files("pairs", {"dataset": "d"})
    assert lake.stats()[0][:2] == ("pairs", 5)
    assert lake.sql("select count(*) n from pairs").to_pylist() == [{"n": 5}]


def test_manifest_records_finished_stages(tmp_path):
    lake = Lake.open(tmp_path)
    assert lake.done("scan", "d/m") is None
    lake.mark_done("scan", "d/m", {"shards": 3})
    assert lake.done("scan", "d/m")["shards"] == 3
    ingest(lake, FIXTURES / "hh.jsonl", "hh")
    stages = {(m["stage"], m["key"]) for m in lake.manifest()}
    assert stages == {("scan", "d/m"), ("ingest", "hh")}
    lake.forget("scan", "d/m")
    assert lake.done("scan", "d/m") is None


def test_logs_append_and_never_overwrite(tmp_path):
    lake = Lake.open(tmp_path)
    for i in range(3):
        lake.append_log(
            "decisions", [{"ts": time.time(), "concept_id": f"lex:c{i}", "action": "allow"}]
        )
    got = lake.sql("select concept_id from decisions order by ts").column("concept_id").to_pylist()
    assert got == ["lex:c0", "lex:c1", "lex:c2"]
    assert len(lake.files("decisions")) == 3
    with pytest.raises(ValueError):
        lake.append_log("pairs", [{"x": 1}])


def test_a_newer_schema_version_is_refused_clearly(tmp_path, capsys):
    lake = Lake.open(tmp_path)
    future = _pairs(3).append_column(
        "schema_version", pa.array([SCHEMA_VERSION + 1] * 3, pa.int16())
    )
    lake.replace_partition("pairs", {"dataset": "future"}, future)
    with pytest.raises(UserError, match=f"schema_version {SCHEMA_VERSION + 1} is newer"):
        lake.read("pairs")
    with pytest.raises(UserError, match="upgrade sculpt"):
        lake.sql("select * from pairs")
    assert main(["lake", "sql", "select 1", "--lake", str(tmp_path)]) == 2
    assert "newer than this sculpt" in capsys.readouterr().err


def test_lake_root_accepts_file_uris_and_refuses_object_stores(tmp_path: Path) -> None:
    lake = Lake.open(f"file://{tmp_path}/uri%20lake")
    assert lake.root == tmp_path / "uri lake" and lake.root.is_dir()
    with pytest.raises(UserError, match="s3://bucket/lake: sculpt writes lakes on a file system"):
        Lake.open("s3://bucket/lake")


def test_a_symlink_sculpt_did_not_make_is_not_followed(tmp_path):
    outside = Lake.open(tmp_path / "outside")
    outside.replace_partition("pairs", {"dataset": "o"}, _pairs(5))
    lake = Lake.open(tmp_path / "lake")
    lake.replace_partition("pairs", {"dataset": "d"}, _pairs(3))
    (lake.root / "pairs" / "dataset=evil").symlink_to(outside.root / "pairs" / "dataset=o")
    (lake.root / "pairs" / "dataset=d" / "x.parquet").symlink_to(outside.files("pairs")[0])
    assert lake.sql("select count(*) n from pairs").to_pylist() == [{"n": 3}]
    assert not lake.has("pairs", {"dataset": "evil"})


def test_a_partition_written_before_versions_is_replaced_and_read(tmp_path):
    lake = Lake.open(tmp_path)
    lake.write("pairs", _pairs(4, "old"), {"dataset": "d"})  # a plain folder, as older lakes have
    assert not (tmp_path / "pairs" / "dataset=d").is_symlink()
    lake.replace_partition("pairs", {"dataset": "d"}, _pairs(2, "new"))
    assert (tmp_path / "pairs" / "dataset=d").is_symlink()
    assert lake.read("pairs", {"dataset": "d"}).column("pair_id")[0].as_py().startswith("new")
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == [".v", "dataset=d"]
    lake.drop_partition("pairs", {"dataset": "d"})
    assert not lake.has("pairs") and not list((tmp_path / "pairs" / ".v").iterdir())
