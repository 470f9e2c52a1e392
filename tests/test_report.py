"""The HTML audit report: sections, safety against hostile dataset text, offline, size, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import html5lib
import pyarrow as pa
import pytest

from sculpt.cli.main import main
from sculpt.lake.store import Lake
from sculpt.reports.render import render_html, script_json, write_report
from sculpt.testing.sample_report import HOSTILE, write_sample

NS = "{http://www.w3.org/1999/xhtml}"
SECTIONS = ("summary", "hypotheses", "forest", "predictive", "cards", "decisions", "runs")


def parse(html: str):
    return html5lib.parse(html, namespaceHTMLElements=True)


def sections(doc) -> dict[str, object]:
    return {s.get("id"): s for s in doc.iter(f"{NS}section")}


def text_of(element) -> str:
    return "".join(element.itertext())


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("hostile-lake")
    lake = Lake.open(root)
    write_sample(lake, "sample", n_pairs=40, n_concepts=25, hostile=True)
    path = write_report(lake, "sample", root / "out" / "sample.html")
    return root, path.read_text(encoding="utf-8")


def test_report_has_every_section_with_content(hostile_report: tuple[Path, str]) -> None:
    _, html = hostile_report
    doc = parse(html)
    found = sections(doc)
    assert set(SECTIONS) <= set(found)
    assert "40" in text_of(found["summary"]) and "identical" in text_of(found["summary"])
    assert "flattering opener" in text_of(found["hypotheses"])
    assert found["forest"].find(".//{http://www.w3.org/2000/svg}svg") is not None
    assert "0.810" in text_of(found["predictive"])
    assert len(found["cards"].findall(f".//{NS}article")) == 10
    cards_text = text_of(found["cards"])
    assert "question" in cards_text and "**bold**" in cards_text
    assert "suppress" in text_of(found["decisions"]) and "ana" in text_of(found["decisions"])
    runs = text_of(found["runs"])
    assert "run-shaped-1" in runs and "baseline" in runs and "reward_shaping" in runs
    assert "Not run yet" not in html


def test_hostile_strings_never_become_markup(hostile_report: tuple[Path, str]) -> None:
    _, html = hostile_report
    doc = parse(html)
    scripts = list(doc.iter(f"{NS}script"))
    assert len(scripts) == 2  # the JSON data and the report's own JS, nothing injected
    assert html.count("</script>") == 2 and "<!--" not in html
    for element in doc.iter():
        assert not any(str(name).lower().startswith("on") for name in element.attrib), element.tag
    body_text = text_of(doc.find(f"{NS}body"))
    assert "<script>alert(1)</script>" in body_text  # shown to the reader as text…
    assert '"onerror=alert(2)' in body_text
    assert "{{ 7*7 }}" in body_text  # …and never evaluated by the template
    data = json.loads(scripts[0].text)
    assert data["dataset"] == "sample"
    assert any(HOSTILE in (h["label"] or "") for h in data["hypotheses"]["all"])


def test_report_is_offline_and_leaks_no_machine_path(hostile_report: tuple[Path, str]) -> None:
    root, html = hostile_report
    assert str(root) not in html and str(root.resolve()) not in html
    assert str(Path.home()) + "/" not in html
    assert "/abs/should/not/leak" not in html
    assert not re.search(r"https?://", html)
    doc = parse(html)
    for element in doc.iter():
        assert "src" not in element.attrib
        href = element.get("href")
        assert href is None or href.startswith("#")
    assert "@import" not in html and "url(" not in html


def test_script_json_cannot_close_its_tag() -> None:
    text = str(script_json({"x": "</script><!-- <b>&amp;", "y": "\u2028"}))
    assert "</" not in text and "<!--" not in text and "<" not in text
    assert json.loads(text) == {"x": "</script><!-- <b>&amp;", "y": "\u2028"}


def test_missing_stages_render_as_notes_not_errors(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    pairs = [
        {
            "pair_id": f"{i:016x}",
            "row": i,
            "prompt": "[]",
            "chosen": "a b c",
            "rejected": "a",
            "source": "x.jsonl",
            "meta": "{}",
        }
        for i in range(12)
    ]
    lake.replace_partition("pairs", {"dataset": "bare"}, pa.Table.from_pylist(pairs))
    html = write_report(lake, "bare", tmp_path / "bare.html").read_text()
    found = sections(parse(html))
    assert "12" in text_of(found["summary"])
    for section, command in (
        ("hypotheses", "sculpt analyze bare"),
        ("cards", "sculpt analyze bare"),
        ("decisions", "sculpt triage bare"),
        ("runs", "sculpt train"),
    ):
        assert "Not run yet" in text_of(found[section]) and command in text_of(found[section])


def test_report_for_200_concepts_stays_under_3_mb(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    write_sample(lake, "big", n_pairs=300, n_concepts=200)
    path = write_report(lake, "big", tmp_path / "big.html", top=200, cards=200)
    size = path.stat().st_size
    assert size < 3_000_000, f"{size / 1e6:.2f} MB"
    doc = parse(path.read_text())
    # one card per finding: concept 3 echoes the first finding, so 199 signals
    assert len(sections(doc)["cards"].findall(f".//{NS}article")) == 199


def test_render_html_needs_no_lake() -> None:
    data = {
        "dataset": "x",
        "generated": "now",
        "summary": None,
        "model": None,
        "analysis": None,
        "hypotheses": None,
        "predictive": None,
        "cards": None,
        "decisions": None,
        "runs": None,
        "missing": {
            "summary": "sculpt ingest FILE --name x",
            "model": "sculpt scan x",
            "hypotheses": "sculpt analyze x",
            "predictive": "sculpt analyze x",
            "cards": "sculpt analyze x",
            "decisions": "sculpt triage x",
            "runs": "sculpt train",
        },
    }
    html = render_html(data)
    assert html.count("Not run yet") >= 6


def test_report_command_writes_file_and_rejects_unknown_run(tmp_path: Path, capsys) -> None:
    root = tmp_path / "lake"
    write_sample(Lake.open(root), "sample", n_pairs=20, n_concepts=8)
    out = tmp_path / "r.html"
    assert main(["report", "sample", "--lake", str(root), "-o", str(out)]) == 0
    assert out.exists() and "report:" in capsys.readouterr().out
    assert main(["report", "sample", "--lake", str(root), "--run", "nope", "-o", str(out)]) == 2
    assert "--run nope" in capsys.readouterr().err
    assert main(["report", "missing", "--lake", str(root), "-o", str(out)]) == 2
    default = main(["report", "sample", "--lake", str(root)])
    assert default == 0 and (root / "reports" / "sample.html").exists()


def test_report_opens_with_the_story(hostile_report: tuple[Path, str]) -> None:
    """Found (findings with d and interval), how sure, decided, the plan, what training changed."""
    _, html = hostile_report
    doc = parse(html)
    found = sections(doc)
    assert list(found)[0] == "story"
    story = text_of(found["story"])
    assert "distinct signals (findings)" in story and "flattering opener" in story
    assert "d 1.54" in story and "share of pairs" in story and "split-half" in story
    assert "AUC 0.81" in story and "length alone: 0.62" in story
    assert "✗ 1 suppressed" in story and "1 withdrawn" in story
    plan = found["story"].find(f".//{NS}table")
    assert plan is not None and "reward_shaping" in text_of(plan) and "40" in text_of(plan)
    assert "0.31" in story and "0.13" in story  # concept rate: plain DPO → shaped
    runs = found["runs"]
    assert runs.find(f".//{NS}table") is not None  # the plan as a table; JSON only on demand
    assert "interventions" in text_of(runs.find(f".//{NS}details"))


def test_report_shows_decisions_where_the_concepts_are(hostile_report: tuple[Path, str]) -> None:
    _, html = hostile_report
    found = sections(parse(html))
    rows = found["hypotheses"].findall(f".//{NS}tbody/{NS}tr")
    decided = [text_of(r) for r in rows if "sae:sample-sae:0" in text_of(r)]
    assert decided and all("✗ suppressed" in t for t in decided)
    first_card = found["cards"].find(f".//{NS}article")
    assert "✗ suppressed" in text_of(first_card)
    assert "2 concepts carry this signal" in text_of(first_card)  # the finding's members
    log = text_of(found["decisions"])
    assert "↶ undo" in log and "withdraws the review of" in log and "withdrawn" in log


def test_auc_bars_start_at_chance_and_coefficient_tables_differ(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    write_sample(lake, "s", n_pairs=30, n_concepts=10)
    part = {"dataset": "s", "analysis": "a1b2c3"}
    top = json.dumps([["sae:sample-sae:0", 1.2], ["lex:bold", 0.7]])
    lake.replace_partition(
        "predictive",
        part,
        pa.Table.from_pylist(
            [
                {"model": "concepts", "auc": 0.81, "auc_sd": 0.03, "top_concepts": top},
                {"model": "top5", "auc": 0.78, "auc_sd": 0.03, "top_concepts": top},
                {"model": "length", "auc": 0.453, "auc_sd": 0.01, "top_concepts": "[]"},
            ]
        ),
    )
    html = write_report(lake, "s", tmp_path / "s.html").read_text()
    section = sections(parse(html))["predictive"]
    svg = "{http://www.w3.org/2000/svg}"
    chance = next(
        float(line.get("x1")) for line in section.iter(f"{svg}line") if line.get("stroke-dasharray")
    )
    bars = {
        text_of(rect.find(f"{svg}title")).split(":")[0]: rect for rect in section.iter(f"{svg}rect")
    }
    length = bars["length model"]
    assert float(length.get("x")) + float(length.get("width")) == pytest.approx(chance, abs=0.2)
    assert float(bars["concepts model"].get("x")) == pytest.approx(chance, abs=0.2)
    tables = section.findall(f".//{NS}table")
    assert len(tables) == 1  # the top-5 model's concepts are the full model's: said, not repeated
    assert "markdown bold" in text_of(tables[0])  # labels, not only ids
    assert "same concepts as the concepts model" in text_of(section)


def test_forest_plot_keeps_its_points_on_a_phone(hostile_report: tuple[Path, str]) -> None:
    _, html = hostile_report
    forest = sections(parse(html))["forest"]
    svgs = list(forest.iter("{http://www.w3.org/2000/svg}svg"))
    assert len(svgs) == 2  # a wide one and one drawn for a narrow screen
    narrow = [s for s in svgs if s.get("viewBox", "").split()[2] == "380"]
    assert narrow and "wide" not in narrow[0].get("class", "")


def test_empty_runs_name_the_example_config(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    write_sample(lake, "s", n_pairs=20, n_concepts=6)
    import shutil

    shutil.rmtree(lake.table_dir("runs"))
    html = write_report(lake, "s", tmp_path / "s.html").read_text()
    assert "examples/run.yaml" in text_of(sections(parse(html))["runs"])


def test_training_curves_include_the_shaping_offset(tmp_path: Path) -> None:
    from sculpt.report.runs import training_curves

    path = tmp_path / "metrics.jsonl"
    names = ["loss", "grad_norm", "learning_rate", "logps/chosen", "logps/rejected"]
    names += ["rewards/chosen", "rewards/rejected", "rewards/margins", "shaping/offset"]
    path.write_text(
        "\n".join(json.dumps({"step": s, **{n: s * 0.1 for n in names}}) for s in range(5))
    )
    curves = training_curves(path)
    assert "shaping/offset" in curves and list(curves)[:2] == ["loss", "shaping/offset"]


def test_the_summary_calls_found_only_what_the_statistics_back():
    from sculpt.report.story import story

    def finding(label: str, q: float | None) -> dict:
        return {"finding_id": label, "label": label, "q": q, "d": 0.3, "split_half_ok": True}

    top = [finding("real", 0.001), finding("noise", 0.3), finding("untested", None)]
    data = {
        "hypotheses": {"all": [], "n_tested": 3, "n_significant": 1},
        "findings": {"top": top, "n": 3, "n_concepts": 3, "n_significant": 1},
    }
    summary = story(data)
    assert summary is not None
    assert [f["label"] for f in summary["found"]] == ["real"]


def test_runs_show_predicted_against_observed_change_per_concept(tmp_path: Path) -> None:
    """One point per concept `sculpt eval` measured, q < 0.05 ones drawn apart, the fit's R² and ρ
    with their intervals; the thousands of per-concept rows stay out of the eval table."""
    lake = Lake.open(tmp_path / "lake")
    write_sample(lake, "s", n_pairs=30, n_concepts=30)
    hyps = lake.sql(
        "select concept_id, q from hypotheses where dataset = 's' and scope = 'global'"
    ).to_pylist()
    significant = sum(1 for h in hyps if h["q"] is not None and h["q"] < 0.05)
    assert 0 < significant < len(hyps)

    def row(metric: str, value: float, concept: str | None = None, n: int = 40) -> dict:
        return {
            "run_id": "run-shaped-1",
            "ts": 1.0,
            "checkpoint": "baseline",
            "metric": metric,
            "concept_id": concept,
            "value": value,
            "n": n,
            "ci_lo": value - 0.1,
            "ci_hi": value + 0.1,
        }

    rows = [row("r2_predicted_observed", 0.412, n=len(hyps))]
    rows.append(row("spearman_predicted_observed", 0.655, n=len(hyps)))
    for i, h in enumerate(hyps):
        rows += [row("predicted_delta", 0.1 * i, h["concept_id"])]
        rows += [row("observed_change_sd", 0.05 * i - 0.2, h["concept_id"])]
    lake.append_log("evals", rows)

    runs = sections(parse(write_report(lake, "s", tmp_path / "s.html").read_text()))["runs"]
    svg = "{http://www.w3.org/2000/svg}"
    scatter = next(
        s for s in runs.iter(f"{svg}svg") if "Predicted vs observed" in (s.get("aria-label") or "")
    )
    points = [e for e in scatter.iter() if "pt" in (e.get("class") or "").split()]
    assert len(points) == len(hyps)
    assert sum("strong" in (e.get("class") or "") for e in points) == significant
    assert {e.tag for e in points if "strong" in e.get("class")} != {
        e.tag for e in points if "strong" not in e.get("class")
    }  # told apart by shape, not colour alone
    text = " ".join(text_of(runs).split())
    assert f"R² 0.412 [0.312, 0.512] · Spearman ρ 0.655 [0.555, 0.755] over {len(hyps)}" in text
    assert "predicted_delta" not in text and "observed_change_sd" not in text
