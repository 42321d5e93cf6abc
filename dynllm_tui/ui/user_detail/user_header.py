"""User detail: who the user is, in two lines (id, attributes, activity, the run shown)."""

from __future__ import annotations

from textual.widgets import Static

from dynllm_tui.ui.formatting import day, money
from storage.browse import UserDetail


class UserHeader(Static):
    DEFAULT_CSS = """
    UserHeader { height: auto; padding: 0 1; background: $boost; }
    """

    def show(self, detail: UserDetail) -> None:
        attrs = " · ".join(f"{v}" for v in detail.attributes.values() if v not in (None, ""))
        segment = next((p.crowd_segment for p in reversed(detail.profiles)
                        if p.status == "ok" and p.crowd_segment), None)
        run = f"run #{detail.run.id}" if detail.run else "no run yet"
        self.update(
            f"[b]Customer {detail.external_id}[/b]{' · ' + attrs if attrs else ''} · "
            f"{detail.events:,} purchases in {detail.baskets:,} baskets · "
            f"spent {money(detail.total_value)}\n"
            f"{day(detail.first_ts)} .. {day(detail.last_ts)} · "
            f"segment: {segment or '—'} · {run}"
        )
