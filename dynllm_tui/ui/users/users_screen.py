"""Users: search as you type, sort by any column (a key cycles, a header click sorts or
reverses), filter by exact segment and country (keys take the highlighted row's value; Segments
opens this screen filtered to a segment), open a user.

Pages of 100 users come from `storage.browse.users_page` (SQL LIMIT/OFFSET over an indexed
statistics table), the next one when the cursor nears the end of what is loaded.

A user opens on one detail screen that this screen keeps (installed in the app, so popping it
does not destroy it) and reuses for the next user: building the detail's tabs and footer again
each time would cost more than loading the user's data. The reused screen is shown when the
user's data is in it (a few milliseconds), or after PUSH_WAIT with "loading…" if the workspace
is slow to answer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.timer import Timer
from textual.widgets import DataTable, Input
from textual.worker import get_current_worker

from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.keys import bindings
from dynllm_tui.ui.users.filter_line import FilterLine
from dynllm_tui.ui.users.search_bar import SearchBar
from dynllm_tui.ui.users.status_line import StatusLine
from dynllm_tui.ui.users.users_table import SORTABLE, UsersTable
from storage.browse import UsersPage, data_version, users_page

if TYPE_CHECKING:
    from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen

PAGE = 100
PUSH_WAIT = 0.1  # seconds the reused detail screen waits for its data before it shows anyway
SORT_CYCLE = ("events", "last", "first", "id", "attribute", "segment")
DEFAULT_DESCENDING = {"events": True, "last": True, "first": False, "id": False,
                      "attribute": False, "segment": False}


class UsersScreen(WorkbenchScreen):
    SCOPE = "users"
    SECTION = "users"
    BINDINGS = bindings("users")

    def __init__(self) -> None:
        super().__init__()
        self.search = ""
        self.sort = "events"
        self.descending = True
        self.total = 0
        self.loading = False
        self.generation = 0
        self.version = ""
        self.segment: str | None = None  # exact-match filters (None: not filtered)
        self.attribute: str | None = None
        self.attribute_label = "country"
        self._debounce: Timer | None = None
        self._detail: UserDetailScreen | None = None  # reused for every user opened here
        self._push_timer: Timer | None = None

    def compose_body(self) -> Iterable[Any]:
        yield SearchBar(id="search")
        yield StatusLine("Loading users…", id="status")
        yield FilterLine(id="filters")
        yield UsersTable(id="users")

    def on_mount(self) -> None:
        self.query_one(UsersTable).focus()
        self._take_filter_request()
        self.reload()

    def refresh_data(self) -> None:
        self.reload()

    def on_screen_resume(self) -> None:
        if self._take_filter_request():  # Segments asked for one segment's customers
            self.reload()
        elif self.version:  # back from a user or another section: reload only if data changed
            self.check_version(self.version)

    def _take_filter_request(self) -> bool:
        """Apply the filters another screen left for this one (`app.users_filter_request`);
        True when they changed what this screen shows."""
        request = getattr(self.app, "users_filter_request", None)
        if request is None:
            return False
        self.app.users_filter_request = None
        segment, attribute = request
        if (segment, attribute) == (self.segment, self.attribute):
            return False
        self.segment, self.attribute = segment, attribute
        return True

    @work(thread=True, exclusive=True, group="version", exit_on_error=False)
    def check_version(self, version: str) -> None:
        try:
            current = self.fetch(data_version)
        except Exception as exc:
            self.fail("Users", exc)
            return
        if current != version:
            self.deliver(self.reload)

    # --- loading ------------------------------------------------------------------------

    def reload(self, rebuild: bool = False) -> None:
        self.generation += 1
        self.loading = True
        self._status()
        self.load_page(self.generation, 0, self.search, self.sort, self.descending, rebuild,
                       self.segment, self.attribute)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load_page(self, generation: int, offset: int, search: str, sort: str, descending: bool,
                  rebuild: bool = False, segment: str | None = None,
                  attribute: str | None = None) -> None:
        try:
            page = self.fetch(users_page, search=search, sort=sort, descending=descending,
                              offset=offset, limit=PAGE, rebuild=rebuild, segment=segment,
                              attribute=attribute)
        except Exception as exc:
            self.fail("Users", exc)
            self.deliver(self._failed, generation)
            return
        if not get_current_worker().is_cancelled:
            self.deliver(self.show_page, generation, page)

    def _failed(self, generation: int) -> None:
        if generation == self.generation:
            self.loading = False
            self._status()

    def show_page(self, generation: int, page: UsersPage) -> None:
        if generation != self.generation:
            return  # an older search or sort
        table = self.query_one(UsersTable)
        if page.offset == 0:
            table.reset(page.attribute_label, self.sort, self.descending)
        if page.offset == table.row_count:
            table.append(page.rows)
        self.total = page.total
        self.version = page.version
        self.attribute_label = page.attribute_label
        self.loading = False
        self._status()

    def _status(self) -> None:
        self.query_one(StatusLine).show(
            total=self.total, loaded=self.query_one(UsersTable).row_count, search=self.search,
            sort=self.sort, descending=self.descending, loading=self.loading,
            attribute_label=self.attribute_label)
        self.query_one(FilterLine).show(
            segment=self.segment, attribute=self.attribute, attribute_label=self.attribute_label,
            clear_key=self.workbench.key_display("users.clear_filters"))

    @on(UsersTable.NearEnd)
    def load_more(self) -> None:
        table = self.query_one(UsersTable)
        loaded = table.row_count
        if self.loading or loaded >= self.total or not table.is_near_end():
            return
        self.loading = True
        self.load_page(self.generation, loaded, self.search, self.sort, self.descending, False,
                       self.segment, self.attribute)

    # --- search -------------------------------------------------------------------------

    @on(Input.Changed, "#search")
    def search_changed(self, event: Input.Changed) -> None:
        if event.value == self.search:
            return
        self.search = event.value
        self.workbench.users_search = event.value
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.2, self.reload)

    @on(Input.Submitted, "#search")
    def search_submitted(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
            self.reload()
        self.query_one(UsersTable).focus()

    def action_focus_search(self) -> None:
        self.query_one(SearchBar).focus()

    def action_clear_search(self) -> None:
        search = self.query_one(SearchBar)
        if search.value:
            if self._debounce is not None:
                self._debounce.stop()
            self.search = self.workbench.users_search = ""
            search.value = ""
            self.reload()
        self.query_one(UsersTable).focus()

    # --- filters ------------------------------------------------------------------------

    def set_filters(self, *, segment: str | None, attribute: str | None) -> None:
        """Show only the users of `segment` and with `attribute` (None: any)."""
        self.segment, self.attribute = segment, attribute
        self.reload()

    def action_filter_segment(self) -> None:
        """Only the highlighted customer's segment (again: any segment)."""
        row = self.query_one(UsersTable).row_at_cursor()
        if self.segment is not None:
            self.set_filters(segment=None, attribute=self.attribute)
        elif row is not None and row.segment is not None:
            self.set_filters(segment=row.segment, attribute=self.attribute)
        elif row is not None:
            self.notify("this customer has no profile, so no segment", title="Users")

    def action_filter_attribute(self) -> None:
        """Only the highlighted customer's country (again: any country)."""
        row = self.query_one(UsersTable).row_at_cursor()
        if self.attribute is not None:
            self.set_filters(segment=self.segment, attribute=None)
        elif row is not None and row.attribute is not None:
            self.set_filters(segment=self.segment, attribute=row.attribute)

    def action_clear_filters(self) -> None:
        if self.segment is not None or self.attribute is not None:
            self.set_filters(segment=None, attribute=None)

    # --- sort ---------------------------------------------------------------------------

    def set_sort(self, sort: str, descending: bool | None = None) -> None:
        self.sort = sort
        self.descending = DEFAULT_DESCENDING[sort] if descending is None else descending
        self.reload()

    def action_cycle_sort(self) -> None:
        self.set_sort(SORT_CYCLE[(SORT_CYCLE.index(self.sort) + 1) % len(SORT_CYCLE)])

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort, not self.descending)

    @on(DataTable.HeaderSelected)
    def header_selected(self, event: DataTable.HeaderSelected) -> None:
        sort = SORTABLE.get(str(event.column_key.value))
        if sort is None:
            return
        if sort == self.sort:
            self.action_reverse_sort()
        else:
            self.set_sort(sort)

    # --- open ---------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        self.action_open_user()

    def action_open_user(self) -> None:
        if self.focused is not None and isinstance(self.focused, Input):
            self.search_submitted()
            return
        user = self.query_one(UsersTable).user_at_cursor()
        if user is None:
            return
        from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen

        detail = self._detail
        if detail is not None and detail in self.app.screen_stack:
            return  # already open (a second enter queued behind the first)
        if detail is None or not detail.is_mounted:
            detail = self._detail = UserDetailScreen(*user)
            self.app.install_screen(detail, f"user-detail-{id(self)}")
            self.app.push_screen(detail)  # it loads the user when mounted
            return
        if self._push_timer is not None:
            self._push_timer.stop()
        detail.open_user(*user, ready=self._push_detail)
        self._push_timer = self.set_timer(PUSH_WAIT, self._push_detail)

    def _push_detail(self) -> None:
        """Show the reused detail screen (its data is in, or PUSH_WAIT has passed), unless the
        analyst has gone elsewhere meanwhile."""
        if self._push_timer is not None:
            self._push_timer.stop()
            self._push_timer = None
        detail = self._detail
        if detail is None or detail in self.app.screen_stack or self.app.screen is not self:
            return
        self.app.push_screen(detail)

    def on_unmount(self) -> None:
        if self._detail is not None:
            try:
                self.app.uninstall_screen(self._detail)
            except Exception:  # in a stack, or gone already: nothing to free
                pass
