"""The triage TUI driven with Textual's Pilot on a small synthetic lake: what shows, what lands."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.plan.decisions import Decision, current, history
from sculpt.testing.sample_lake import build_sample_lake
from sculpt.tui.app import TriageApp
from sculpt.tui.card import HIGHLIGHT, ConceptCard
from sculpt.tui.decide import DecisionForm
from sculpt.tui.hypotheses import HypothesesScreen
from sculpt.tui.keys import KEY_IDS, KEYS, load_keymap
from sculpt.tui.pairs import PairViewer
from sculpt.tui.queue import QueueScreen

SMALL, LARGE = (80, 24), (160, 48)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Without findings: the list is every hypothesis (as for an analysis before findings)."""
    root = tmp_path_factory.mktemp("lake")
    build_sample_lake(root, n_pairs=120, n_hypotheses=400, seed=1, findings=False)
    return root


@pytest.fixture
def lake(built: Path, tmp_path: Path) -> Lake:
    """A fresh copy per test, so decisions never leak between tests."""
    shutil.copytree(built, tmp_path / "lake")
    return Lake.open(tmp_path / "lake")


def screen_text(app: TriageApp) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def content(app: TriageApp, selector: str) -> str:
    """The text of a Static on the current screen ('' until it is composed)."""
    found = app.screen.query(selector)
    return str(found.first().content) if found else ""


async def loaded(pilot, after: int = 0) -> HypothesesScreen:
    await until(
        pilot,
        lambda: isinstance(pilot.app.screen, HypothesesScreen) and pilot.app.screen.loads > after,
        "hypotheses",
    )
    await pilot.pause()
    return pilot.app.screen


def drive(
    lake: Lake, size: tuple[int, int], scenario: Callable[..., Awaitable[None]], **kwargs
) -> None:
    async def run() -> None:
        app = TriageApp(lake, "demo", **kwargs)
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)

    asyncio.run(run())


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_first_screen_shows_ranked_hypotheses_with_words_and_glyphs(lake: Lake, size) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        await until(pilot, lambda: "? help" in screen_text(pilot.app), "footer")
        text = screen_text(pilot.app)
        top = lake.sql("select label from hypotheses order by abs(d) desc limit 1")
        assert top["label"][0].as_py() in text
        assert "100 of 400" in text and "sorted by effect size d, largest first" in text
        assert "? help" in text and "✗suppress" in text
        assert ("Δ [95% CI]" in text) == (size == LARGE)
        assert screen.query_one("#table").row_count == 100

    drive(lake, size, scenario)


def test_filters_search_sort_and_nothing_matches(lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        n = screen.loads
        await pilot.press("g")  # scope → global
        screen = await loaded(pilot, n)
        expected = lake.sql("select count(*) n from hypotheses where scope = 'global'")["n"][0]
        assert screen.total == expected.as_py()
        assert all(r["scope"] == "global" for r in screen.rows)
        assert "scope=global" in screen_text(pilot.app)
        n = screen.loads
        await pilot.press("slash", *"insult", "enter")
        screen = await loaded(pilot, n)
        assert screen.rows and all("insult" in r["label"] for r in screen.rows)
        n = screen.loads
        await pilot.press("s")
        screen = await loaded(pilot, n)
        assert "sorted by share of pairs" in screen_text(pilot.app)
        n = screen.loads
        await pilot.press("slash", *"zzznothing", "enter")
        await loaded(pilot, n)
        assert "nothing matches" in screen_text(pilot.app)
        n = screen.loads
        await pilot.press("c")
        screen = await loaded(pilot, n)
        assert screen.total == 400

    drive(lake, SMALL, scenario)


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_card_and_pair_viewer_show_the_evidence(lake: Lake, size) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        await pilot.press("enter")
        await until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, ConceptCard)
                and "per-pair gap" in screen_text(pilot.app)
            ),
            "card",
        )
        card = pilot.app.screen
        await until(
            pilot,
            lambda: "correlated concepts (" in str(card.query_one("#card-correlated").content),
            "correlated concepts",
        )
        body = "\n".join(
            str(card.query_one(f"#card-{part}").content)
            for part in ("head", "stats", "histogram", "contexts", "clusters", "correlated")
        )
        for needle in (
            "Δ +",
            "split-half",
            "chosen",
            "rejected",
            "top-activating contexts",
            "data clusters where it leans most",
            "r +",
        ):
            assert needle in body, needle
        await pilot.press("p")
        await until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, PairViewer) and "pair 1/" in screen_text(pilot.app)
            ),
            "pair viewer",
        )
        viewer = pilot.app.screen
        text = screen_text(pilot.app)
        assert "✓ chosen" in text and "✗ rejected" in text
        assert viewer.has_class("narrow") == (size == SMALL)
        gaps = [p["gap"] for p in viewer.pairs]
        assert gaps == sorted(gaps, reverse=True)  # largest gap first
        await pilot.press("n")
        await until(pilot, lambda: "pair 2/" in screen_text(pilot.app), "next pair")
        await pilot.press("escape", "escape")
        await loaded(pilot)

    drive(lake, size, scenario)


