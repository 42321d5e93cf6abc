"""User detail: timeline, profile snapshots, recommendations (All / Buy again / Discover, with
reasons), facet weights, memory — one tab each, all loaded by one `storage.browse.user_detail`
call in a worker.

Opening a user must feel instant (the target is under 150 ms from the key to the data on
screen, see bench/ui.py), so the screen does as little as it can before the first paint:
- only the timeline is built when the screen opens; the other tabs (the plots are the heavy
  part) are built when first shown, and brought up to date when shown again;
- the Users screen keeps one detail screen and reuses it for the next user (`open_user`):
  composing the tabs, footer and styles again costs more than the data does; and it shows the
  reused screen once the data is in it (`ready`), so the first paint is the data, not a
  "loading…" frame followed by a second paint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual import on, work
from textual.widgets import DataTable, TabbedContent, TabPane, Tabs
from textual.worker import get_current_worker

from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.common.workspace_changed import Change
from dynllm_tui.ui.keys import bindings
from dynllm_tui.ui.user_detail.profile_view import ProfileView
from dynllm_tui.ui.user_detail.timeline_table import TimelineTable
from dynllm_tui.ui.user_detail.user_header import UserHeader
from storage.browse import UserDetail, user_detail, user_timeline

TABS = ("timeline", "profile", "recs", "weights", "memory")
TOP_K = 10
TIMELINE_PAGE = 300  # events per query: a screenful is shown, the rest as the cursor goes


def _view_class(pane: str) -> type:
    """The widget of a tab other than the timeline (imported when first needed)."""
    if pane == "profile":
        return ProfileView
    if pane == "recs":
        from dynllm_tui.ui.user_detail.recommendations_table import RecommendationsTable

        return RecommendationsTable
    if pane == "weights":
        from dynllm_tui.ui.user_detail.facet_weights_view import FacetWeightsView

        return FacetWeightsView
    from dynllm_tui.ui.user_detail.memory_view import MemoryView

    return MemoryView


class UserDetailScreen(WorkbenchScreen):
    SCOPE = "detail"
    SECTION = "users"
    BINDINGS = bindings("detail")
    # Straight to the timeline: focusing the tabs first and then the table would make the
    # footer rebuild its keys twice before the first paint.
    AUTO_FOCUS = "#timeline-table"
    # A finished or newly active run brings recommendations, weights and memory; profiles and
    # imports change the profile and timeline tabs; a training that ended in another process
    # may have stored a run too.
    CONCERNS = frozenset({"run", "activate", "profiles", "import", "training"})
    DEFAULT_CSS = """
    UserDetailScreen TabbedContent { height: 1fr; }
    UserDetailScreen TabPane { padding: 0; }
    """

    def __init__(self, user_id: int, external_id: str) -> None:
        super().__init__()
        self.user_id = user_id
        self.external_id = external_id
        self.detail: UserDetail | None = None
        self._current: set[str] = set()  # tabs whose view shows self.detail
        self._ready: Callable[[], None] | None = None
        self._first_list = "all"  # the list the recommendations view opens on

    def compose_body(self) -> Iterable[Any]:
        yield UserHeader(f"Customer {self.external_id}: loading…", id="user-header")
        with TabbedContent(initial="timeline"):
            with TabPane("Timeline", id="timeline"):
                yield TimelineTable(id="timeline-table")
            # The other panes get their content when first shown: opening a user stays quick.
            yield TabPane("Profile", id="profile")
            yield TabPane(f"Top {TOP_K}", id="recs")
            yield TabPane("Facet weights", id="weights")
            yield TabPane("Memory", id="memory")

    def on_mount(self) -> None:
        self.query_one(TimelineTable).focus()
        self.refresh_data()

    def open_user(self, user_id: int, external_id: str, *,
                  ready: Callable[[], None] | None = None) -> None:
        """Show another user on this screen (before it is pushed again): back to the timeline
        tab, nothing of the previous user left on it, the new user's data on its way. `ready`
        is called once that data is on the screen (or could not be loaded)."""
        self._ready = ready
        self.user_id = user_id
        self.external_id = external_id
        self.detail = None
        self._current.clear()
        self.query_one(UserHeader).update(f"Customer {external_id}: loading…")
        timeline = self.query_one(TimelineTable)
        timeline.show([], 0)  # and back to the top
        self.query_one(TabbedContent).active = "timeline"
        self.set_focus(timeline)
        self.refresh_data()

    def refresh_data(self) -> None:
        self.load(self.user_id)

    def concerns(self, change: Change) -> bool:
        if change.kind == "training":
            return change.holder is None  # a training ended (it may have stored a run)
        return change.kind in self.CONCERNS and change.concerns_user(self.user_id)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self, user_id: int) -> None:
        try:
            detail = self.fetch(user_detail, user_id, k=TOP_K, timeline_limit=TIMELINE_PAGE)
        except Exception as exc:
            self.fail(f"Customer {self.external_id}", exc)
            self.deliver(self._call_ready, user_id)
            return
        if not get_current_worker().is_cancelled:
            self.deliver(self.show, detail)

    def show(self, detail: UserDetail) -> None:
        if detail.user_id != self.user_id:
            return  # a late answer for the user shown before
        # A reload of the same user (a job changed the workspace) keeps the timeline where
        # the analyst left it unless the user's events changed.
        same_events = self.detail is not None and self.detail.user_id == detail.user_id \
            and self.detail.events == detail.events
        self.detail = detail
        self._current.clear()
        self.query_one(UserHeader).show(detail)
        if not same_events:
            self.query_one(TimelineTable).show(detail.timeline, detail.events)
        self.show_active_view()  # the other tabs catch up when shown
        self._call_ready(detail.user_id)

    def _call_ready(self, user_id: int) -> None:
        if user_id == self.user_id and self._ready is not None:
            ready, self._ready = self._ready, None
            ready()

    def show_active_view(self) -> None:
        """Build the active tab's view (it reads self.detail on mount) or bring it up to date."""
        pane = self.query_one(TabbedContent).active_pane
        if pane is None or pane.id not in TABS[1:]:
            return
        if not pane.children:
            view = _view_class(pane.id)(id=f"{pane.id}-view", classes="detail-view")
            if pane.id == "recs":
                view.list_name = self._first_list
            pane.mount(view)
        elif self.detail is not None and pane.id not in self._current:
            pane.children[0].show(self.detail)
        if self.detail is not None:
            self._current.add(pane.id)

    @on(TabbedContent.TabActivated)
    def tab_activated(self) -> None:
        self.show_active_view()
        # Focus follows the tab: otherwise the timeline keeps the focus from behind, and
        # coming back to this screen (from another section) would re-focus it and flip the
        # tabs back to the timeline.
        self.call_after_refresh(self._focus_active_pane)

    def _focus_active_pane(self) -> None:
        tabs = self.query_one(TabbedContent)
        pane = tabs.active_pane
        if pane is None:
            return
        # A table, never a form control: a Select (the profile's snapshots) would take the
        # letter keys (type to search) from the screen's bindings.
        inside = [w for w in pane.query(DataTable) if w.focusable]
        if inside:
            self.set_focus(inside[0])
        elif self.focused is not None and pane not in self.focused.ancestors:
            self.set_focus(tabs.query_one(Tabs))

    @on(TimelineTable.NeedMore)
    def need_more(self, event: TimelineTable.NeedMore) -> None:
        self.load_timeline(self.user_id, event.offset)

    @work(thread=True, exclusive=True, group="timeline", exit_on_error=False)
    def load_timeline(self, user_id: int, offset: int) -> None:
        try:
            events = self.fetch(user_timeline, user_id, TIMELINE_PAGE, offset)
        except Exception as exc:
            self.fail(f"Customer {self.external_id}", exc)
            return
        self.deliver(self._extend_timeline, user_id, events)

    def _extend_timeline(self, user_id: int, events: list) -> None:
        if user_id == self.user_id:
            self.query_one(TimelineTable).extend(events)

    # --- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, delta: int) -> None:
        tabs = self.query_one(TabbedContent)
        index = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(index + delta) % len(TABS)]

    def action_recs_list(self, list_name: str | None = None) -> None:
        """Show the recommendations tab with `list_name`, else the next list (All, Buy again,
        Discover); the lists are already loaded, so this draws without a query."""
        tabs = self.query_one(TabbedContent)
        if tabs.active != "recs":
            tabs.active = "recs"  # builds the view; it opens on the list asked for below
        views = self.query("#recs-view")
        if views:
            views.first().select(list_name)
        else:  # the view is built when the tab shows (show_active_view), on this list
            self._first_list = list_name or "buy-again"

    def action_copy_list(self) -> None:
        """Copy the recommendations list shown (or that the Top tab would open on) as TSV,
        through the terminal's clipboard (OSC 52: works over ssh, not in macOS Terminal)."""
        from dynllm_tui.ui.common.clipboard import recommendations_tsv
        from dynllm_tui.ui.user_detail.recommendations_table import empty_message
        from storage.browse import LIST_LABELS

        detail = self.detail
        if detail is None:
            self.notify(f"Customer {self.external_id} is still loading", severity="warning")
            return
        views = self.query("#recs-view")
        list_name = views.first().list_name if views else self._first_list
        message = empty_message(detail, list_name)
        if message is not None:
            self.notify(f"Nothing copied: {message}", title="Copy", severity="warning")
            return
        rows = detail.lists[list_name]
        self.app.copy_to_clipboard(recommendations_tsv(rows))
        self.notify(f"Copied {len(rows)} lines ({LIST_LABELS[list_name]}, customer "
                    f"{self.external_id}) as TSV, with a header line", title="Copy")

    def action_snapshot(self, delta: int) -> None:
        tabs = self.query_one(TabbedContent)
        views = self.query(ProfileView)
        if tabs.active != "profile" or not views:
            tabs.active = "profile"  # shows the latest snapshot first
            return
        views.first().step(delta)
