"""The user's UI settings: a TOML file (default `~/.config/dynllm-tui/config.toml`, or
`$DYNLLM_TUI_CONFIG`), read once at start-up. A broken file never stops the app: it runs on the
defaults and says what was wrong.

    [keys]                 # binding id = "key" or "key1,key2"  (ids: see the help screen, ?)
    export = "x"
    "users.sort" = "S"
    [keys.detail]          # the same, grouped: detail.back
    back = "escape,h"

    [ui]
    theme = "light"        # "dark" (default) or "light" at start-up
    dark_theme = "textual-dark"
    light_theme = "textual-light"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynllm_tui.ui.keys import BY_ID, TMUX_PREFIXES, clashes, normalize_keys

EXAMPLE = '[keys]\nexport = "x"\n"users.sort" = "S"\n\n[ui]\ntheme = "light"\n'


def config_path() -> Path:
    env = os.environ.get("DYNLLM_TUI_CONFIG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("dynllm-tui", appauthor=False)) / "config.toml"


@dataclass
class UiConfig:
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys (overrides only)
    theme: str = "dark"  # "dark" | "light" at start-up
    dark_theme: str = "textual-dark"
    light_theme: str = "textual-light"
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def start_theme(self) -> str:
        return self.light_theme if self.theme == "light" else self.dark_theme


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def parse_config(data: dict[str, Any], path: Path | None = None) -> UiConfig:
    config = UiConfig(path=path)
    where = f"{path}: " if path else ""
    for name, value in _flatten(data.get("keys", {})).items():
        if name not in BY_ID:
            config.warnings.append(f"{where}[keys] {name!r} is not a binding id (see ?)")
        elif not isinstance(value, str) or not normalize_keys(value):
            config.warnings.append(f"{where}[keys] {name!r} needs a key string like \"x\"")
        else:
            keys = normalize_keys(value)
            config.keymap[name] = keys
            for key in set(keys.split(",")) & TMUX_PREFIXES:
                config.warnings.append(f"{where}[keys] {name!r} = {key!r} is a tmux prefix: "
                                       "inside tmux that key never reaches the app")
    for problem in clashes(config.keymap):
        config.warnings.append(f"{where}{problem}")
    ui = data.get("ui", {})
    if not isinstance(ui, dict):
        ui = {}
    theme = ui.get("theme", "dark")
    if theme in ("dark", "light"):
        config.theme = theme
    else:
        config.warnings.append(f"{where}[ui] theme must be \"dark\" or \"light\"")
    for slot in ("dark_theme", "light_theme"):
        if isinstance(ui.get(slot), str):
            setattr(config, slot, ui[slot])
    return config


def load_config(path: str | Path | None = None) -> UiConfig:
    """Read the config file; a missing file means defaults, a broken one defaults + a warning."""
    path = Path(path).expanduser() if path is not None else config_path()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return UiConfig(path=path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return UiConfig(path=path, warnings=[f"{path}: not read ({exc}); using the defaults"])
    return parse_config(data, path)