def test_every_decision_lands_in_the_lake_and_undo_withdraws(lake: Lake) -> None:
    async def decide(pilot, key: str, note: str = "", applies: str | None = None) -> None:
        await pilot.press(key)
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        if applies:
            pilot.app.screen.query_one("#applies").value = applies
        await pilot.press(*note, "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, HypothesesScreen), "saved")
        await pilot.pause()

    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        first = screen.rows[0]
        await decide(pilot, "a")
        await pilot.press("down")
        await decide(pilot, "x", note="too apologetic")
        await pilot.press("down")
        await decide(pilot, "m")
        await pilot.press("down")
        await decide(pilot, "r")
        rows = history(lake, "demo")
        assert [d.action for d in rows] == ["allow", "suppress", "amplify", "review"]
        assert rows[0].concept_id == first["concept_id"] and rows[0].method == "none"
        # a global hypothesis is its concept everywhere; a conditional one is itself
        conditional = first["scope"] != "global"
        assert rows[0].hypothesis_id == (first["hypothesis_id"] if conditional else None)
        assert rows[1].method == "reward_shaping" and rows[1].note == "too apologetic"
        assert all(d.author and d.ts > 0 for d in rows)
        assert "✓ allowed" in screen_text(pilot.app) and "✗ suppressed" in screen_text(pilot.app)
        # a conditional hypothesis, scoped to its data cluster on the concept
        index = next(i for i, r in enumerate(screen.rows) if r["scope"] == "conditional")
        screen.query_one("#table").move_cursor(row=index)
        await pilot.pause()
        await decide(pilot, "x", applies="cluster")
        last = history(lake, "demo")[-1]
        assert last.scope == f"cluster:{screen.rows[index]['data_cluster']}"
        assert last.hypothesis_id is None
        await pilot.press("u")
        await pilot.pause()
        assert len(current(lake, "demo")) == 4
        assert history(lake, "demo")[-1].undo_of == last.ts
        await pilot.press("i")
        await until(pilot, lambda: isinstance(pilot.app.screen, QueueScreen), "queue")
        text = screen_text(pilot.app)
        assert "2 pending intervention(s)" in text and "↑ amplified" in text
        await pilot.press("u")  # undo the selected row: the newest pending intervention
        await pilot.pause()
        assert [d.action for d in current(lake, "demo")] == ["allow", "suppress", "review"]

    drive(lake, SMALL, scenario)


def test_decision_is_kept_while_another_process_appends_to_the_lake(lake: Lake) -> None:
    stop = threading.Event()

    def other_writer() -> None:
        i = 0
        while not stop.is_set():
            lake.append_log("runs", [{"run_id": f"r{i}", "ts": time.time(), "status": "running"}])
            lake.append_log("decisions", [{**Decision("other", "lex:length", "allow").__dict__}])
            i += 1

    async def scenario(pilot) -> None:
        await loaded(pilot)
        writer = threading.Thread(target=other_writer)
        writer.start()
        try:
            for _ in range(3):
                await pilot.press("x")
                await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
                await pilot.press("enter")
                await until(pilot, lambda: isinstance(pilot.app.screen, HypothesesScreen), "saved")
                await pilot.press("down")
        finally:
            stop.set()
            writer.join()

    drive(lake, SMALL, scenario)
    mine = history(lake, "demo")
    assert [d.action for d in mine] == ["suppress"] * 3
    assert len({(d.concept_id, d.hypothesis_id, d.scope) for d in mine}) == 3
    assert history(lake, "other")


def test_a_lake_without_hypotheses_says_which_command_to_run(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "bare")
    build_sample_lake(lake.root, n_pairs=20, n_hypotheses=30)
    shutil.rmtree(lake.table_dir("hypotheses"))

    async def scenario(pilot) -> None:
        await until(pilot, lambda: "sculpt analyze demo" in screen_text(pilot.app), "message")
        assert "no hypotheses for demo yet" in screen_text(pilot.app)

    drive(lake, SMALL, scenario)


def test_keymap_file_rebinds_and_help_lists_ids(lake: Lake, tmp_path: Path) -> None:
    keymap_file = tmp_path / "keys.toml"
    keymap_file.write_text('[decide]\nallow = "A"\n\n[hypotheses]\nsort = "o"\n')
    keymap = load_keymap(keymap_file)
    assert keymap == {"decide.allow": "A", "hypotheses.sort": "o"}

    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HypothesesScreen)  # the old key does nothing now
        await pilot.press("A")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form on A")
        await pilot.press("escape")
        n = screen.loads
        await pilot.press("o")
        await loaded(pilot, n)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(pilot.app)
        assert "keys on the hypotheses screen" in text and "hypotheses.open" in text

    drive(lake, SMALL, scenario, keymap=keymap)
    bad = tmp_path / "bad.yaml"
    bad.write_text("decide.alow: A\n")
    with pytest.raises(UserError, match="unknown binding id"):
        load_keymap(bad)
    assert {"decide.allow", "decide.undo", "app.help", "back"} <= KEY_IDS
    defaults = {key for k in KEYS for key in k.key.split(",")}
    assert not defaults & {"ctrl+j", "ctrl+o", "ctrl+s"}  # terminal multiplexers take these


