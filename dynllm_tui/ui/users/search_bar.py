"""Users: the search box (customer id, country or profile segment, as you type)."""

from __future__ import annotations

from textual.widgets import Input


class SearchBar(Input):
    DEFAULT_CSS = """
    SearchBar { height: 3; margin: 0 0; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="search customer id, country or segment", **kwargs)
