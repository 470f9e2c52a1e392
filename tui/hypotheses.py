"""The hypotheses screen: a paged, sortable, filterable table of every concept lean."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import duckdb
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, LoadingIndicator, Static
from textual.worker import get_current_worker

from sculpt.tui.data import (
    LEANS,
    NATURAL_DESCENDING,
    PAGE_SIZE,
    SCOPES,
    SORT_COLUMNS,
    Filters,
    Page,
    Sort,
)
from sculpt.tui.decide import DecidingScreen, Target, badge
from sculpt.tui.keys import bindings
from sculpt.tui.table import RowTable, header, layout, row_line
from sculpt.tui.text import one_line

WIDE = 130
"""From this width on, the table shows intervals, Δmin, rates and counts too."""


Mode = Literal["replace", "append", "prepend", "end"]
"""How a loaded page joins the rows shown: instead of them, after, before, or as the last page."""


class HypothesesLoaded(Message):
    def __init__(self, page: Page, mode: Mode) -> None:
        super().__init__()
        self.page, self.mode = page, mode


class MembersLoaded(Message):
    def __init__(self, finding_id: str, members: list[dict[str, Any]]) -> None:
        super().__init__()
        self.finding_id, self.members = finding_id, members


class HypothesesFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class LakeOpened(Message):
    """DuckDB is connected and the decision log read: the screen can query."""


class CacheBuilt(Message):
    """The analysis now lives in a DuckDB table: sorts and filters get fast."""


class HypothesesScreen(DecidingScreen):
    KEYS_SCREEN = "hypotheses"
    BINDINGS = bindings("hypotheses")
    AUTO_FOCUS = "#table"
    SEARCH_DEBOUNCE = 0.15
    """Seconds of no typing before the search box filters (Enter filters at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.filters, self.sort = Filters(), Sort()
        self.rows: list[dict[str, Any]] = []
        """The loaded page(s): findings, or hypotheses."""
        self.findings_view = False
        """The list shows findings (one row per distinct signal), each expandable to members."""
        self.expanded: dict[str, list[dict[str, Any]]] = {}
        self.shown: list[dict[str, Any]] = []
        """What the table shows, row for row: the rows, each expanded finding's members below it."""
        self.window_start = 0
        """Position of rows[0] among every matching row (End loads the last page alone)."""
        self.total = 0
        self.loads = 0
        """How many pages were shown; tests and the bench wait on it."""
        self.wide: bool | None = None
        self.title_text = ""
        self.missing = False
        self.columns: list[tuple[str, int, str]] = []
        self._debounce: Timer | None = None
        self._spinner: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(self.title_bar(self.triage.dataset, "opening the lake…"), id="title")
        yield Input(
            placeholder="/ search labels, ids, tokens · f filters · g scope · l lean · h split-half",
            compact=True,
            id="search",
        )
        yield Static("loading…", id="status")
        yield RowTable(cursor_type="row", zebra_stripes=True, id="table")
        yield LoadingIndicator(id="loading")
        yield Static("", id="message")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.open_lake()

    @work(thread=True, group="open")
    def open_lake(self) -> None:
        try:
            self.triage.open_lake()
        except Exception as exc:  # noqa: BLE001 - shown, not raised: the app stays usable
            self.app.call_from_thread(self.show_missing, f"cannot open the lake: {exc}")
            return
        self.post_message(LakeOpened())

    def on_lake_opened(self, _: LakeOpened) -> None:
        data = self.data
        self.title_text = f"analysis {one_line(data.analysis or '–')}"
        self.query_one("#title", Static).update(self.title_bar(data.dataset, self.title_text))
        missing = data.missing()
        if missing:
            self.show_missing(missing)
            self.query_one("#status", Static).update("nothing to triage yet")
            self.query_one("#loading").display = False
            return
        self.query_one("#message").display = False
        self.query_one(DataTable).focus()
        self.findings_view = data.has_findings
        self.reload()

    # ---- loading -----------------------------------------------------------------------------
    def reload(self, mode: Mode = "replace") -> None:
        if self.missing:
            return
        # the spinner only for slow answers: showing it costs a relayout and an animation
        if self._spinner is not None:
            self._spinner.stop()
        self._spinner = self.set_timer(0.15, self._show_spinner)
        offset, limit = 0, PAGE_SIZE
        if mode == "append":
            offset = self.window_start + len(self.rows)
        elif mode == "prepend":
            offset = max(0, self.window_start - PAGE_SIZE)
            limit = self.window_start - offset
        elif mode == "end":
            offset = max(0, self.total - PAGE_SIZE)
        self.load_page(self.filters, self.sort, offset, limit, mode, self.findings_view)

    @work(thread=True, exclusive=True, group="page")
    def load_page(
        self, filters: Filters, sort: Sort, offset: int, limit: int, mode: Mode, findings: bool
    ) -> None:
        worker = get_current_worker()
        try:
            page = self.data.page(filters, sort, offset, limit, findings=findings)
        except duckdb.Error as exc:
            if not worker.is_cancelled:
                self.post_message(HypothesesFailed(str(exc).splitlines()[0]))
            return
        if not worker.is_cancelled:
            self.post_message(HypothesesLoaded(page, mode))

    @work(thread=True, group="cache")
    def build_cache(self) -> None:
        try:
            self.data.materialize()
        except duckdb.Error:
            return  # the views still answer, only slower
        self.post_message(CacheBuilt())

    def _show_spinner(self) -> None:
        self.query_one("#loading").display = True

    def _hide_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        self.query_one("#loading").display = False

    def on_hypotheses_loaded(self, message: HypothesesLoaded) -> None:
        page = message.page
        if (
            page.filters != self.filters
            or page.sort != self.sort
            or page.findings != self.findings_view
        ):
            return  # a newer request is on its way
        self._hide_spinner()
        cursor = self.query_one(DataTable).cursor_row
        if message.mode == "append":
            self.rows = self.rows + page.rows
        elif message.mode == "prepend":
            self.rows, cursor = page.rows + self.rows, cursor + len(page.rows)
        else:
            self.rows, self.window_start = list(page.rows), page.offset
            self.expanded = {}
            cursor = len(self.rows) - 1 if message.mode == "end" else 0
        if message.mode == "prepend":
            self.window_start = page.offset
        self.total = page.total
        self.fill_table(cursor=cursor)
        self.loads += 1
        if self.loads == 1:
            self.build_cache()  # after the first paint, not competing with it

    def on_hypotheses_failed(self, message: HypothesesFailed) -> None:
        self._hide_spinner()
        self.notify(one_line(message.error), title="query failed", severity="error", markup=False)

    def on_cache_built(self, _: CacheBuilt) -> None:
        self.query_one("#title", Static).update(
            self.title_bar(self.data.dataset, self.title_text + " · ready")
        )

    # ---- drawing -----------------------------------------------------------------------------
    def fill_table(self, cursor: int | None = None) -> None:
        """Redraw the rows; the cursor goes to `cursor` (None: where it was)."""
        table = self.query_one(DataTable)
        cursor = table.cursor_row if cursor is None else cursor
        wide = self.size.width >= WIDE
        columns = layout(wide, self.size.width)
        if wide != self.wide or columns != self.columns:
            table.clear(columns=True)
            table.add_column(header(columns), width=sum(w + 1 for _, w, _ in columns))
            self.wide, self.columns = wide, columns
        else:
            table.clear()
        book = self.book
        self.shown = []
        for row in self.rows:
            self.shown.append(row)
            self.shown.extend(self.expanded.get(row["hypothesis_id"], []))
        for row in self.shown:
            decision = badge(
                book.for_row(row["concept_id"], row["hypothesis_id"], row["data_cluster"])
            )
            expanded = row["hypothesis_id"] in self.expanded
            table.add_row(row_line(row, decision, columns, expanded), key=row["hypothesis_id"])
        if self.shown:
            table.move_cursor(row=max(0, min(cursor, len(self.shown) - 1)), animate=False)
        self.update_status()
        message = self.query_one("#message", Static)
        # the table stays (and keeps focus) so the next key still reaches the screen
        message.update("nothing matches — press c to clear the filters, f to change them")
        message.display = not self.rows

    def update_status(self) -> None:
        shown = len(self.rows)
        if self.window_start:
            where = (
                f"rows {self.window_start + 1:,}–{self.window_start + shown:,} of {self.total:,}"
            )
        else:
            where = f"{shown:,} of {self.total:,}"
        what = "findings" if self.findings_view else "hypotheses"
        self.query_one("#status", Static).update(
            Text(f"{where} {what} · {one_line(self.filters.describe())} · {self.sort.describe()}")
        )

    @staticmethod
    def title_bar(dataset: str, state: str) -> Text:
        """The title bar: the dataset's name is data, so it is shown, never read as markup."""
        return Text.assemble(("sculpt triage", "bold"), f" · {one_line(dataset)} · {state}")

    def show_missing(self, text: str) -> None:
        self.missing = True
        self.query_one("#search", Input).disabled = True
        self.query_one("#loading").display = False
        message = self.query_one("#message", Static)
        message.update(Text(one_line(text)))
        message.display = True
        self.query_one(DataTable).display = False

    def on_resize(self) -> None:
        if (
            self.wide is not None
            and layout(self.size.width >= WIDE, self.size.width) != self.columns
        ):
            self.fill_table()

    def decisions_changed(self) -> None:
        self.fill_table()

    def on_screen_resume(self) -> None:
        """Decisions made on a card, in the pair viewer or the queue show here at once."""
        if self.wide is not None:
            self.book.refresh()
            self.fill_table()

    # ---- selection ---------------------------------------------------------------------------
    def selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self.shown or not table.display:
            return None
        return self.shown[min(table.cursor_row, len(self.shown) - 1)]

    def decision_target(self) -> Target | None:
        row = self.selected()
        return None if row is None else Target.of_row(row)

    @on(DataTable.RowHighlighted)
    def _more_near_edges(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != self.query_one(DataTable).cursor_row:
            return  # stale: the table was redrawn and the cursor moved on since
        if (
            event.cursor_row >= len(self.shown) - 1
            and self.window_start + len(self.rows) < self.total
        ):
            self.reload("append")
        elif event.cursor_row == 0 and self.window_start > 0:
            self.reload("prepend")

    @on(RowTable.Edge)
    def _to_edge(self, event: RowTable.Edge) -> None:
        """Home/End: to the first or last of every matching row, loading it when it isn't."""
        if event.last and self.window_start + len(self.rows) < self.total:
            self.reload("end")
        elif not event.last and self.window_start > 0:
            self.reload()

    @on(DataTable.RowSelected)
    def _open_selected(self) -> None:
        self.action_open_card()

    def evidence_row(self) -> tuple[dict[str, Any], Target] | None:
        """The hypothesis whose evidence a card or the pair viewer shows, and what a decision
        there acts on: for a finding, the member it is named after (its most readable) and the
        finding; a member's global hypothesis and the member; a hypothesis and itself."""
        row = self.selected()
        if row is None:
            return None
        if row["scope"] not in ("finding", "member"):
            return row, Target.of_row(row)
        concept_id = row["label_concept"] if row["scope"] == "finding" else row["concept_id"]
        found = [r for r in self.data.hypotheses_for(concept_id) if r["scope"] == "global"]
        if not found:
            self.notify(
                one_line(f"{concept_id}: no global hypothesis in this analysis"),
                severity="warning",
                markup=False,
            )
            return None
        return found[0], Target.of_row(row)

    def action_open_card(self) -> None:
        from sculpt.tui.card import ConceptCard

        chosen = self.evidence_row()
        if chosen is not None:
            self.app.push_screen(ConceptCard(chosen[0], target=chosen[1]))

    def action_open_pairs(self) -> None:
        from sculpt.tui.pairs import PairViewer

        chosen = self.evidence_row()
        if chosen is not None:
            self.app.push_screen(PairViewer(chosen[0], target=chosen[1]))

    # ---- findings ----------------------------------------------------------------------------
    def action_toggle_members(self) -> None:
        """Space: show or hide the concepts that carry the selected finding."""
        row = self.selected()
        if row is None or row["scope"] not in ("finding", "member"):
            if not self.findings_view:
                self.notify("the list shows hypotheses: press v for findings", markup=False)
            return
        finding_id = row["finding_id"] if row["scope"] == "member" else row["hypothesis_id"]
        if finding_id in self.expanded:
            del self.expanded[finding_id]
            index = next(i for i, r in enumerate(self.shown) if r["hypothesis_id"] == finding_id)
            self.fill_table(cursor=index)
        else:
            self.load_members(finding_id)

    @work(thread=True, group="members")
    def load_members(self, finding_id: str) -> None:
        try:
            members = self.data.members(finding_id)
        except duckdb.Error as exc:
            self.post_message(HypothesesFailed(str(exc).splitlines()[0]))
            return
        self.post_message(MembersLoaded(finding_id, members))

    def on_members_loaded(self, message: MembersLoaded) -> None:
        if not any(r["hypothesis_id"] == message.finding_id for r in self.rows):
            return  # the list changed meanwhile
        self.expanded[message.finding_id] = message.members
        self.fill_table()

    def action_toggle_view(self) -> None:
        """v: findings (one row per signal) or every hypothesis."""
        if not self.data.has_findings:
            self.notify("this analysis has no findings: every row is a hypothesis", markup=False)
            return
        self.findings_view = not self.findings_view
        self.reload()

    def action_more(self) -> None:
        if self.window_start + len(self.rows) < self.total:
            self.reload("append")

    # ---- filters and sort ----------------------------------------------------------------------
    def set_filters(self, filters: Filters) -> None:
        self.filters = filters
        self.reload()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    def _search_soon(self, event: Input.Changed) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        value = event.value
        self._debounce = self.set_timer(self.SEARCH_DEBOUNCE, lambda: self._search_now(value))

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._search_now(event.value)
        self.query_one(DataTable).focus()

    def _search_now(self, value: str) -> None:
        if value != self.filters.text:
            self.set_filters(replace(self.filters, text=value))

    def action_filters(self) -> None:
        from sculpt.tui.filters import FilterForm

        def applied(filters: Filters | None) -> None:
            if filters is not None:
                self.query_one("#search", Input).value = filters.text
                self.set_filters(filters)

        self.app.push_screen(FilterForm(self.filters), applied)

    def action_cycle_scope(self) -> None:
        self.set_filters(replace(self.filters, scope=_next(self.filters.scope, SCOPES)))

    def action_cycle_lean(self) -> None:
        self.set_filters(replace(self.filters, lean=_next(self.filters.lean, LEANS)))

    def action_toggle_split_half(self) -> None:
        self.set_filters(replace(self.filters, split_half_only=not self.filters.split_half_only))

    def action_clear_filters(self) -> None:
        self.query_one("#search", Input).value = ""
        self.set_filters(Filters())

    def action_next_sort(self) -> None:
        column = SORT_COLUMNS[(SORT_COLUMNS.index(self.sort.column) + 1) % len(SORT_COLUMNS)]
        # the natural order of each column: best first
        self.sort = Sort(column, descending=column in NATURAL_DESCENDING)
        self.reload()

    def action_reverse_sort(self) -> None:
        self.sort = replace(self.sort, descending=not self.sort.descending)
        self.reload()

    def action_back(self) -> None:
        """Esc: leave the search box, or cancel a running query."""
        if self.query_one("#search", Input).has_focus:
            self.query_one(DataTable).focus()
            return
        if any(w.is_running for w in self.workers if w.group == "page"):
            self.workers.cancel_group(self, "page")
            self.data.interrupt()
            self._hide_spinner()
            self.notify("query cancelled", severity="warning")


def _next(value: str | None, values: tuple[str, ...]) -> str | None:
    cycle: list[str | None] = [None, *values]
    return cycle[(cycle.index(value) + 1) % len(cycle)]