def test_triage_command_names_the_dataset_or_explains(tmp_path: Path) -> None:
    from sculpt.lake.datasets import pick_dataset

    empty = Lake.open(tmp_path / "empty")
    with pytest.raises(UserError, match="sculpt demo"):
        pick_dataset(empty, None)
    build_sample_lake(tmp_path / "one", n_pairs=10, n_hypotheses=20)
    assert pick_dataset(Lake.open(tmp_path / "one"), None) == "demo"


def test_ngram_card_shows_its_contexts_marked(lake: Lake) -> None:
    """An n-gram concept has no regex in its source: its contexts come from the n-gram itself,
    the same highlight the report uses."""

    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        row = next(
            r for r in screen.data.hypotheses_for("ngram:unfortunately") if r["scope"] == "global"
        )
        pilot.app.push_screen(ConceptCard(row))
        await until(
            pilot,
            lambda: "top-activating" in content(pilot.app, "#card-contexts"),
            "card",
        )
        contexts = pilot.app.screen.query_one("#card-contexts").content
        assert "none recorded" not in str(contexts)
        marked = [
            str(contexts)[span.start : span.end]
            for span in contexts.spans
            if span.style == HIGHLIGHT
        ]
        assert marked and all(m.lower() == "unfortunately" for m in marked if m.strip())

    drive(lake, SMALL, scenario)


TERMINAL_ATTACK = (
    "\x1b]0;pwned\x07 \x1b[2J \x1b[6n \x1b]8;;http://evil.example/\x1b\\here\x1b]8;;\x1b\\ "
    "[bold]big[/bold] [link=http://evil.example/]x[/link] \u202eevil"
)
"""Retitle the window, clear the screen, ask the terminal to type, plant a hyperlink, Rich markup,
a bidi override: dataset text that must reach the screen as text."""
SHOWN = ("␛]0;pwned␇", "␛[2J", "␛[6n", "␛]8;;http://evil.example/␛\\here", "<U+202E>evil")


