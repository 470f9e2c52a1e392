"""`sculpt audit` end to end on a tiny model: each stage runs once, a second run reuses the lake."""

from __future__ import annotations

import json
from pathlib import Path

import html5lib
import pytest

from sculpt.analysis.known_answer import planted_ranks
from sculpt.cli.main import main
from sculpt.data.demo import write_demo
from sculpt.lake.store import Lake
from sculpt.report.data import collect

NS = "{http://www.w3.org/1999/xhtml}"
TINY = ["--model", "tiny", "--sae-width", "32", "--sae-k", "4", "--sae-epochs", "1", "--quiet"]


def stage_lines(out: str) -> dict[str, str]:
    """`name → ran|reused` from the stage table printed at the end of an audit."""
    table = out.split("stage times", 1)[1].split("\n\n", 1)[0]
    found = {}
    for line in table.strip().splitlines():
        parts = line.split()
        if parts and parts[0] != "total":
            found[parts[0]] = parts[3] if len(parts) > 3 else ""
    return found


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("audit")
    data = write_demo(root / "pairs.jsonl", n=16, seed=1)
    lake_dir = root / "lake"
    return {"root": root, "data": data, "lake": lake_dir}


def test_audit_runs_every_stage_then_reuses_the_lake(audited: dict, capsys) -> None:
    data, lake_dir = audited["data"], audited["lake"]
    args = ["audit", str(data), "--name", "tiny", "--lake", str(lake_dir), *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    first = stage_lines(out)
    assert {"ingest", "scan", "sae", "analyze", "report"} <= set(first)
    assert first["ingest"] == "ran" and first["scan"] == "ran" and first["sae"] == "ran"
    report = lake_dir / "reports" / "tiny.html"
    assert report.exists() and "sculpt triage tiny" in out

    doc = html5lib.parse(report.read_text(), namespaceHTMLElements=True)
    ids = {s.get("id") for s in doc.iter(f"{NS}section")}
    assert {"summary", "hypotheses", "cards", "decisions", "runs"} <= ids
    assert str(lake_dir) not in report.read_text()

    hyps = collect(Lake.open(lake_dir), "tiny", top=50, cards=0)["hypotheses"]["chosen"]
    opener = planted_ranks(Lake.open(lake_dir), "tiny", hyps)[0]
    assert opener.name == "flattering_opener" and opener.rank is not None and opener.rank <= 3

    assert main(args) == 0
    second = stage_lines(capsys.readouterr().out)
    reran = [name for name, state in second.items() if state == "ran" and name != "report"]
    assert reran == [], f"a second audit re-ran {reran}"


def test_changed_data_reruns_from_ingest(audited: dict, capsys) -> None:
    data, lake_dir = audited["data"], audited["lake"]
    lines = Path(data).read_text().splitlines()
    edited = Path(audited["root"]) / "edited.jsonl"
    record = json.loads(lines[0])
    record["chosen"] += " Extra sentence."
    edited.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    args = ["audit", str(edited), "--name", "tiny", "--lake", str(lake_dir), *TINY]
    assert main(args) == 0
    stages = stage_lines(capsys.readouterr().out)
    assert stages["ingest"] == "ran" and stages["analyze"] == "ran"
    assert Lake.open(lake_dir).has("pairs", {"dataset": "tiny"})


def test_audit_of_missing_file_is_one_clear_error(tmp_path: Path, capsys) -> None:
    code = main(
        ["audit", str(tmp_path / "nope.jsonl"), "--name", "x", "--lake", str(tmp_path / "l"), *TINY]
    )
    assert code == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_encoding_from_the_scan_sample_equals_a_forward_pass(audited: dict, tmp_path: Path) -> None:
    """The audit encodes from `acts` when they hold every token; a forward encode must agree."""
    import shutil

    from sculpt.sae.encode import encode
    from sculpt.scan.models import load_model

    forward = Lake.open(shutil.copytree(audited["lake"], tmp_path / "forward"))
    sae_id = next(p.name for p in (forward.root / "saes").iterdir() if not p.name.startswith("."))
    encode(forward, "tiny", sae_id, model=load_model("tiny"), progress=False)
    query = (
        "select pair_id, side, feature, max_act from span_features "
        "where side != 'prompt' order by 1, 2, 3"
    )
    from_acts = Lake.open(audited["lake"]).sql(query).to_pylist()
    from_forward = forward.sql(query).to_pylist()
    assert [r["feature"] for r in from_acts] == [r["feature"] for r in from_forward]
    for a, b in zip(from_acts, from_forward, strict=True):
        assert a["max_act"] == pytest.approx(b["max_act"], rel=1e-2, abs=1e-3)
