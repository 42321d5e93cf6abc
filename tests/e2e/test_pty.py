"""End to end: the installed `dynllm-tui` console script in a real pseudo-terminal (100x30).

Keys go in as a terminal sends them; the output is fed to a VT100 emulator (pyte) and the test
waits for text on the emulated screen. Users -> open the top customer -> export dialog -> type a
file name -> ctrl+s -> the file appears -> q; then the CSV is checked against the workspace.
Every wait has a timeout and a failure prints the emulated screen.

The child gets a clean environment: HOME and the XDG folders under tmp_path (the developer's
config file and data never leak in), no animations, no Textual devtools variables.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest

from storage.exports import RECOMMENDATION_COLUMNS
from storage.workspace import Workspace
from tests.ui.conftest import TOP_USER, add_run

COLUMNS, LINES = 100, 30
START_TIMEOUT = 30.0  # first screen: a cold interpreter on a busy CI machine
STEP_TIMEOUT = 15.0


class Terminal:
    """A child process in a pty, its output rendered on an emulated screen."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.child = pexpect.spawn(argv[0], argv[1:], cwd=str(cwd), env=env,
                                   dimensions=(LINES, COLUMNS), timeout=STEP_TIMEOUT)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def _pump(self, wait: float) -> None:
        try:
            data = self.child.read_nonblocking(65536, timeout=wait)
        except pexpect.TIMEOUT:
            return
        self.raw += data
        self.stream.feed(data)

    def wait_for(self, what: str, check: Callable[[str], bool], timeout: float) -> str:
        """Read output until `check(screen text)` holds; fail with the screen on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.text()
            if check(shown):
                return shown
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout:.0f} s waiting for {what}")
            try:
                self._pump(0.1)
            except pexpect.EOF:
                self.fail(f"the app exited while waiting for {what}")

    def wait_text(self, *texts: str, timeout: float = STEP_TIMEOUT) -> str:
        return self.wait_for(" and ".join(repr(t) for t in texts),
                             lambda shown: all(t in shown for t in texts), timeout)

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def fail(self, message: str) -> None:
        tail = bytes(self.raw[-600:]).decode("utf-8", "replace")
        pytest.fail(f"{message}\n--- screen ({COLUMNS}x{LINES}) ---\n{self.text()}\n"
                    f"--- last output bytes ---\n{tail!r}", pytrace=False)

    def wait_exit(self, timeout: float = STEP_TIMEOUT) -> int:
        """Read until the app closes the terminal; its exit status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._pump(0.1)
            except pexpect.EOF:
                break
            if time.monotonic() > deadline:
                self.fail("the app did not exit")
        status = self.child.wait()
        self.child.close()
        return status

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


def _clean_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm-256color",
        "COLUMNS": str(COLUMNS),
        "LINES": str(LINES),
        "TEXTUAL_ANIMATIONS": "none",  # no sliding tab underlines or fading notifications
    }
    for folder in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        Path(env[folder]).mkdir(parents=True, exist_ok=True)
    return env


def _console_script() -> Path:
    script = Path(sys.executable).with_name("dynllm-tui")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the package (pip install -e '.[dev]')")
    return script


@pytest.fixture
def e2e_workspace(tmp_path, demo_workspace_file) -> Path:
    """The demo slice with one deterministic finished run (tests/ui/conftest.py's add_run)."""
    db = tmp_path / "ws.db"
    shutil.copy(demo_workspace_file, db)
    add_run(db)
    return db


def _expected_rows(db: Path, user: str, k: int) -> list[list[str]]:
    with Workspace.open(db, create=False) as ws:
        rows = ws.conn.execute(
            "SELECT r.rank, i.external_id, coalesce(i.title, ''), r.score FROM recommendations r "
            "JOIN users u ON u.id = r.user_id JOIN items i ON i.id = r.item_id "
            "WHERE r.run_id = 1 AND r.list = 'all' AND u.external_id = ? AND r.rank <= ? "
            "ORDER BY r.rank",
            (user, k)).fetchall()
    return [[user, str(rank), item, title, f"{score:.6f}", "1", "dynllm"]
            for rank, item, title, score in rows]


