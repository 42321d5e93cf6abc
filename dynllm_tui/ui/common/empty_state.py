"""A centred message that stands in for a pane with nothing to show, saying what to do next."""

from __future__ import annotations

from textual.widgets import Static


class EmptyState(Static):
    DEFAULT_CSS = """
    EmptyState {
        width: 1fr; height: auto; padding: 1 2; color: $text-muted;
        text-align: center; content-align: center middle;
    }
    """
