"""User detail: timeline, profile snapshots, recommendations, facet weights, memory — one tab
each, all loaded by one `storage.browse.user_detail` call in a worker."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import on, work
from textual.widgets import TabbedContent, TabPane
from textual.worker import get_current_worker

from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.keys import bindings
from dynllm_tui.ui.user_detail.facet_weights_view import FacetWeightsView
from dynllm_tui.ui.user_detail.memory_view import MemoryView
from dynllm_tui.ui.user_detail.profile_view import ProfileView
from dynllm_tui.ui.user_detail.recommendations_table import RecommendationsTable
from dynllm_tui.ui.user_detail.timeline_table import TimelineTable
from dynllm_tui.ui.user_detail.user_header import UserHeader
from storage.browse import UserDetail, user_detail, user_timeline

TABS = ("timeline", "profile", "recs", "weights", "memory")
VIEWS = {"profile": ProfileView, "recs": RecommendationsTable, "weights": FacetWeightsView,
         "memory": MemoryView}
TOP_K = 10
TIMELINE_PAGE = 1000


class UserDetailScreen(WorkbenchScreen):
    SCOPE = "detail"
    SECTION = "users"
    BINDINGS = bindings("detail")
    DEFAULT_CSS = """
    UserDetailScreen TabbedContent { height: 1fr; }
    UserDetailScreen TabPane { padding: 0; }
    """

    def __init__(self, user_id: int, external_id: str) -> None:
        super().__init__()
        self.user_id = user_id
        self.external_id = external_id
        self.detail: UserDetail | None = None

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

    def refresh_data(self) -> None:
        self.load(self.user_id)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self, user_id: int) -> None:
        try:
            detail = self.fetch(user_detail, user_id, k=TOP_K, timeline_limit=TIMELINE_PAGE)
        except Exception as exc:
            self.fail(f"Customer {self.external_id}", exc)
            return
        if not get_current_worker().is_cancelled:
            self.deliver(self.show, detail)

    def show(self, detail: UserDetail) -> None:
        self.detail = detail
        self.query_one(UserHeader).show(detail)
        self.query_one(TimelineTable).show(detail.timeline, detail.events)
        for view in self.query(".detail-view"):
            view.show(detail)  # the panes shown so far; the others read self.detail on mount

    @on(TabbedContent.TabActivated)
    def tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        if pane.id in VIEWS and not pane.children:
            pane.mount(VIEWS[pane.id](id=f"{pane.id}-view", classes="detail-view"))

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
        self.deliver(self.query_one(TimelineTable).extend, events)

    # --- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, delta: int) -> None:
        tabs = self.query_one(TabbedContent)
        index = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(index + delta) % len(TABS)]

    def action_snapshot(self, delta: int) -> None:
        tabs = self.query_one(TabbedContent)
        views = self.query(ProfileView)
        if tabs.active != "profile" or not views:
            tabs.active = "profile"  # shows the latest snapshot first
            return
        views.first().step(delta)