def test_text_from_data_is_shown_never_obeyed(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "hostile")
    build_sample_lake(lake.root, n_pairs=40, n_hypotheses=60, seed=2, hostile=TERMINAL_ATTACK)
    note = Decision("demo", "lex:length", "review", note=TERMINAL_ATTACK, author=TERMINAL_ATTACK)
    lake.append_log("decisions", [note.__dict__])
    seen: list[str] = []

    def look(app: TriageApp, *needles: str) -> None:
        text = screen_text(app)
        seen.append(text)
        for needle in needles:
            assert needle in text, (needle, text)

    async def scenario(pilot) -> None:
        await loaded(pilot)
        look(pilot.app, "␛]0;pwned␇")  # the label, cut to its column
        await pilot.press("enter")
        await until(pilot, lambda: "per-pair gap" in screen_text(pilot.app), "card")
        look(pilot.app, *SHOWN[:2])
        await pilot.press("p")
        await until(pilot, lambda: "pair 1/" in screen_text(pilot.app), "pair viewer")
        look(pilot.app, *SHOWN, "[bold]big[/bold]", "[link=http://evil.example/]x[/link]")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        look(pilot.app, "␛]0;pwned␇")
        await pilot.press("escape", "i")
        await until(pilot, lambda: isinstance(pilot.app.screen, QueueScreen), "queue")
        look(pilot.app, "␛]0;pwned␇", "[bold]b")

    drive(lake, LARGE, scenario)
    for text in seen:
        assert not set(text) & {"\x1b", "\x07", "\u202e", "\x9b"}


def test_an_undo_is_its_own_action_and_old_logs_still_read(lake: Lake) -> None:
    from sculpt.plan import decisions

    amplified = decisions.record(lake, Decision("demo", "lex:bold", "amplify"))
    decisions.undo(lake, amplified)
    assert [d.action for d in history(lake, "demo")] == ["amplify", "undo"]
    counted = lake.sql("select count(*) as n from decisions where action = 'amplify'")
    assert counted["n"][0].as_py() == 1  # the undo is not a second amplification
    assert current(lake, "demo") == []
    # a log written before `undo` was an action: the undo row repeats the withdrawn action
    old = Decision("demo", "lex:length", "suppress", ts=amplified.ts + 10)
    lake.append_log("decisions", [old.__dict__])
    lake.append_log("decisions", [{**old.__dict__, "ts": old.ts + 1, "undo_of": old.ts}])
    assert current(lake, "demo") == []
    assert history(lake, "demo")[-1].glyph == "↶"


def footer_line(app: TriageApp) -> str:
    return screen_text(app).splitlines()[-1]


