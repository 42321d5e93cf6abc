"""Runs and the home screen's pipeline status: which runs exist, their metrics, the active one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.browse.common import BrowseError, parse_json
from storage.browse.users import ensure_user_stats
from storage.workspace import Workspace

# hit@10 equals recall@10 with one positive per test event, so it is left out here
HEADLINE_METRICS = ("recall@10", "ndcg@10", "mrr")
# Purchase lines a customer needs before a first profile snapshot: the same figure as
# models.data.snapshots.DEFAULT_FIRST_AFTER (storage may not import models; a test ties them).
FIRST_SNAPSHOT_LINES = 5


@dataclass(frozen=True)
class RunSummary:
    id: int
    status: str
    created_at: str
    finished_at: str | None
    config: dict[str, Any]
    device: str | None
    epochs_done: int | None
    best_epoch: int | None
    history: list[dict[str, Any]]
    test_metrics: dict[str, Any]
    report: list[dict[str, Any]]
    seconds: float | None
    error: str | None
    active: bool
    data_fingerprint: str | None = None  # what it was trained on: same fingerprint, same split

    @property
    def model(self) -> str:
        return str(self.config.get("model_name", "dynllm"))

    @property
    def profile_facets(self) -> list[str]:
        """The profile facets the run's model attends over (none for a run without profiles),
        as its config recorded them; a facet here with no stored weight was absent."""
        model = self.config.get("model")
        if not isinstance(model, dict) or not self.config.get("with_profiles") \
                or model.get("no_profiles"):
            return []
        return [str(f) for f in model.get("facets") or []]

    @property
    def best_validation(self) -> float | None:
        """Validation Recall@10 of the run's best epoch (the figure early stopping chose it
        by), from its stored history; None when the run has no such epoch recorded."""
        return best_validation_recall(self.history, self.best_epoch)

    @property
    def headline(self) -> dict[str, float]:
        """Recall@10, NDCG@10 and MRR on the test part, full-ranking protocol."""
        return headline_metrics(self.test_metrics)


def headline_metrics(test_metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of a run's test metrics, whether stored flat ({"recall@10": ...})
    or per protocol ({"full": {...}, "paper": {...}}); the full ranking wins."""
    metrics = test_metrics.get("full", test_metrics) if isinstance(test_metrics, dict) else {}
    if not isinstance(metrics, dict):
        return {}
    return {k: float(metrics[k]) for k in HEADLINE_METRICS
            if isinstance(metrics.get(k), int | float)}


def best_validation_recall(history: list[dict[str, Any]], best_epoch: int | None
                           ) -> float | None:
    """Validation Recall@10 of epoch `best_epoch` in a run's history ([{"epoch", "val": {...}},
    ...]); None when that epoch or its figure is missing."""
    if best_epoch is None:
        return None
    for record in history:
        if isinstance(record, dict) and record.get("epoch") == best_epoch:
            val = record.get("val")
            value = val.get("recall@10") if isinstance(val, dict) else None
            return float(value) if isinstance(value, int | float) else None
    return None


_RUN_COLUMNS = ("id, status, created_at, finished_at, config, device, epochs_done, best_epoch, "
                "history, test_metrics, report, seconds, error, active, data_fingerprint")


def _run(row: tuple) -> RunSummary:
    (rid, status, created, finished, config, device, epochs, best, history, test, report,
     seconds, error, active, fingerprint) = row
    report_rows = parse_json(report, [])
    if isinstance(report_rows, dict):  # {"rows": [...]} or {method: {...}}
        report_rows = report_rows.get("rows", [dict(method=k, **v) for k, v in
                                               report_rows.items() if isinstance(v, dict)])
    return RunSummary(
        id=rid, status=status, created_at=created, finished_at=finished,
        config=parse_json(config, {}), device=device, epochs_done=epochs, best_epoch=best,
        history=parse_json(history, []), test_metrics=parse_json(test, {}),
        report=[r for r in report_rows if isinstance(r, dict)], seconds=seconds, error=error,
        active=bool(active), data_fingerprint=fingerprint,
    )


def list_runs(ws: Workspace) -> list[RunSummary]:
    """Every run, newest first."""
    rows = ws.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC").fetchall()
    return [_run(r) for r in rows]


def get_run(ws: Workspace, run_id: int) -> RunSummary:
    """Run `run_id`, whatever its status."""
    row = ws.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise BrowseError(f"no run {run_id} in this workspace")
    return _run(row)


def active_run(ws: Workspace) -> RunSummary | None:
    """The run the app shows: the finished run marked active, else the latest finished run
    (the same choice as the CSV exports make)."""
    row = ws.conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'done' "
        "ORDER BY active DESC, id DESC LIMIT 1"
    ).fetchone()
    return _run(row) if row else None


def set_active_run(ws: Workspace, run_id: int) -> None:
    """Make `run_id` the active run (only finished runs have recommendations to show)."""
    row = ws.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise BrowseError(f"no run {run_id} in this workspace")
    if row[0] != "done":
        raise BrowseError(f"run {run_id} is {row[0]}, not finished: only a finished run can be "
                          "the active one")
    with ws.transaction() as conn:
        conn.execute("UPDATE runs SET active = (id = ?)", (run_id,))


@dataclass(frozen=True)
class PipelineStatus:
    users: int
    profiles_ok: int
    profiles_failed: int
    users_profiled: int  # users with at least one ok snapshot
    users_without_profile: int
    runs: list[RunSummary]
    active_run_id: int | None
    # of users_without_profile: those with fewer than FIRST_SNAPSHOT_LINES purchase lines, whom
    # the snapshot policy never profiles (by design, not work left to do)
    users_below_threshold: int = 0

    @property
    def users_pending(self) -> int:
        """Users still without a profile who could get one (enough purchase lines)."""
        return self.users_without_profile - self.users_below_threshold

    @property
    def runs_done(self) -> int:
        return sum(r.status == "done" for r in self.runs)


def pipeline_status(ws: Workspace) -> PipelineStatus:
    """Profiles made / failed / users still without one (and how many of those are below the
    first-snapshot threshold), and the runs with their metrics."""
    by_status = dict(ws.conn.execute("SELECT status, count(*) FROM profiles GROUP BY status"))
    users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
    profiled = ws.conn.execute(
        "SELECT count(DISTINCT user_id) FROM profiles WHERE status = 'ok'").fetchone()[0]
    # From the persisted per-user statistics, not a GROUP BY over every interaction: that
    # scan cost about a second on Home's first paint at 16x Online Retail (bench/scale.py).
    ensure_user_stats(ws)
    below = ws.conn.execute(
        "SELECT count(*) FROM user_stats WHERE events < ? AND user_id "
        "NOT IN (SELECT user_id FROM profiles WHERE status = 'ok')",
        (FIRST_SNAPSHOT_LINES,)).fetchone()[0]
    active = active_run(ws)
    return PipelineStatus(
        users=users,
        profiles_ok=by_status.get("ok", 0),
        profiles_failed=by_status.get("failed", 0),
        users_profiled=profiled,
        users_without_profile=users - profiled,
        runs=list_runs(ws),
        active_run_id=active.id if active else None,
        users_below_threshold=below,
    )