def test_export_one_customer_from_a_real_terminal(tmp_path, e2e_workspace):
    work = tmp_path / "cwd"
    work.mkdir()
    out = work / "e2e-one.csv"
    term = Terminal([str(_console_script()), "--db", str(e2e_workspace)], cwd=work,
                    env=_clean_env(tmp_path))
    try:
        # Home, with the workspace's data loaded (the nav bar names the workspace file).
        term.wait_text("Home", "Users", "ws.db", timeout=START_TIMEOUT)
        term.wait_for("the home screen's data", lambda s: "200" in s, STEP_TIMEOUT)

        term.send("2")  # Users
        shown = term.wait_text("200 users", TOP_USER, "loaded")
        lines = shown.splitlines()
        header = next(i for i, line in enumerate(lines) if "customer" in line and "events" in line)
        assert lines[header + 1].split()[0] == TOP_USER  # most events first: the cursor's row

        term.send("\r")  # open the user under the cursor (the most active one)
        shown = term.wait_text(f"Customer {TOP_USER}", "purchases in", "run #1")
        assert "EIRE" in shown and "loading" not in shown

        term.send("e")  # the export dialog, for this customer
        shown = term.wait_text("One customer", "recommendations.csv")
        assert TOP_USER in shown
        term.send("\x15")  # ctrl+u: clear the file name field (it has the focus)
        term.send("e2e-one.csv")
        term.wait_text("e2e-one.csv", "→")
        term.send("\x13")  # ctrl+s: write the file
        term.wait_for("the file", lambda s: out.exists(), STEP_TIMEOUT)
        term.wait_text("wrote 10 rows")
        assert not list(work.glob(".*.part")), "a temporary file was left behind"

        term.send("q")
        assert term.wait_exit() == 0
    finally:
        term.close()

    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == RECOMMENDATION_COLUMNS == (
        "user_id", "rank", "item_id", "item_title", "score", "run_id", "model", "generated_at",
        "bought_before")
    assert [r[:7] for r in rows[1:]] == _expected_rows(e2e_workspace, TOP_USER, 10)
    stamps = {r[7] for r in rows[1:]}
    assert len(stamps) == 1 and time.strptime(stamps.pop(), "%Y-%m-%dT%H:%M:%SZ")
    assert sorted(p.name for p in work.iterdir()) == ["e2e-one.csv"]


def test_segments_to_a_customer_to_discover_and_export(tmp_path, e2e_workspace):
    """Home -> Segments -> a segment (its detail; its recommendations exported with the
    segment key) -> Enter: Users filtered to it -> its top customer -> Discover -> export."""
    from tests.ui.recommendation_lists import add_lists
    from tests.ui.segments_workspace import GIFT, add_segment_profiles

    add_lists(e2e_workspace)
    add_segment_profiles(e2e_workspace)
    work = tmp_path / "cwd"
    work.mkdir()
    segment_file = work / "recommendations-gift-shop-wholesaler.csv"
    term = Terminal([str(_console_script()), "--db", str(e2e_workspace)], cwd=work,
                    env=_clean_env(tmp_path))
    try:
        term.wait_text("Home", "Segments", "ws.db", timeout=START_TIMEOUT)
        term.send("5")
        term.wait_text("3 segments", "193 of 200 customers have no profile", GIFT,
                       "Buy again · most recommended")
        term.send("w")  # the highlighted (first) segment's recommendations
        term.wait_for("the segment's file", lambda s: segment_file.exists(), STEP_TIMEOUT)
        term.wait_text("wrote", "rows to")
        term.send("\r")  # its customers in Users
        shown = term.wait_text("3 users", "Filtered: segment = 'Gift shop wholesaler'")
        assert TOP_USER in shown
        term.send("\r")  # the top customer of the segment
        term.wait_text(f"Customer {TOP_USER}", "run #1")
        term.send("l")  # all -> buy again
        term.wait_text("Buy again")
        term.send("l")  # -> discover
        term.wait_text("Discover", "new to this customer")
        term.send("e")
        term.wait_text("One customer", "recommendations.csv")
        term.send("\x13")  # ctrl+s: write the file
        out = work / "recommendations.csv"
        term.wait_for("the customer's file", lambda s: out.exists(), STEP_TIMEOUT)
        term.wait_text("wrote")
        term.send("q")
        assert term.wait_exit() == 0
    finally:
        term.close()

    with open(segment_file, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with Workspace.open(e2e_workspace, create=False) as ws:
        members = {e for (e,) in ws.conn.execute(
            "SELECT external_id FROM user_stats WHERE segment = ?", (GIFT,))}
    assert rows and {r["user_id"] for r in rows} == members
    with open(work / "recommendations.csv", newline="", encoding="utf-8") as fh:
        assert {r["user_id"] for r in csv.DictReader(fh)} == {TOP_USER}
