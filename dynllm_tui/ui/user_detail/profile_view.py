"""User detail: the profile facets, with a selector through the user's snapshots over time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape
from textual import on
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Select, Static

from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.formatting import NO_PROFILE, day
from storage.browse import ProfileSnapshot, UserDetail


class ProfileView(Vertical):
    DEFAULT_CSS = """
    ProfileView #snapshot { width: 1fr; }
    ProfileView #facets { height: auto; padding: 0 1; }
    ProfileView .hidden { display: none; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.profiles: list[ProfileSnapshot] = []

    def compose(self) -> Iterable[Any]:
        yield EmptyState(NO_PROFILE, id="no-profile")
        yield Select([], prompt="snapshot", allow_blank=True, id="snapshot", classes="hidden")
        with VerticalScroll(classes="hidden", id="facets-scroll"):
            yield Static(id="facets")

    def on_mount(self) -> None:
        detail = getattr(self.screen, "detail", None)
        if detail is not None:
            self.show(detail)

    def show(self, detail: UserDetail) -> None:
        profiles = detail.profiles
        self.profiles = profiles
        has = bool(profiles)
        self.query_one("#no-profile").set_class(has, "hidden")
        self.query_one("#snapshot").set_class(not has, "hidden")
        self.query_one("#facets-scroll").set_class(not has, "hidden")
        if not has:
            return
        select = self.query_one("#snapshot", Select)
        select.set_options(
            (f"{day(p.as_of)} · {p.status} · from {p.n_events or 0} purchases · {p.model}", i)
            for i, p in enumerate(profiles)
        )
        select.value = len(profiles) - 1  # the latest

    @on(Select.Changed, "#snapshot")
    def snapshot_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self.query_one("#facets", Static).update(self.render_facets(self.profiles[event.value]))

    def step(self, delta: int) -> None:
        """Older (-1) or newer (+1) snapshot."""
        select = self.query_one("#snapshot", Select)
        if not self.profiles or not isinstance(select.value, int):
            return
        select.value = min(max(select.value + delta, 0), len(self.profiles) - 1)

    @staticmethod
    def render_facets(p: ProfileSnapshot) -> str:
        if p.status != "ok":
            return (f"[b red]This snapshot failed[/b red] (as of {day(p.as_of)}):\n"
                    f"{escape(p.error or 'no error recorded')}")

        def items(values: list[str], source: str | None) -> str:
            text = ", ".join(escape(v) for v in values) if values else "—"
            return text + (f"  [dim]({source})[/dim]" if source else "")

        return (
            f"[b]As of[/b] {day(p.as_of)}, from {p.n_events or 0} purchases before it\n\n"
            f"[b]Crowd segment[/b]\n  {escape(p.crowd_segment or '—')}\n"
            f"[b]Interests[/b]\n  {items(p.interests, None)}\n"
            f"[b]Preferred categories[/b]\n  {items(p.preferred_categories, p.categories_source)}\n"
            f"[b]Favoured brands[/b]\n  {items(p.favored_brands, p.brands_source)}"
        )
