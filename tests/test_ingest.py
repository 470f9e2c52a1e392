"""`sculpt ingest`: every format and container, rejects with reasons, stable ids, and every bad
input ending in one clear line, exit code 2 and an untouched lake."""

from __future__ import annotations

import builtins
import gzip
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


# ---- hostile input: the CLI in a child process, so a crash shows as one -----------------------
SCULPT = Path(sys.executable).with_name("sculpt")


def _sculpt_ingest(args: list[str], lake: Path) -> tuple[int | None, str]:
    """(exit code, stderr) of `sculpt ingest ARGS --name keep`; None if it ran past a bound no
    well-behaved run comes near (opening a FIFO blocks forever)."""
    command = [str(SCULPT), "ingest", *args, "--name", "keep", "--lake", str(lake), "--quiet"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "still running"
    return done.returncode, done.stderr


def _refused(tmp_path: Path, cases: dict[str, tuple[Path | str, str]]) -> None:
    """Each case (PATH, text its error names) exits 2 with one line and leaves a lake holding
    the dataset `keep` byte-identical."""
    root = tmp_path / "lake"
    ingest(Lake.open(root), FIXTURES / "hh.jsonl", "keep")
    before = _lake_snapshot(root)
    with ThreadPoolExecutor(4) as pool:  # children mostly wait on imports: run a few at once
        results = dict(
            zip(
                cases,
                pool.map(lambda c: _sculpt_ingest([str(c[0])], root), cases.values()),
                strict=True,
            )
        )
    for label, (code, err) in results.items():
        assert code == 2, (label, code, err[-600:])
        assert err.count("\n") == 1 and "Traceback" not in err, (label, err)
        assert cases[label][1] in err, (label, err)
    assert _lake_snapshot(root) == before
    assert pairs_of(Lake.open(root), "keep")


def _trl(i: object, extra: str = "") -> str:
    """A TRL line; `extra` adds keys (`', "k": 1'`)."""
    return f'{{"prompt": "p{i}", "chosen": "a{i}", "rejected": "b{i}"{extra}}}\n'


def test_an_ingest_that_keeps_no_pair_fails_and_the_old_dataset_stays(tmp_path):
    same = "".join(f'{{"prompt": "p{i}", "chosen": "x", "rejected": "x"}}\n' for i in range(3))
    _refused(
        tmp_path,
        {
            "all identical": (
                _write(tmp_path / "same.jsonl", same),
                "same.jsonl: no pair kept of 3 rows (identical 3); e.g. same.jsonl row 0",
            ),
            "all ties": (
                _write(
                    tmp_path / "ties.csv",
                    "prompt,response_a,response_b,winner\np,a,b,tie\nq,c,d,tie\n",
                ),
                "ties.csv: no pair kept of 2 rows (tie 2)",
            ),
        },
    )


def test_a_csv_quote_that_never_closes_is_an_error(tmp_path):
    head = "prompt,chosen,rejected\nq1,a,b\n"
    _refused(
        tmp_path,
        {
            "open to the end": (
                _write(tmp_path / "open.csv", head + 'q2,"a, b\nq3,c,d\nq4,e,f\n'),
                "open.csv line 3: a quoted field never closes",
            ),
            "closed on a later line": (
                _write(tmp_path / "stray.csv", head + 'q2,"a\nq3,c,d\nq4,"e,f\n'),
                "stray.csv line 3: ',' expected after '\"'",
            ),
            "short row": (
                _write(tmp_path / "short.csv", head + "q2,a\n"),
                "short.csv line 3: fewer fields than the header (rejected missing)",
            ),
        },
    )


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [150, 3000, 20_000])
def test_json_nested_at_any_depth_is_one_line(tmp_path, depth):
    deep = _nested(depth)
    _refused(
        tmp_path,
        {
            "a meta value": (
                _write(tmp_path / "meta.jsonl", _trl(1) + _trl(2, f', "x": {deep}')),
                "meta.jsonl line 2: JSON nested deeper than 100 levels",
            ),
            "a response": (
                _write(tmp_path / "side.jsonl", f'{{"prompt": "p", "chosen": {deep}}}\n'),
                "side.jsonl line 1: JSON nested deeper than 100 levels",
            ),
            "a .json document": (
                _write(tmp_path / "doc.json", deep),
                "doc.json",
            ),
            "a .json record": (
                _write(tmp_path / "rec.json", "[" + _trl(1, f', "x": {deep}') + "]"),
                "rec.json",
            ),
        },
    )


