"""The house rules of DESIGN.md §3, checked on the source: layers never import upwards, and the
headless parts never import Textual, so every feature stays scriptable."""

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


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_do_not_import_upwards(package):
    offenders = {
        str(path.relative_to(REPO)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_start_up_imports_nothing_heavy():
    """`dynllm-tui status` must not pay for torch, transformers, llama.cpp or Textual."""
    code = (
        "import sys, dynllm_tui.cli as c, dynllm_tui.jobs, storage.queries;"
        "heavy = {'torch', 'transformers', 'llama_cpp', 'textual'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
