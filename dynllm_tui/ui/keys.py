"""Every key binding of the app in one table: the screens' BINDINGS, the help screen, the command
palette and the config file's `[keys]` table all read it.

An entry's id is the name used in the config file (`export = "x"`, `"users.sort" = "S"`).
Defaults avoid tmux's prefixes (ctrl+b, ctrl+a) and screen's (ctrl+a).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from textual.binding import Binding
from textual.keys import KEY_NAME_REPLACEMENTS

SCOPES = {
    "app": "Everywhere",
    "home": "Home",
    "users": "Users",
    "segments": "Segments",
    "detail": "User detail",
    "runs": "Runs",
    "training": "Training",
    "export": "Export dialog",
    "help": "Help",
}
TMUX_PREFIXES = {"ctrl+b", "ctrl+a"}


@dataclass(frozen=True)
class KeySpec:
    id: str
    key: str  # default keys, comma-separated
    action: str
    description: str
    scope: str
    show: bool = True  # in the footer (every binding is in the help screen and the palette)
    priority: bool = False
    palette: bool = True  # offered in the command palette


KEYS: tuple[KeySpec, ...] = (
    KeySpec("home", "1", "app.go('home')", "Home", "app", show=False),
    KeySpec("users", "2", "app.go('users')", "Users", "app", show=False),
    KeySpec("runs", "3", "app.go('runs')", "Runs", "app", show=False),
    KeySpec("training", "4", "app.go('training')", "Training", "app", show=False),
    KeySpec("segments", "5", "app.go('segments')", "Segments", "app", show=False),
    KeySpec("export", "e", "app.export", "Export", "app"),
    KeySpec("help", "question_mark", "app.help", "Help", "app"),
    KeySpec("theme", "t", "app.toggle_theme", "Dark/light theme", "app", show=False),
    KeySpec("refresh", "r", "app.refresh_screen", "Refresh", "app", show=False),
    # f12, not ctrl+s: ctrl+s starts a training and writes an export.
    KeySpec("screenshot", "f12", "app.screenshot", "Screenshot (SVG, in the workspace's folder)",
            "app", show=False),
    KeySpec("palette", "ctrl+p", "app.command_palette", "Command palette", "app", show=False,
            priority=True, palette=False),
    KeySpec("quit", "q", "app.quit", "Quit", "app"),
    KeySpec("home.demo", "d", "build_demo", "Build the demo workspace", "home"),
    KeySpec("home.cancel_demo", "c", "cancel_demo", "Stop building the demo", "home"),
    KeySpec("users.search", "slash", "focus_search", "Search", "users"),
    KeySpec("users.sort", "s", "cycle_sort", "Sort", "users"),
    KeySpec("users.reverse", "o", "reverse_sort", "Reverse", "users"),
    KeySpec("users.open", "enter", "open_user", "Open", "users"),
    KeySpec("users.clear", "escape", "clear_search", "Clear search", "users", show=False),
    KeySpec("users.filter_segment", "g", "filter_segment", "Filter: this segment", "users",
            show=False),
    KeySpec("users.filter_attribute", "f", "filter_attribute", "Filter: this country",
            "users", show=False),
    KeySpec("users.clear_filters", "backspace", "clear_filters", "Clear filters", "users",
            show=False),
    KeySpec("segments.open", "enter", "open_segment", "Customers of this segment",
            "segments"),
    KeySpec("segments.export", "w", "export_segment",
            "Export this segment's recommendations (CSV)", "segments"),
    KeySpec("detail.back", "escape,backspace", "back", "Back", "detail"),
    KeySpec("detail.prev_tab", "p", "tab(-1)", "Previous tab", "detail", show=False),
    KeySpec("detail.next_tab", "n", "tab(1)", "Next tab", "detail"),
    KeySpec("detail.older", "left_square_bracket", "snapshot(-1)", "Older profile", "detail",
            show=False),
    KeySpec("detail.newer", "right_square_bracket", "snapshot(1)", "Newer profile", "detail",
            show=False),
    KeySpec("detail.list", "l", "recs_list", "Switch list: all, buy again, discover", "detail",
            show=False),
    # One copy key on every list ("c" is taken by compare on Runs).
    KeySpec("detail.copy", "y", "copy_list", "Copy the list shown (TSV) to the clipboard",
            "detail", show=False),
    KeySpec("runs.activate", "a", "activate", "Make active", "runs"),
    KeySpec("runs.compare", "c", "compare", "Compare with…", "runs"),
    KeySpec("runs.copy", "y", "copy_runs", "Copy the runs table (TSV) to the clipboard", "runs",
            show=False),
    # Control keys: they must work while a form field has the focus (letters are typed there).
    KeySpec("training.start", "ctrl+s", "start_training", "Start training", "training"),
    KeySpec("training.cancel", "ctrl+g", "cancel_training", "Cancel training", "training"),
    KeySpec("export.run", "ctrl+s", "run_export", "Write the file", "export", priority=True,
            palette=False),
    KeySpec("export.cancel", "escape", "cancel", "Close", "export", palette=False),
    KeySpec("help.close", "escape,q,question_mark", "close", "Close", "help", palette=False),
)
BY_ID = {spec.id: spec for spec in KEYS}


def normalize_keys(keys: str) -> str:
    """'?' -> 'question_mark', '/' -> 'slash'; key names pass unchanged (as Textual does)."""
    out = []
    for key in (k.strip() for k in keys.split(",")):
        if len(key) == 1 and not key.isalnum():
            try:
                key = unicodedata.name(key).lower().replace("-", "_").replace(" ", "_")
            except ValueError:
                pass
            key = KEY_NAME_REPLACEMENTS.get(key, key)
        out.append(key)
    return ",".join(k for k in out if k)


def bindings(scope: str) -> list[Binding]:
    """The Textual bindings of one scope (their ids make them remappable by the keymap)."""
    return [
        Binding(spec.key, spec.action, spec.description, show=spec.show,
                priority=spec.priority, id=spec.id)
        for spec in KEYS if spec.scope == scope
    ]


def effective_keys(keymap: dict[str, str]) -> dict[str, str]:
    """Binding id -> the keys in force after the config's remapping."""
    return {spec.id: keymap.get(spec.id, spec.key) for spec in KEYS}


def clashes(keymap: dict[str, str]) -> list[str]:
    """Keys bound twice where both bindings are live at once (a screen plus everywhere)."""
    keys = effective_keys(keymap)
    problems = []
    for scope in SCOPES:
        if scope == "app":
            continue
        live = [s for s in KEYS if s.scope in ("app", scope)]
        if scope in ("export", "help"):  # modal: app keys still reach it, but its own win
            live = [s for s in KEYS if s.scope == scope]
        seen: dict[str, str] = {}
        for spec in live:
            for key in keys[spec.id].split(","):
                if key in seen and seen[key] != spec.id:
                    problems.append(f"{key!r} is bound to both {seen[key]!r} and {spec.id!r} "
                                    f"({SCOPES[scope]})")
                seen.setdefault(key, spec.id)
    return list(dict.fromkeys(problems))
