"""`sculpt ingest`: every format and container, rejects with reasons, stable ids, and every bad
input ending in one clear line, exit code 2 and an untouched lake."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sculpt.cli.main import main
from sculpt.data.ingest import ingest, pair_id
from sculpt.errors import UserError
from sculpt.lake.store import Lake

FIXTURES = Path(__file__).parent / "fixtures"
HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def pairs_of(lake: Lake, name: str) -> list[dict]:
    return sorted(
        lake.read("pairs", {"dataset": name}).to_pylist(), key=lambda r: (r["source"], r["row"])
    )


def rejects_of(lake: Lake, name: str) -> dict[int, str]:
    return {r["row"]: r["reason"] for r in lake.read("rejects", {"dataset": name}).to_pylist()}


def test_trl_standard_keeps_good_rows_and_rejects_the_rest_with_reasons(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    report = ingest(lake, FIXTURES / "trl.jsonl", "trl")
    assert report.format == "trl"
    assert (report.rows, report.kept) == (6, 3)
    assert report.rejected == {"identical": 1, "empty_response": 1, "duplicate": 1}
    assert rejects_of(lake, "trl") == {2: "identical", 3: "empty_response", 4: "duplicate"}
    rows = pairs_of(lake, "trl")
    assert [r["row"] for r in rows] == [0, 1, 5]
    first = rows[0]
    assert json.loads(first["prompt"]) == [{"role": "user", "content": "How do I boil an egg?"}]
    assert first["chosen"].startswith("Put it in boiling water")
    assert json.loads(first["meta"]) == {"id": "t1"}
    assert first["source"] == "trl.jsonl"
    dup = lake.read("rejects", {"dataset": "trl"}).to_pylist()[2]
    assert dup["pair_id"] == first["pair_id"] and "row 0" in dup["detail"]


def test_pair_id_is_stable_and_ignores_outer_whitespace_and_crlf():
    messages = [{"role": "user", "content": "Q?"}]
    a = pair_id(messages, "Yes.", "No.")
    assert a == pair_id([{"role": "user", "content": " Q?\r\n"}], "Yes.\r\n", "  No.")
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != pair_id(messages, "No.", "Yes.")
    assert a == "701c7fe6e84155b7"  # pinned: ids key every table downstream


def test_conversational_explicit_prompt(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    report = ingest(lake, FIXTURES / "conversational.jsonl", "conv")
    assert report.format == "conversational" and report.kept == 2
    assert rejects_of(lake, "conv") == {2: "empty_response"}
    rows = pairs_of(lake, "conv")
    assert json.loads(rows[0]["prompt"]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What's 2+2?"},
    ]
    assert (rows[0]["chosen"], rows[0]["rejected"]) == ("4", "5")
    assert rows[1]["rejected"] == "No."  # content given as text parts


def test_implicit_prompt_is_the_shared_prefix(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    report = ingest(lake, FIXTURES / "implicit.jsonl", "imp")
    assert report.format == "conversational" and report.kept == 2
    assert rejects_of(lake, "imp") == {2: "no_shared_prompt"}
    rows = pairs_of(lake, "imp")
    assert [m["role"] for m in json.loads(rows[0]["prompt"])] == ["user", "assistant", "user"]
    assert rows[0]["rejected"] == "Rome is in Italy."
    assert json.loads(rows[1]["prompt"]) == [{"role": "user", "content": "Tell me a joke."}]


def test_hh_transcripts_become_user_and_assistant_turns(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    report = ingest(lake, FIXTURES / "hh.jsonl", "hh", fmt="hh")
    assert report.kept == 3 and report.rejected == {"no_shared_prompt": 1}
    assert rejects_of(lake, "hh") == {3: "no_shared_prompt"}
    rows = pairs_of(lake, "hh")
    assert json.loads(rows[1]["prompt"]) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What's your name?"},
    ]
    assert rows[1]["chosen"] == "I'm an assistant."
    # An explicit empty assistant turn is a choice (say nothing): kept and marked.
    assert rows[2]["chosen"] == "" and json.loads(rows[2]["meta"]) == {"empty_turn": "chosen"}


def test_pairwise_csv_picks_the_winner_and_rejects_ties(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    report = ingest(lake, FIXTURES / "pairwise.csv", "pw")
    assert report.format == "pairwise" and report.kept == 3
    assert rejects_of(lake, "pw") == {3: "tie"}
    rows = pairs_of(lake, "pw")
    assert rows[0]["chosen"].startswith("About 384,000") and rows[0]["rejected"] == "Very far."
    assert (
        rows[1]["chosen"].startswith("Soft rain on the roof\n") and rows[1]["rejected"] == "Rain."
    )
    assert json.loads(rows[1]["meta"])["winner"] == "b"


def test_map_renames_columns(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    report = ingest(
        lake,
        FIXTURES / "preferred.jsonl",
        "mapped",
        mapping="prompt=question,chosen=preferred,rejected=dispreferred",
    )
    assert report.format == "trl" and report.kept == 2
    assert pairs_of(lake, "mapped")[1]["chosen"] == "No, it's roughly a sphere."


def _containers(tmp_path: Path) -> dict[str, Path]:
    """The TRL fixture in every supported container."""
    records = [
        json.loads(line) for line in (FIXTURES / "trl.jsonl").read_text().splitlines() if line
    ]
    out = {"jsonl": FIXTURES / "trl.jsonl", "json": tmp_path / "trl.json"}
    out["json"].write_text(json.dumps(records))
    out["jsonl.gz"] = tmp_path / "trl.jsonl.gz"
    out["jsonl.gz"].write_bytes(gzip.compress((FIXTURES / "trl.jsonl").read_bytes()))
    out["parquet"] = tmp_path / "trl.parquet"
    pq.write_table(pa.Table.from_pylist(records), out["parquet"])
    out["csv"] = tmp_path / "trl.csv"
    import csv

    with open(out["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    import datasets

    out["datasets"] = tmp_path / "trl_hf"
    datasets.Dataset.from_list(records).save_to_disk(str(out["datasets"]))
    return out


def test_every_container_gives_the_same_pairs(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    expected = None
    for kind, path in _containers(tmp_path).items():
        report = ingest(lake, path, kind.replace(".", "_"))
        ids = [r["pair_id"] for r in pairs_of(lake, kind.replace(".", "_"))]
        assert report.kept == 3, kind
        expected = expected or ids
        assert ids == expected, kind


def test_reingest_replaces_the_partition_and_leaves_others(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    ingest(lake, FIXTURES / "trl.jsonl", "a")
    ingest(lake, FIXTURES / "hh.jsonl", "b")
    ingest(lake, FIXTURES / "hh.jsonl", "a")
    rows = lake.sql("select dataset, count(*) n from pairs group by 1").to_pylist()
    counts = {r["dataset"]: r["n"] for r in rows}
    assert counts == {"a": 3, "b": 3}
    assert lake.done("ingest", "a")["sources"] == ["hh.jsonl"]


@pytest.mark.skipif(not HH.exists(), reason="shared HH-RLHF file missing")
def test_hh_rlhf_keeps_2307_and_reports_the_5_without_a_shared_prompt(tmp_path, capsys):
    lake = Lake.open(tmp_path / "lake")
    assert (
        main(["ingest", str(HH), "--name", "hh", "--lake", str(tmp_path / "lake"), "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert "2,307 kept" in out and "no_shared_prompt 5" in out
    assert "row 1254: no_shared_prompt" in out
    assert lake.sql("select count(*) n from pairs").to_pylist() == [{"n": 2307}]
    assert sorted(rejects_of(lake, "hh")) == [1254, 1688, 1950, 1952, 2036]


# ---- bad input: one line, exit 2, lake untouched ---------------------------------------------
def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


GOOD = '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name → (extra CLI args after PATH, text the error line must contain)."""
    empty_dir = tmp / "nothing_here"
    empty_dir.mkdir()
    (empty_dir / "notes.txt").write_text("hello")
    huge = tmp / "huge.jsonl"
    with open(huge, "wb") as fh:  # a 50 MB line, written in chunks
        fh.write(GOOD.encode())
        fh.write(b'{"prompt": "')
        for _ in range(50):
            fh.write(b"x" * 2**20)
        fh.write(b'", "chosen": "a", "rejected": "b"}\n')
    return {
        "missing file": ([str(tmp / "nope.jsonl")], "nope.jsonl: no such file"),
        "invalid json": (
            [str(_write(tmp / "bad.jsonl", GOOD + GOOD + '{"prompt": "p",\n'))],
            "bad.jsonl line 3: invalid JSON",
        ),
        "missing key": (
            [str(_write(tmp / "nokey.jsonl", GOOD + '{"prompt": "p", "chosen": "a"}\n'))],
            "nokey.jsonl line 2: missing key 'rejected'",
        ),
        "non-string": (
            [
                str(
                    _write(
                        tmp / "num.jsonl", GOOD + '{"prompt": "p", "chosen": 5, "rejected": "b"}\n'
                    )
                )
            ],
            "num.jsonl line 2: chosen is int 5, expected a string",
        ),
        "non-string message": (
            [
                str(
                    _write(
                        tmp / "msg.jsonl",
                        '{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}], "rejected": []}\n',
                    )
                )
            ],
            "msg.jsonl line 1: chosen[1].content is int 3",
        ),
        "non-utf8": (
            [
                str(
                    _write(
                        tmp / "latin.jsonl",
                        GOOD.encode() + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n',
                    )
                )
            ],
            "latin.jsonl line 2: not UTF-8 (byte 0xe9",
        ),
        "50 MB line": ([str(huge)], "huge.jsonl line 2: line longer than 16 MiB"),
        "empty file": ([str(_write(tmp / "empty.jsonl", "\n\n"))], "empty.jsonl: empty"),
        "empty folder": ([str(empty_dir)], "nothing_here: folder has no data files"),
        "unknown format": (
            [str(FIXTURES / "trl.jsonl"), "--format", "xml"],
            "--format xml: unknown",
        ),
        "map to missing column": (
            [str(FIXTURES / "trl.jsonl"), "--map", "chosen=preferred"],
            "trl.jsonl: --map chosen=preferred: no such column",
        ),
        "bad map syntax": (
            [str(FIXTURES / "trl.jsonl"), "--map", "chosen"],
            "--map chosen: expected FIELD=COLUMN",
        ),
        "undetectable": (
            [str(_write(tmp / "odd.jsonl", '{"question": "q", "answer": "a"}\n'))],
            "odd.jsonl line 1: cannot tell the format",
        ),
    }


