"""Two runs compared (`compare_runs` and the Runs screen's compare key) and Home's count of
customers below the first-snapshot threshold, on the demo workspace with hand-written runs
(tests/ui/conftest.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from textual.widgets import DataTable

from dynllm_tui.ui.runs.run_compare import NOT_COMPARABLE, compare_runs
from models.data.snapshots import DEFAULT_FIRST_AFTER
from storage.browse import get_run, pipeline_status
from storage.browse.runs import FIRST_SNAPSHOT_LINES
from storage.workspace import Workspace
from tests.ui.conftest import add_run, make_app, settle
from tests.ui.test_app import text

SIZE = (110, 32)


def _second_run(db: Path, fingerprint_b: str = "f" * 40) -> None:
    """Run 2 as run 1 but with lr 0.0005 and repeat_term on, other test figures, a validation
    history for both, and data fingerprints (run 1: 'f' * 40)."""
    add_run(db, run_id=2, active=False)
    history = json.dumps([{"epoch": e, "val": {"recall@10": 0.05 + 0.01 * e}} for e in range(12)])
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("UPDATE runs SET config = json_set(config, '$.lr', 0.0005, "
                     "'$.model', json('{\"repeat_term\": true}')), "
                     "test_metrics = json_set(test_metrics, '$.full.recall@10', 0.1500, "
                     "'$.full.ndcg@20', 0.0800), history = ?, best_epoch = 10, "
                     "data_fingerprint = ? WHERE id = 2", (history, fingerprint_b))
        conn.execute("UPDATE runs SET history = ?, data_fingerprint = ? WHERE id = 1",
                     (history, "f" * 40))


def test_compare_runs_shows_differing_settings_metrics_and_data(ui_workspace):
    _second_run(ui_workspace)
    with Workspace.open(ui_workspace) as ws:
        a, b = get_run(ws, 1), get_run(ws, 2)
    rows = {r.what: r for r in compare_runs(a, b)}
    assert rows["data"].difference == "same data and split"
    assert (rows["setting lr"].run_a, rows["setting lr"].run_b) == ("0.001", "0.0005")
    assert rows["setting model.repeat_term"][1:] == ("not recorded", "True", "differs")
    assert "setting epochs" not in rows and "setting seed" not in rows  # the same: not listed
    # run 1's best epoch is 9 (val 0.14), run 2's is 10 (val 0.15)
    assert rows["best validation recall@10"][1:] == ("0.1400", "0.1500", "+0.0100 (+7.1%)")
    assert rows["test recall@10 (full)"][1:] == ("0.1234", "0.1500", "+0.0266 (+21.6%)")
    assert rows["test ndcg@20 (full)"][1:] == ("0.0857", "0.0800", "-0.0057 (-6.7%)")
    assert rows["test ndcg@10 (full)"].difference == "+0.0000 (+0.0%)"
    assert rows["test recall@20 (full)"].run_b == "0.1802"
    same = {r.what: r for r in compare_runs(a, a)}
    assert same["settings"].difference == "all the same"


def test_compare_runs_on_different_data_says_not_comparable(ui_workspace):
    _second_run(ui_workspace, fingerprint_b="0" * 40)
    with Workspace.open(ui_workspace) as ws:
        rows = {r.what: r for r in compare_runs(get_run(ws, 1), get_run(ws, 2))}
    assert rows["data"].difference == f"different data: {NOT_COMPARABLE}"
    assert rows["test recall@10 (full)"].difference == NOT_COMPARABLE
    assert rows["best validation recall@10"].difference == NOT_COMPARABLE


async def test_runs_screen_compare_key_shows_both_runs(ui_workspace):
    _second_run(ui_workspace)
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#comparison").has_class("hidden")
        await pilot.press("c")  # marks run #2 (newest first)
        await pilot.pause()
        assert any("Run #2 marked" in n.message for n in app._notifications)
        await pilot.press("down")
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert not screen.query_one("#comparison").has_class("hidden")
        assert screen.query_one("#report").has_class("hidden")
        table = screen.query_one("#compare", DataTable)
        cells = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)[1:]]
                 for i in range(table.row_count)}
        assert cells["setting lr"] == ["0.0005", "0.001", "differs"]
        assert cells["test recall@10 (full)"] == ["0.1500", "0.1234", "-0.0266 (-17.7%)"]
        assert cells["data"][2] == "same data and split"
        await pilot.press("up")  # moving in the list brings the report back
        await pilot.pause()
        assert screen.query_one("#comparison").has_class("hidden")
        assert not screen.query_one("#report").has_class("hidden")


def _below_threshold_by_hand(db: Path) -> int:
    """Users with fewer than 5 purchase lines and no profile made, counted in Python."""
    with Workspace.open(db) as ws:
        lines = Counter(u for (u,) in ws.conn.execute("SELECT user_id FROM interactions"))
        users = [u for (u,) in ws.conn.execute("SELECT id FROM users")]
        profiled = {u for (u,) in ws.conn.execute(
            "SELECT user_id FROM profiles WHERE status = 'ok'")}
    return sum(lines[u] < 5 and u not in profiled for u in users)


def test_threshold_is_the_snapshot_policys():
    assert FIRST_SNAPSHOT_LINES == DEFAULT_FIRST_AFTER


async def test_home_explains_customers_below_the_snapshot_threshold(demo_workspace):
    expected = _below_threshold_by_hand(demo_workspace)
    assert expected > 0  # the demo slice has light buyers
    with Workspace.open(demo_workspace) as ws:
        status = pipeline_status(ws)
        light = ws.conn.execute("SELECT user_id FROM interactions GROUP BY user_id "
                                "HAVING count(*) < 5 ORDER BY user_id LIMIT 1").fetchone()[0]
    assert status.users_below_threshold == expected
    assert status.users == 200 and status.users_pending == 200 - expected
    app = make_app(demo_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pipeline = text(app.screen.query_one("#pipeline"))
        assert f"{200 - expected} users pending" in pipeline
        who = "1 customer" if expected == 1 else f"{expected} customers"
        assert f"{who} with fewer than 5 purchase lines: no profile yet by design" in pipeline
    # A light buyer profiled anyway (a policy with a lower first_after) is no longer counted.
    with Workspace.open(demo_workspace) as ws, ws.transaction() as conn:
        conn.execute("INSERT INTO profiles (user_id, as_of, status, n_events, model, input_hash, "
                     "created_at) "
                     "VALUES (?, 1, 'ok', 3, 'test', 'h1', '2026-01-05T09:45:00+00:00')", (light,))
    with Workspace.open(demo_workspace) as ws:
        assert pipeline_status(ws).users_below_threshold == expected - 1
    assert _below_threshold_by_hand(demo_workspace) == expected - 1
