"""The app's start-up path: what `dynllm-tui --db PATH` imports before the first screen, Home's
queries answered early (`WorkspaceReader.prefetch`, started by the command before it imports
the app), and the command's short cut past its full parser. The time itself is measured by
bench/ui.py (a) and bench/scale.py; these tests keep the reasons for it true."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynllm_tui.app import WorkbenchApp
from dynllm_tui.cli import _bare_app_args
from dynllm_tui.cli_parser import build_parser
from dynllm_tui.ui.config import UiConfig
from dynllm_tui.ui.home.home_queries import HOME_QUERIES, pipeline_status, workspace_status
from dynllm_tui.ui.home.home_screen import HomeScreen
from dynllm_tui.ui.home.summary_panel import SummaryPanel
from dynllm_tui.ui.reader import WorkspaceReader
from storage.workspace import Workspace
from tests.ui.conftest import settle

REPO = Path(__file__).resolve().parents[2]
# Not needed by the first screen (Home): none of these may load with the app's modules. torch,
# transformers, llama.cpp, numpy, pyarrow and pandas belong to the jobs (child processes);
# sqlite_utils to migrations; plotext to Training's and a user's charts; openai and httpx to
# the profiles job's servers.
HEAVY = ("torch", "transformers", "llama_cpp", "numpy", "pyarrow", "pandas", "sqlite_utils",
         "plotext", "textual_plotext", "openai", "httpx")
# The sections other than Home load when first opened (`app.MODES`).
OTHER_SECTIONS = ("dynllm_tui.ui.users.users_screen", "dynllm_tui.ui.runs.runs_screen",
                  "dynllm_tui.ui.training.training_screen",
                  "dynllm_tui.ui.segments.segments_screen",
                  "dynllm_tui.ui.user_detail.user_detail_screen")


def _loaded_by(code: str) -> dict[str, list[str]]:
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps({{'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules), "
             f"'sections': sorted(m for m in {OTHER_SECTIONS!r} if m in sys.modules), "
             "'models': sorted(m for m in sys.modules if m.startswith('models.'))}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_app_and_the_command_import_nothing_the_first_screen_does_not_need():
    loaded = _loaded_by("import dynllm_tui.cli, dynllm_tui.app")
    assert loaded == {"heavy": [], "sections": [], "models": []}


def test_the_first_screen_loads_nothing_heavy(plain_workspace):
    """The app run as the command runs it, up to Home's first paint with its data."""
    code = f"""
import asyncio
from dynllm_tui.app import WorkbenchApp
from dynllm_tui.ui.config import UiConfig
from dynllm_tui.ui.config import UiConfig
from dynllm_tui.ui.home.home_queries import HOME_QUERIES
from dynllm_tui.ui.reader import WorkspaceReader

async def first_screen():
    reader = WorkspaceReader({str(plain_workspace)!r})
    reader.prefetch(*HOME_QUERIES)
    app = WorkbenchApp({str(plain_workspace)!r}, config=UiConfig(), reader=reader)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert type(app.screen).__name__ == "HomeScreen" and app.screen.empty is False

asyncio.run(first_screen())
"""
    assert _loaded_by(code) == {"heavy": [], "sections": [], "models": []}


def test_prefetched_answers_are_the_answers(plain_workspace):
    reader = WorkspaceReader(str(plain_workspace))
    reader.prefetch(*HOME_QUERIES).join()
    early = reader.prefetched(*HOME_QUERIES)
    assert early is not None
    fresh = WorkspaceReader(str(plain_workspace))
    assert early == [fresh.call(fn) for fn in HOME_QUERIES]
    assert early[0]["interactions"] > 0
    # Taken once: the next ask is a real query again.
    assert reader.prefetched(*HOME_QUERIES) is None
    assert reader.call(workspace_status) == early[0]
    reader.close()
    fresh.close()


def test_a_prefetched_answer_is_dropped_when_another_connection_commits(plain_workspace):
    reader = WorkspaceReader(str(plain_workspace))
    reader.prefetch(*HOME_QUERIES).join()
    with Workspace.open(plain_workspace) as ws, ws.transaction() as conn:
        conn.execute("INSERT INTO runs (created_at, status, config) "
                     "VALUES ('2026-01-06T00:00:00+00:00', 'failed', '{}')")
    assert reader.prefetched(*HOME_QUERIES) is None  # stale: not handed out
    status = reader.call(workspace_status)
    assert status["runs"] == 1 and reader.call(pipeline_status).runs[0].status == "failed"
    reader.close()


def test_any_other_call_first_drops_the_prefetched_answers(plain_workspace):
    """A call that is not a prefetched one may be this connection's own write (choosing the
    active run), which SQLite's data_version does not count: the early answers go."""
    reader = WorkspaceReader(str(plain_workspace))
    reader.prefetch(*HOME_QUERIES).join()
    assert reader.call(lambda ws: ws.conn.execute("SELECT count(*) FROM users").fetchone()[0])
    assert reader.prefetched(*HOME_QUERIES) is None
    reader.close()


def test_a_prefetch_that_fails_leaves_the_error_to_the_call(tmp_path):
    missing = tmp_path / "nothing-here.db"
    reader = WorkspaceReader(str(missing), create=False)
    reader.prefetch(*HOME_QUERIES).join()
    assert reader.prefetched(*HOME_QUERIES) is None
    with pytest.raises(Exception, match="nothing-here.db"):
        reader.call(workspace_status)


async def test_home_paints_the_prefetched_answers_without_asking_again(plain_workspace):
    """What the command does: Home's first paint has its data from the prefetch, the same text
    as when Home asks itself, and no worker asks the same questions again afterwards."""

    async def summary(prefetch: bool) -> tuple[str, int]:
        reader = WorkspaceReader(str(plain_workspace))
        if prefetch:
            reader.prefetch(*HOME_QUERIES).join()
        app = WorkbenchApp(str(plain_workspace), config=UiConfig(), reader=reader)
        app.animation_level = "none"
        loads: list[int] = []
        original = HomeScreen.refresh_data
        HomeScreen.refresh_data = lambda self: (loads.append(1), original(self))[-1]
        try:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                home = app.screen
                assert isinstance(home, HomeScreen) and home.empty is False
                panel = str(home.query_one(SummaryPanel).render())
        finally:
            HomeScreen.refresh_data = original
        return panel, len(loads)

    early_text, early_loads = await summary(prefetch=True)
    asked_text, asked_loads = await summary(prefetch=False)
    assert early_text == asked_text and "interactions" in early_text
    assert (early_loads, asked_loads) == (0, 1)


@pytest.mark.parametrize("argv", [[], ["--db", "ws.db"], ["--db=ws.db"], ["--db", "import"],
                                  ["--db", ""]])
def test_the_bare_app_short_cut_answers_what_the_parser_answers(argv):
    assert _bare_app_args(argv) == build_parser().parse_args(argv)


@pytest.mark.parametrize("argv", [["status"], ["--db", "ws.db", "status"], ["--help"],
                                  ["--db"], ["--db", "-x"], ["--d", "ws.db"]])
def test_everything_else_goes_to_the_parser(argv):
    assert _bare_app_args(argv) is None
