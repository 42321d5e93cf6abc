"""The house rules (docs/ARCHITECTURE.md), checked on the source: layers never import upwards,
the rooms of `models/` import only what their `__init__` docstring allows, and the headless parts
never import Textual, so every feature stays scriptable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "storage": {"models", "dynllm_tui", "textual", "textual_plotext", "torch", "transformers",
                "llama_cpp"},
    "models": {"storage", "dynllm_tui", "textual", "textual_plotext", "sqlite3", "sqlite_utils"},
}

# Within models/: for each room (a module path prefix), the rooms of models it may import.
# The most specific prefix wins, so evaluation.report can be allowed more than evaluation.
MODEL_ROOMS = {
    "models.vocabulary": set(),
    "models.data": {"models.vocabulary", "models.data"},
    "models.profiles": {"models.vocabulary", "models.data", "models.profiles"},
    "models.network": {"models.vocabulary", "models.data", "models.network"},
    "models.training": {"models.vocabulary", "models.data", "models.network", "models.training",
                        "models.evaluation.metrics", "models.evaluation.protocols"},
    "models.evaluation": {"models.vocabulary", "models.data", "models.evaluation"},
    "models.evaluation.report": {"models.vocabulary", "models.data", "models.evaluation",
                                 "models.network", "models.training"},
}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _room(module: str, rooms) -> str | None:
    matches = [r for r in rooms if module == r or module.startswith(r + ".")]
    return max(matches, key=len) if matches else None


def _allowed(imported: str, allowed: set[str]) -> bool:
    return any(imported == a or imported.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_do_not_import_upwards(package):
    offenders = {
        str(path.relative_to(REPO)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_module_of_models_lives_in_a_room():
    homeless = [_module_name(p) for p in (REPO / "models").rglob("*.py")
                if _module_name(p) != "models" and _room(_module_name(p), MODEL_ROOMS) is None]
    assert homeless == []


def test_the_rooms_of_models_import_only_what_they_may():
    """E.g. the graph network never imports the LLM half; metrics and baselines never import
    the network; the data layer imports no other room."""
    offenders = {}
    for path in (REPO / "models").rglob("*.py"):
        module = _module_name(path)
        room = _room(module, MODEL_ROOMS)
        if room is None:
            continue
        bad = sorted(m for m in _imported_modules(path)
                     if m.startswith("models.") and not _allowed(m, MODEL_ROOMS[room]))
        if bad:
            offenders[module] = bad
    assert offenders == {}


def test_the_room_rules_catch_a_forbidden_import(tmp_path):
    """The checker itself: an import of the LLM half from the network is an offence."""
    assert not _allowed("models.profiles.prompt", MODEL_ROOMS[_room("models.network.x",
                                                                     MODEL_ROOMS)])
    assert not _allowed("models.network.dynllm", MODEL_ROOMS[_room("models.evaluation.baselines",
                                                                    MODEL_ROOMS)])
    assert _allowed("models.network.dynllm", MODEL_ROOMS[_room("models.evaluation.report",
                                                                MODEL_ROOMS)])


def test_package_inits_of_models_import_nothing():
    """Importing `models.vocabulary` (the app does) must not pull torch in through an __init__."""
    for init in (REPO / "models").rglob("__init__.py"):
        assert _imported_modules(init) == set(), init


def test_the_app_and_its_screens_do_not_import_each_other_back():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "dynllm_tui" / "ui").rglob("*.py")
                 if "dynllm_tui.app" in _imported_modules(p)]
    assert offenders == []


def test_jobs_never_import_textual():
    offenders = {str(p.relative_to(REPO)): sorted(_imports(p) & {"textual", "textual_plotext"})
                 for p in (REPO / "dynllm_tui" / "jobs").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_start_up_imports_nothing_heavy():
    """`dynllm-tui status` must not pay for torch, transformers, llama.cpp or Textual."""
    code = (
        "import sys, dynllm_tui.cli as c, dynllm_tui.jobs.status, dynllm_tui.jobs.demo, "
        "storage.queries, models.vocabulary;"
        "heavy = {'torch', 'transformers', 'llama_cpp', 'textual'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