def _lake_snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_every_bad_input_is_one_line_exit_2_and_leaves_the_lake_alone(tmp_path, capsys):
    root = tmp_path / "lake"
    assert (
        main(
            ["ingest", str(FIXTURES / "hh.jsonl"), "--name", "keep", "--lake", str(root), "--quiet"]
        )
        == 0
    )
    before = _lake_snapshot(root)
    capsys.readouterr()
    for label, (args, expected) in _bad_inputs(tmp_path).items():
        code = main(["ingest", *args, "--name", "keep", "--lake", str(root), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, label
        assert err.count("\n") == 1 and "Traceback" not in err, (label, err)
        assert expected in err, (label, err)
        assert _lake_snapshot(root) == before, label


def test_a_bad_row_late_in_a_parquet_file_names_its_row(tmp_path):
    path = tmp_path / "late.parquet"
    rows = [{"prompt": "p", "chosen": f"a{i}", "rejected": "b"} for i in range(5000)]
    rows[4321]["chosen"] = None
    rows[4999]["prompt"] = None
    pq.write_table(pa.Table.from_pylist(rows), path)
    lake = Lake.open(tmp_path / "lake")
    with pytest.raises(UserError, match=r"late.parquet row 4999: prompt is null"):
        ingest(lake, path, "late")
    assert not lake.has("pairs")
    assert not list((tmp_path / "lake").rglob("*.parquet"))


def test_a_datasets_dict_folder_names_its_splits(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"prompt": "p", "chosen": "a", "rejected": "b"}]),
            "test": datasets.Dataset.from_list([{"prompt": "q", "chosen": "a", "rejected": "b"}]),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UserError, match="splits train, test"):
        ingest(Lake.open(tmp_path / "lake"), tmp_path / "dd", "x")
    report = ingest(Lake.open(tmp_path / "lake"), tmp_path / "dd" / "train", "x")
    assert report.kept == 1
    shutil.rmtree(tmp_path / "dd")