@pytest.mark.parametrize("depth", [150, 3000])
def test_deep_json_in_a_csv_cell_is_text_or_one_line(tmp_path, depth):
    """CSV cells may carry message lists as JSON text; one too deep to parse is plain text."""
    cell = '[{""role"": ""user"", ""content"": ' + _nested(depth) + "}]"
    path = _write(tmp_path / "cell.csv", f'prompt,chosen,rejected\np,"{cell}",b\n')
    code, err = _sculpt_ingest([str(path)], tmp_path / "lake")
    assert code in (0, 2) and err.count("\n") <= 1 and "Traceback" not in err, err


def test_cut_or_damaged_files_are_one_line(tmp_path):
    data = "".join(_trl(i) for i in range(500)).encode()
    table = pa.Table.from_pylist([json.loads(line) for line in data.splitlines()])
    stream = pa.BufferOutputStream()
    with pa.ipc.new_stream(stream, table.schema) as writer:
        writer.write_table(table)
    arrow = stream.getvalue().to_pybytes()
    _refused(
        tmp_path,
        {
            "truncated lines": (
                _write(tmp_path / "cut.jsonl.gz", gzip.compress(data)[:-40]),
                "cut.jsonl.gz: not a whole gzip file",
            ),
            "not gzip": (_write(tmp_path / "plain.jsonl.gz", data), "plain.jsonl.gz: not a whole"),
            "truncated document": (
                _write(tmp_path / "cut.json.gz", gzip.compress(b"[" + data + b"]")[:-40]),
                "cut.json.gz: not a whole gzip file",
            ),
            "truncated Arrow stream": (
                _write(tmp_path / "cut.arrow", arrow[: len(arrow) // 2]),
                "cut.arrow: unreadable (Expected to be able to read",
            ),
        },
    )


def test_lone_surrogates_are_one_line(tmp_path):
    message = '{"role": "assistant", "content": "x\\udfff"}'
    other = '{"role": "assistant", "content": "y"}'
    _refused(
        tmp_path,
        {
            "in a response": (
                _write(tmp_path / "side.jsonl", _trl(1) + _trl("\\ud800")),
                "side.jsonl line 2: text holds a lone surrogate \\ud800",
            ),
            "in meta": (
                _write(tmp_path / "meta.jsonl", _trl(1, ', "m": {"k": ["\\udc00"]}')),
                "meta.jsonl line 1: text holds a lone surrogate \\udc00",
            ),
            "in a message": (
                _write(
                    tmp_path / "conv.jsonl",
                    f'{{"prompt": "p", "chosen": [{message}], "rejected": [{other}]}}\n',
                ),
                "conv.jsonl line 1: text holds a lone surrogate \\udfff",
            ),
        },
    )


def test_numbers_too_long_for_python_are_one_line(tmp_path):
    long = "9" * 5000
    _refused(
        tmp_path,
        {
            "json lines": (
                _write(tmp_path / "n.jsonl", _trl(1, f', "n": {long}')),
                "n.jsonl line 1: a number over 4,300 digits long",
            ),
            "json": (
                _write(tmp_path / "n.json", "[" + _trl(1, f', "n": {long}') + "]"),
                "n.json: a number over 4,300 digits long",
            ),
        },
    )


def test_big_and_small_integers_in_meta_stay_exact(tmp_path):
    lines = _trl(1, ', "n": 12345678901234567890, "k": 1') + _trl(2, ', "n": 1, "k": 1.5')
    root = tmp_path / "lake"
    code, err = _sculpt_ingest([str(_write(tmp_path / "ints.jsonl", lines))], root)
    assert code == 0, err
    metas = [json.loads(r["meta"]) for r in pairs_of(Lake.open(root), "keep")]
    assert metas == [{"n": 12345678901234567890, "k": 1}, {"n": 1, "k": 1.5}]
    assert [type(m["k"]) for m in metas] == [int, float]


def test_datasets_folders_with_broken_or_escaping_manifests_are_refused(tmp_path):
    outside = _write(tmp_path / "outside.jsonl", _trl(1))

    def folder(name: str, manifest: str, text: str) -> Path:
        (tmp_path / name).mkdir()
        _write(tmp_path / name / manifest, text)
        return tmp_path / name

    _refused(
        tmp_path,
        {
            "dict not JSON": (
                folder("d1", "dataset_dict.json", "{splits"),
                "d1/dataset_dict.json: not valid JSON",
            ),
            "dict a list": (
                folder("d2", "dataset_dict.json", "[1]"),
                "d2/dataset_dict.json: expected an object with a list 'splits'",
            ),
            "split up and out": (
                folder("d3", "dataset_dict.json", '{"splits": ["../outside.jsonl"]}'),
                "d3/dataset_dict.json: split names must be plain folder names",
            ),
            "split linking back": (
                _link_back(folder("d4", "dataset_dict.json", '{"splits": ["train"]}')),
                "d4/train/train: not a split's Dataset folder",
            ),
            "state not JSON": (folder("s1", "state.json", "{"), "s1/state.json: not valid JSON"),
            "state without names": (
                folder("s2", "state.json", '{"_data_files": [{"file": "x"}]}'),
                "s2/state.json: _data_files must list plain file names",
            ),
            "file up and out": (
                folder("s3", "state.json", '{"_data_files": [{"filename": "../outside.jsonl"}]}'),
                "s3/state.json: _data_files must list plain file names",
            ),
            "absolute file": (
                folder("s4", "state.json", f'{{"_data_files": [{{"filename": "{outside}"}}]}}'),
                "s4/state.json: _data_files must list plain file names",
            ),
            "missing file": (
                folder("s5", "state.json", '{"_data_files": [{"filename": "gone.arrow"}]}'),
                "s5/gone.arrow: cannot read (No such file or directory)",
            ),
        },
    )


def _link_back(folder: Path) -> Path:
    (folder / "train").symlink_to(".")  # a loop: read naively, it recurses until Python gives up
    return folder


def test_fifos_and_devices_are_refused_without_opening_them(tmp_path):
    os.mkfifo(tmp_path / "pipe.jsonl")
    (tmp_path / "zeros.jsonl").symlink_to("/dev/zero")
    (tmp_path / "box").mkdir()
    _write(tmp_path / "box" / "a.jsonl", _trl(1))
    os.mkfifo(tmp_path / "box" / "b.jsonl")
    not_regular = "not a regular file (a FIFO, socket or device)"
    _refused(
        tmp_path,
        {
            "a FIFO": (tmp_path / "pipe.jsonl", f"pipe.jsonl: {not_regular}"),
            "a device": (tmp_path / "zeros.jsonl", f"zeros.jsonl: {not_regular}"),
            "a FIFO in a folder": (tmp_path / "box", f"box/b.jsonl: {not_regular}"),
            "a device path": ("/dev/null", "/dev/null: unsupported file type"),
        },
    )


def test_unreadable_files_and_folders_are_one_line(tmp_path, monkeypatch, capsys):
    """Denied the way the kernel denies a user without read permission (tests may run as root,
    which chmod does not stop)."""
    file = _write(tmp_path / "locked.jsonl", _trl(1))
    folder = tmp_path / "locked"
    folder.mkdir()
    real_open, real_iterdir = builtins.open, Path.iterdir

    def denied(path: Any) -> OSError:
        return PermissionError(13, "Permission denied", str(path))

    def guarded_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == file:
            raise denied(path)
        return real_open(path, *args, **kwargs)

    def guarded_iterdir(self: Path) -> Any:
        if self == folder:
            raise denied(self)
        return real_iterdir(self)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "iterdir", guarded_iterdir)
    root = tmp_path / "lake"
    for path, expected in (
        (file, "locked.jsonl: cannot read (Permission denied)"),
        (folder, "locked: cannot list the folder (Permission denied)"),
    ):
        assert main(["ingest", str(path), "--name", "x", "--lake", str(root), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err


def test_staging_left_by_a_killed_ingest_is_removed_by_the_next(tmp_path):
    root = tmp_path / "lake"
    lake = Lake.open(root)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    )
    dead = int(ended.stdout)  # a process that has exited, like one killed mid-ingest
    partition = {"dataset": "keep"}
    left = [
        lake.staging_dir(table, partition, f"ingest-{dead}-0badc0de")
        for table in ("pairs", "rejects")
    ]
    left.append(lake.staging_dir("pairs", partition, "ingest-0badc0de"))  # older naming
    alive = lake.staging_dir("pairs", partition, f"ingest-{os.getpid()}-5afe5afe")
    for folder in (*left, alive):
        _write_part(folder)
    code, err = _sculpt_ingest([str(FIXTURES / "hh.jsonl")], root)
    assert code == 0, err
    assert [f.exists() for f in left] == [False, False, False]
    assert alive.exists()  # another ingest still running


def _write_part(folder: Path) -> None:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), folder / "part-00000.parquet")