def test_keys_a_terminal_user_expects(lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        table = screen.query_one("#table")
        assert footer_line(pilot.app).rstrip().endswith("i queue")  # fits 80 columns
        assert "q quit" in footer_line(pilot.app)
        await pilot.press("j", "j", "k")
        assert table.cursor_row == 1
        n = screen.loads
        await pilot.press("end")  # the last of all 400 rows, not of the 100 loaded
        await loaded(pilot, n)
        assert table.cursor_row == len(screen.rows) - 1
        assert screen.window_start + len(screen.rows) == screen.total == 400
        assert "rows 301–400 of 400" in screen_text(pilot.app)
        n = screen.loads
        await pilot.press("home")
        await loaded(pilot, n)
        assert screen.window_start == 0 and table.cursor_row == 0
        await pilot.press("enter")
        await until(pilot, lambda: "per-pair gap" in screen_text(pilot.app), "card")
        assert footer_line(pilot.app).rstrip().endswith("esc back")
        await pilot.press("escape")
        await loaded(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not pilot.app.is_running

    drive(lake, SMALL, scenario)


def test_pair_viewer_switches_between_evidence_for_and_against(lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        row = next(r for r in screen.rows if r["scope"] == "global" and r["lean"] == "chosen")
        pilot.app.push_screen(PairViewer(row))
        await until(pilot, lambda: "pair 1/" in screen_text(pilot.app), "pair viewer")
        viewer = pilot.app.screen
        text = screen_text(pilot.app)
        assert "▶ supporting" in text and "counter-examples" in text and "both fire" in text
        assert f"d {row['d']:+.2f}" in text and "undecided" in text
        assert all(p["gap"] > 0 for p in viewer.pairs)
        await pilot.press("e")
        await until(pilot, lambda: "▶ counter-examples" in screen_text(pilot.app), "counter")
        await until(pilot, lambda: "pair 1/" in screen_text(pilot.app), "a counter-example")
        assert viewer.pairs and all(p["gap"] < 0 for p in viewer.pairs)
        gaps = [p["gap"] for p in viewer.pairs]
        assert gaps == sorted(gaps)  # the strongest counter-example first
        count = viewer.counts["counter"]
        await pilot.press("G")
        await until(pilot, lambda: f"pair {len(viewer.pairs)}/" in screen_text(pilot.app), "end")
        await pilot.press("g")
        await until(pilot, lambda: "pair 1/" in screen_text(pilot.app), "first")
        assert count == len(viewer.pairs) or count > viewer.LIMIT
        await pilot.press("e")
        await until(pilot, lambda: "▶ both fire" in screen_text(pilot.app), "both")
        await until(pilot, lambda: viewer.pair is not None, "a pair where both fire")
        assert all(p["chosen"] > 0 and p["rejected"] > 0 for p in viewer.pairs)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        await pilot.press("enter")
        await until(pilot, lambda: "✗ suppressed" in screen_text(pilot.app), "decision in header")

    drive(lake, SMALL, scenario)


def test_conditional_card_names_its_cluster_and_compares_it_with_the_rest(lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        row = next(r for r in screen.rows if r["scope"] == "conditional")
        pilot.app.push_screen(ConceptCard(row))
        await until(
            pilot, lambda: "against the rest" in content(pilot.app, "#card-histogram"), "card"
        )
        head = content(pilot.app, "#card-head")
        k = row["data_cluster"]
        assert f"in data cluster k{k} (" in head and "n_in" in head  # named by its prompts
        assert "in / rest" in content(pilot.app, "#card-histogram")
        assert "n_in: the cluster's pairs" in content(pilot.app, "#card-clusters")

    drive(lake, SMALL, scenario)


def test_decision_form_explains_methods_and_offers_scopes_that_differ(lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        table = screen.query_one("#table")
        table.move_cursor(row=next(i for i, r in enumerate(screen.rows) if r["scope"] == "global"))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        form = pilot.app.screen
        assert [v for _, v in form.query_one("#applies")._options] == ["concept"]
        assert "DPO margin" in content(pilot.app, "#method-help")
        form.query_one("#method").value = "filter"
        await pilot.pause()
        assert "drops the pairs" in content(pilot.app, "#method-help")
        await pilot.press("escape")
        table.move_cursor(row=next(i for i, r in enumerate(screen.rows) if r["scope"] != "global"))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        values = [v for _, v in pilot.app.screen.query_one("#applies")._options]
        assert values == ["hypothesis", "cluster", "concept"]

    drive(lake, SMALL, scenario)


def test_filter_form_says_split_half_state_in_words(lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        n = screen.loads
        await pilot.press("h")
        await loaded(pilot, n)
        await pilot.press("f")
        await until(pilot, lambda: "Filter hypotheses" in screen_text(pilot.app), "filter form")
        assert "✓ consistent only" in screen_text(pilot.app)

    drive(lake, SMALL, scenario)


@pytest.fixture
def findings_lake(tmp_path: Path) -> Lake:
    lake = Lake.open(tmp_path / "findings")
    build_sample_lake(lake.root, n_pairs=120, n_hypotheses=400, seed=1)
    return lake


def test_list_is_findings_each_expandable_to_its_members(findings_lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        n_findings = findings_lake.sql("select count(*) as n from findings")["n"][0].as_py()
        assert screen.findings_view and screen.total == n_findings
        assert f"{min(n_findings, 100)} of {n_findings} findings" in screen_text(pilot.app)
        apology = next(i for i, r in enumerate(screen.rows) if r["n_members"] == 4)
        screen.query_one("#table").move_cursor(row=apology)
        await pilot.press("space")
        await until(pilot, lambda: "apology (echo)" in screen_text(pilot.app), "members")
        members = [r for r in screen.shown if r["scope"] == "member"]
        assert {r["concept_id"] for r in members} == set(screen.rows[apology]["members"])
        assert "▾ 4" in screen_text(pilot.app)
        await pilot.press("space")  # collapses again
        await until(pilot, lambda: "apology (echo)" not in screen_text(pilot.app), "collapsed")
        n = screen.loads
        await pilot.press("v")  # every hypothesis instead
        await loaded(pilot, n)
        assert not screen.findings_view and screen.total == 400

    drive(findings_lake, SMALL, scenario)


def test_a_decision_on_a_finding_covers_its_members_and_undo_the_same(
    findings_lake: Lake,
) -> None:
    # an older decision on one concept (as logged before findings) keeps working
    decisions_before = Decision("demo", "lex:bold", "review", ts=time.time() - 100)
    findings_lake.append_log("decisions", [decisions_before.__dict__])

    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        table = screen.query_one("#table")
        apology = next(i for i, r in enumerate(screen.rows) if r["n_members"] == 4)
        finding = screen.rows[apology]
        table.move_cursor(row=apology)
        await pilot.press("space")
        await until(pilot, lambda: "apology (echo)" in screen_text(pilot.app), "members")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        assert "the finding and its 4 concept(s)" in screen_text(pilot.app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, HypothesesScreen), "saved")
        await pilot.pause()
        logged = history(findings_lake, "demo")[-1]
        assert logged.concept_id == finding["hypothesis_id"] and logged.hypothesis_id is None
        rows = screen_text(pilot.app).splitlines()
        covered = [line for line in rows if "└" in line]
        assert len(covered) == 4 and all("✗ suppressed" in line for line in covered)
        assert screen.book.for_row("lex:bold", None, None).action == "review"  # still in force
        await pilot.press("u")
        await pilot.pause()
        rows = screen_text(pilot.app).splitlines()
        assert not any("✗ suppressed" in line for line in rows)
        assert history(findings_lake, "demo")[-1].action == "undo"
        assert [d.concept_id for d in current(findings_lake, "demo")] == ["lex:bold"]

    drive(findings_lake, SMALL, scenario)


def test_a_card_opened_from_a_finding_decides_on_the_finding(findings_lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        index = next(i for i, r in enumerate(screen.rows) if r["n_members"] == 2)
        screen.query_one("#table").move_cursor(row=index)
        await pilot.press("enter")
        await until(
            pilot, lambda: "a decision here covers" in content(pilot.app, "#card-head"), "card"
        )
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        await pilot.press("enter")
        await until(pilot, lambda: "✓ allowed" in content(pilot.app, "#card-head"), "badge")
        assert history(findings_lake, "demo")[-1].concept_id == screen.rows[index]["hypothesis_id"]

    drive(findings_lake, SMALL, scenario)


def test_plan_yaml_keeps_labels_readable(tmp_path: Path) -> None:
    from sculpt.plan.plan import Intervention, Plan, load_plan, save_plan

    plan = Plan("demo", [Intervention("sae:x:1", "reward_shaping", label="** · one · move")])
    path = save_plan(plan, tmp_path / "plan.yaml")
    assert "** · one · move" in path.read_text(encoding="utf-8")
    assert load_plan(path).interventions[0].label == "** · one · move"


def test_queue_opens_a_findings_card(findings_lake: Lake) -> None:
    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        index = next(i for i, r in enumerate(screen.rows) if r["n_members"] == 4)
        screen.query_one("#table").move_cursor(row=index)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, DecisionForm), "form")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, HypothesesScreen), "saved")
        await pilot.press("i")
        await until(pilot, lambda: isinstance(pilot.app.screen, QueueScreen), "queue")
        assert "finding:lex:apology" in screen_text(pilot.app)
        await pilot.press("enter")
        await until(pilot, lambda: "covers them" in content(pilot.app, "#card-head"), "card")
        assert "✗ suppressed" in content(pilot.app, "#card-head")

    drive(findings_lake, SMALL, scenario)


def test_the_lean_filter_offers_every_lean_a_hypothesis_can_have(lake: Lake) -> None:
    """`l` cycles chosen → rejected → none → untested → all: "none" and "untested" rows can be
    listed (this lake has neither: the list says nothing matches, and nothing breaks)."""

    async def scenario(pilot) -> None:
        screen = await loaded(pilot)
        for lean in ("chosen", "rejected", "none", "untested"):
            n = screen.loads
            await pilot.press("l")
            screen = await loaded(pilot, n)
            assert f"lean={lean}" in screen_text(pilot.app)
            expected = lake.sql(f"select count(*) n from hypotheses where lean = '{lean}'")
            assert screen.total == expected["n"][0].as_py()
        assert "nothing matches" in screen_text(pilot.app)
        n = screen.loads
        await pilot.press("l")
        screen = await loaded(pilot, n)
        assert screen.total == 400

    drive(lake, SMALL, scenario)