@pytest.mark.skipif(not HH.exists(), reason="shared HH-RLHF file missing")
def test_the_fast_reader_and_the_line_reader_agree(tmp_path, monkeypatch):
    """Flat JSON lines go through Arrow's parser; the line-by-line reader must give the same."""
    import sculpt.data.sources

    lake = Lake.open(tmp_path / "lake")
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"q{i}",
                    "chosen": "yes",
                    "rejected": f"no {i}",
                    "score": i * 0.5,
                    "ok": i % 2 == 0,
                    "id": i,
                }
            )
            + "\n"
            for i in range(50)
        )
    )
    for path in (HH, extra):
        ingest(lake, path, "fast")
        fast = lake.read("pairs", {"dataset": "fast"}).to_pylist()

        def refuse(self):
            raise sculpt.data.sources.NotFlat("forced")
            yield  # a generator, like the real one

        with monkeypatch.context() as patch:
            patch.setattr(sculpt.data.sources.Source, "_jsonl_arrow", refuse)
            ingest(lake, path, "slow")
        assert lake.read("pairs", {"dataset": "slow"}).to_pylist() == fast
    assert json.loads(fast[3]["meta"]) == {"score": 1.5, "ok": False, "id": 3}


def test_a_folder_of_files_in_different_formats(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("hh.jsonl", "pairwise.csv", "trl.json"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "README.txt").write_text("not data")
    lake = Lake.open(tmp_path / "lake")
    report = ingest(lake, folder, "mixed")
    assert report.format == "hh+pairwise+trl"
    assert report.kept == 3 + 3 + 2
    sources = {r["source"] for r in lake.read("pairs").to_pylist()}
    assert sources == {"mixed/hh.jsonl", "mixed/pairwise.csv", "mixed/trl.json"}
    assert {(r["source"], r["row"]) for r in lake.read("rejects").to_pylist()} == {
        ("mixed/hh.jsonl", 3),
        ("mixed/pairwise.csv", 3),
    }


def test_conversations_in_csv_cells_and_nested_parquet(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    report = ingest(lake, FIXTURES / "conversational.csv", "csv_conv")
    assert (report.format, report.kept) == ("conversational", 2)
    first = pairs_of(lake, "csv_conv")[0]
    assert [m["role"] for m in json.loads(first["prompt"])] == ["system", "user"]
    assert (first["chosen"], first["rejected"]) == ("4", "5")
    records = [json.loads(line) for line in (FIXTURES / "implicit.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(records[:1]), tmp_path / "nested.parquet")
    report = ingest(lake, tmp_path / "nested.parquet", "nested")
    assert (report.format, report.kept) == ("conversational", 1)
    assert pairs_of(lake, "nested")[0]["rejected"] == "Rome is in Italy."
