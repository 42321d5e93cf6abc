"""UI fixtures: the real demo workspace, and a copy of it with one finished run (its
recommendations, facet weights and memory trace) and profile snapshots written directly, as
the training and profile jobs would; values are deterministic so snapshots are stable. And one
workspace made by the real jobs end to end (`ablation_workspace_file`), so that the screens are
also tried on what the jobs really store: a run with one facet, not the four written here."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from dynllm_tui.app import WorkbenchApp
from dynllm_tui.ui.config import UiConfig
from models.vocabulary import FACETS
from storage.workspace import Workspace

FIXED_IMPORT_TIME = "2026-01-05T09:30:00+00:00"
RUN_USERS = 5  # users (most events first) that get recommendations, weights and a trace
TOP_USER = "14911"  # the demo customer with the most events


def _fix_import_time(db: Path) -> None:
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("UPDATE imports SET imported_at = ?, seconds = 1.0", (FIXED_IMPORT_TIME,))


def add_unfinished_run(db: Path, run_id: int, status: str, error: str | None = None) -> None:
    """A run row with no outputs: 'running' (perhaps left by a killed process) or 'failed'."""
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("INSERT INTO runs (id, created_at, status, config, error) "
                     "VALUES (?, '2026-01-06T00:00:00+00:00', ?, '{}', ?)",
                     (run_id, status, error))


def add_run(db: Path, run_id: int = 1, *, active: bool = True, n_users: int = RUN_USERS) -> None:
    """A finished run with test metrics and a model report, and its outputs for the `n_users`
    most active users: top-20 recommendations (a mix of bought and new items), facet weights
    at each basket, and a memory trace."""
    test = {"full": {"recall@10": 0.1234, "ndcg@10": 0.0712, "hit@10": 0.1234, "mrr": 0.0551,
                     "recall@20": 0.1802, "ndcg@20": 0.0857, "n_events": 4213},
            "paper": {"recall@10": 0.2211, "ndcg@10": 0.1301, "hit@10": 0.2211, "mrr": 0.0902,
                      "recall@20": 0.3010, "ndcg@20": 0.1500, "n_events": 4213}}
    report = [
        {"method": "dynllm", "protocol": "full", **test["full"]},
        {"method": "popularity", "protocol": "full", "recall@10": 0.0811, "ndcg@10": 0.0402,
         "hit@10": 0.0811, "mrr": 0.0301, "recall@20": 0.1203, "ndcg@20": 0.0501},
        {"method": "repeat", "protocol": "full", "recall@10": 0.1450, "ndcg@10": 0.0900,
         "hit@10": 0.1450, "mrr": 0.0700, "recall@20": 0.1700, "ndcg@20": 0.0950},
        {"method": "dynllm", "protocol": "paper", **test["paper"]},
    ]
    with Workspace.open(db) as ws, ws.transaction() as conn:
        if active:
            conn.execute("UPDATE runs SET active = 0")
        conn.execute(
            "INSERT INTO runs (id, created_at, finished_at, status, config, device, epochs_done, "
            "best_epoch, history, test_metrics, report, seconds, active) "
            "VALUES (?, '2026-01-05T10:00:00+00:00', '2026-01-05T10:12:00+00:00', 'done', ?, "
            "'cpu', 12, 9, ?, ?, ?, 720.0, ?)",
            (run_id, json.dumps({"model_name": "dynllm", "epochs": 20, "batch_size": 2048,
                                 "lr": 0.001, "seed": 0}),
             json.dumps([{"epoch": e, "loss": 0.7 - e * 0.02} for e in range(12)]),
             json.dumps(test), json.dumps(report), int(active)),
        )
        users = [u for (u,) in conn.execute(
            "SELECT user_id FROM interactions GROUP BY user_id ORDER BY count(*) DESC, user_id "
            "LIMIT ?", (n_users,))]
        for n, user in enumerate(users):
            bought = [i for (i,) in conn.execute(
                "SELECT item_id FROM interactions WHERE user_id = ? GROUP BY item_id "
                "ORDER BY count(*) DESC, item_id LIMIT 8", (user,))]
            new = [i for (i,) in conn.execute(
                "SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM interactions "
                "WHERE user_id = ?) ORDER BY id LIMIT 12 OFFSET ?", (user, 7 * n))]
            ranked = [x for pair in zip(bought, new, strict=False) for x in pair]
            ranked += [x for x in bought + new if x not in ranked]
            for rank, item in enumerate(ranked[:20], start=1):
                conn.execute("INSERT INTO recommendations (run_id, user_id, rank, item_id, score, "
                             "bought_before) VALUES (?, ?, ?, ?, ?, ?)",
                             (run_id, user, rank, item, round(3.0 - 0.1 * rank, 4),
                              int(item in bought)))
            times = [t for (t,) in conn.execute(
                "SELECT DISTINCT ts FROM interactions WHERE user_id = ? ORDER BY ts", (user,))]
            x = y = 0.0
            for j, t in enumerate(times):
                raw = [math.exp(math.sin(j / 7 + f)) for f in range(4)]
                weights = [w / sum(raw) for w in raw]
                conn.executemany("INSERT INTO facet_weights VALUES (?, ?, ?, ?, ?)",
                                 [(run_id, user, t, facet, round(w, 4))
                                  for facet, w in zip(FACETS, weights, strict=True)])
                x += math.cos(j / 5) * 0.3
                y += math.sin(j / 5) * 0.3
                conn.execute("INSERT INTO memory_trace VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (run_id, user, t, round(1 + j * 0.01, 4),
                              round(0.05 + 0.04 * math.sin(j / 3) ** 2, 4),
                              round(x, 4), round(y, 4)))


def add_profiles(db: Path, external_id: str = TOP_USER) -> None:
    """Three snapshots for one customer: two made, one failed."""
    with Workspace.open(db) as ws, ws.transaction() as conn:
        user = conn.execute("SELECT id FROM users WHERE external_id = ?",
                            (external_id,)).fetchone()[0]
        rows = [
            (1_317_427_200, "ok", "Irish gift-shop buyer", ["party goods", "kitchenware"],
             ["PARTY", "KITCHEN"], 120, None),
            (1_320_105_600, "failed", None, [], [], 900, "the answer was not valid JSON"),
            (1_322_697_600, "ok", "Irish wholesale gift buyer",
             ["christmas decorations", "party goods", "photo frames"],
             ["CHRISTMAS", "PARTY", "FRAMES"], 2400, None),
        ]
        for as_of, status, segment, interests, categories, n_events, error in rows:
            conn.execute(
                "INSERT INTO profiles (user_id, as_of, status, crowd_segment, interests, "
                "preferred_categories, favored_brands, categories_source, brands_source, "
                "n_events, model, prompt_version, input_hash, error, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, '[]', 'derived_from_titles', 'unknown', ?, "
                "'smollm2-135m', 'v1', ?, ?, '2026-01-05T09:45:00+00:00')",
                (user, as_of, status, segment, json.dumps(interests), json.dumps(categories),
                 n_events, f"h{as_of}", error),
            )


@pytest.fixture(scope="session")
def ui_workspace_file(tmp_path_factory, demo_workspace_file) -> Path:
    """The demo workspace with a run and profiles (never written by tests: they copy it)."""
    db = tmp_path_factory.mktemp("ui") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    _fix_import_time(db)
    add_run(db)
    add_profiles(db)
    return db


@pytest.fixture
def ui_workspace(tmp_path, ui_workspace_file) -> Path:
    db = tmp_path / "ws.db"
    shutil.copy(ui_workspace_file, db)
    return db


@pytest.fixture(scope="session")
def ablation_workspace_file(tmp_path_factory, online_retail_path) -> Path:
    """A workspace made by the real commands (a real slice, real LLM profiles of six customers,
    a run trained with `--ablation facet:interests`); shared with tests/cli, never written."""
    from tests.cli.ablation_workspace import ablation_workspace

    return ablation_workspace(tmp_path_factory, online_retail_path).db


@pytest.fixture
def plain_workspace(tmp_path, demo_workspace_file) -> Path:
    """The demo data only (no profiles, no run), with a fixed import time, named ws.db."""
    (tmp_path / "plain").mkdir()
    db = tmp_path / "plain" / "ws.db"
    shutil.copy(demo_workspace_file, db)
    _fix_import_time(db)
    return db


def make_app(db: Path, **config) -> WorkbenchApp:
    """The app on `db` with the default config (never the developer's own config file), and
    without animations (tests wait for data, not for tab underlines to slide)."""
    app = WorkbenchApp(str(db), config=UiConfig(**config))
    app.animation_level = "none"
    return app


async def settle(pilot) -> None:
    """Wait until every worker has finished and its results are on screen."""
    app = pilot.app
    for _ in range(5):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        if all(w.is_finished for w in app.workers):
            break


async def open_most_active_user(pilot):
    """From anywhere: Users (most events first), then the first customer's detail screen."""
    await pilot.press("2")
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)
    return pilot.app.screen
