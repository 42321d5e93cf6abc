"""The UI config file: key remapping, themes, and broken files that must not stop the app."""

from __future__ import annotations

from dynllm_tui.ui.config import UiConfig, load_config, parse_config
from dynllm_tui.ui.keys import KEYS, TMUX_PREFIXES, bindings, clashes, normalize_keys


def test_defaults_have_no_clashes_and_avoid_tmux_prefixes():
    assert clashes({}) == []
    assert not {k for spec in KEYS for k in spec.key.split(",")} & TMUX_PREFIXES
    assert len({spec.id for spec in KEYS}) == len(KEYS)
    assert all(b.id for b in bindings("users"))


def test_missing_file_means_defaults(tmp_path):
    config = load_config(tmp_path / "none.toml")
    assert config.keymap == {} and config.warnings == [] and config.theme == "dark"
    assert config.start_theme == "textual-dark"


def test_keys_flat_and_grouped(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[keys]\nexport = "x"\n"users.sort" = "S"\n[keys.detail]\nback = "h,\\\\"\n'
                    '[ui]\ntheme = "light"\nlight_theme = "solarized-light"\n')
    config = load_config(path)
    assert config.keymap == {"export": "x", "users.sort": "S", "detail.back": "h,backslash"}
    assert config.start_theme == "solarized-light" and config.warnings == []


def test_problems_become_warnings(tmp_path):
    config = parse_config({"keys": {"nope": "x", "help": 3, "quit": "ctrl+b", "users.sort": "/"},
                           "ui": {"theme": "sepia"}})
    text = "\n".join(config.warnings)
    assert "'nope' is not a binding id" in text
    assert "'help' needs a key string" in text
    assert "tmux prefix" in text
    assert "'slash' is bound to both 'users.search' and 'users.sort'" in text
    assert "theme must be" in text
    assert config.keymap == {"quit": "ctrl+b", "users.sort": "slash"}
    broken = tmp_path / "broken.toml"
    broken.write_text("[keys\nexport = ")
    config = load_config(broken)
    assert config.keymap == {} and "using the defaults" in config.warnings[0]


def test_normalize_keys():
    assert normalize_keys("?") == "question_mark"
    assert normalize_keys("[, ]") == "left_square_bracket,right_square_bracket"
    assert normalize_keys("ctrl+e, x") == "ctrl+e,x"
    assert UiConfig().dark_theme == "textual-dark"
