"""The Training screen on the real demo workspace with the real `train_job` (one cheap epoch,
no profiles): start from the form while browsing elsewhere, cancel keeping the best checkpoint,
bad values refused, errors as notifications; and the demo build from Home."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from textual.widgets import Checkbox, DataTable, Input

from dynllm_tui.app import WorkbenchApp
from dynllm_tui.jobs import child_process as child_job
from dynllm_tui.jobs import demo as jobs
from dynllm_tui.jobs.training_lock import training_in_progress
from dynllm_tui.ui.config import UiConfig
from dynllm_tui.ui.home.home_screen import HomeScreen
from dynllm_tui.ui.runs.runs_screen import RunsScreen
from dynllm_tui.ui.training.progress_relay import ProgressRelay
from dynllm_tui.ui.training.training_form import (
    TrainingForm,
    TrainParams,
    parse_params,
)
from dynllm_tui.ui.training.training_plots import TrainingPlots
from dynllm_tui.ui.training.training_screen import TrainingScreen
from dynllm_tui.ui.users.users_screen import UsersScreen
from models.training.loop import Progress
from models.vocabulary import ABLATIONS
from storage.errors import DynllmError
from storage.workspace import Workspace
from tests.conftest import REPO
from tests.ui.conftest import make_app, settle
from tests.ui.test_app import text

SIZE = (80, 24)


async def wait_for(pilot, condition, timeout: float = 90.0, what: str = "") -> None:
    """Let the app run until `condition()` holds (without waiting for every worker, as
    `settle` does: a training worker would make it wait for the whole training)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


async def open_training(pilot, **fields) -> TrainingScreen:
    await pilot.press("4")
    await settle(pilot)  # includes the ablation list (models imported in a worker)
    screen = pilot.app.screen
    assert isinstance(screen, TrainingScreen)
    for name, value in fields.items():
        widget = screen.query_one(f"#{name}")
        if isinstance(widget, Checkbox | Input):
            widget.value = value
    await pilot.pause()
    return screen


def messages(app, severity: str | None = None) -> list[str]:
    return [n.message for n in app._notifications if severity in (None, n.severity)]


def runs(db: Path) -> list[tuple]:
    with Workspace.open(db, create=False) as ws:
        return ws.conn.execute(
            "SELECT id, status, epochs_done, best_epoch, checkpoint_path FROM runs ORDER BY id"
        ).fetchall()


# --- headless parts -------------------------------------------------------------------


def test_form_validation_names_each_bad_field():
    raw = {"epochs": "ten", "batch_size": "0", "lr": "-1", "patience": "", "seed": "3",
           "device": "auto", "ablation": "none", "no_profiles": True}
    params, errors = parse_params(raw)
    assert params is None and set(errors) == {"epochs", "batch_size", "lr", "patience"}
    assert errors["epochs"] == "Epochs: a whole number from 1 to 10,000 (got 'ten')"
    assert "Learning rate" in errors["lr"] and "Patience: required" == errors["patience"]
    raw.update(epochs="3", batch_size="512", lr="1e-3", patience="2", ablation="no_distill")
    params, errors = parse_params(raw, ("no_distill",))
    assert errors == {} and params == TrainParams(3, 512, 0.001, 2, 3, "auto", True,
                                                  "no_distill")
    assert parse_params({**raw, "ablation": "nope"}, ("no_distill",))[1] == {
        "ablation": "Ablation: unknown 'nope'"}


def test_the_form_offers_the_models_ablations_and_passes_them_to_the_cli():
    from models.network.dynllm import DynLLMConfig  # torch: fine in a test, not the app

    for name in ABLATIONS:  # every name the form offers is one the model accepts
        assert DynLLMConfig().ablation(name) != DynLLMConfig()
    params = TrainParams(3, 512, 0.001, 2, 7, "cpu", True, "facet:brands")
    assert params.cli_args() == ["train", "--epochs", "3", "--batch-size", "512", "--lr",
                                 "0.001", "--patience", "2", "--seed", "7", "--device", "cpu",
                                 "--no-profiles", "--ablation", "facet:brands"]
    assert TrainParams(1, 64, 0.01, 1, 0, repeat_term=True).cli_args()[-1] == "--repeat-term"
    both = TrainParams(1, 64, 0.01, 1, 0, repeat_term=True, text_term=True)
    assert both.cli_args()[-2:] == ["--repeat-term", "--text-term"]
    assert both.job_kwargs()["text_term"] is True


def test_the_screens_that_train_never_import_torch():
    """Training and the demo build run in child processes: their screens, the form and the
    child-job runner import no torch, llama.cpp or transformers into the app."""
    code = ("import sys, dynllm_tui.app, dynllm_tui.jobs.child_process, "
            "dynllm_tui.ui.training.training_screen, dynllm_tui.ui.home.home_screen;"
            "heavy = {'torch', 'transformers', 'llama_cpp'} & set(sys.modules);"
            "ours = {m for m in sys.modules if m.startswith('models.')} - {'models.vocabulary'};"
            "print(sorted(heavy | ours))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_relay_keeps_every_loss_and_epoch_between_drains():
    relay = ProgressRelay()
    for batch in range(1, 6):
        relay(Progress("train", 1, batch, 5, loss=1.0 / batch))
    relay(Progress("val", 1, 1, 2))
    relay(Progress("epoch", 1, 1, 3, loss=0.5, metrics={"recall@10": 0.1, "ndcg@10": 0.05}))
    update = relay.drain()
    assert len(update.losses) == 5 and update.latest.stage == "epoch"
    assert update.epochs[0].metrics == {"recall@10": 0.1, "ndcg@10": 0.05}
    assert not relay.drain()


# --- the screen, with the real training job ---------------------------------------------


async def test_training_from_the_form_while_browsing_users(demo_workspace):
    app = make_app(demo_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot, epochs="1", no_profiles=True)
        assert "no_distill" in screen.query_one(TrainingForm).ablations
        await pilot.press("ctrl+s")
        assert screen.running and not screen.check_action("start_training", ())
        await wait_for(pilot, lambda: screen.query_one(TrainingPlots).losses, 60,
                       "the first batch losses")
        # The rest of the app stays usable while the training runs (in a child process: the
        # app never imports torch). Whether the single epoch is still running once the table
        # has loaded depends on the machine, so that is not asserted.
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, UsersScreen)
                       and app.screen.total == 200, 30, "the users table")
        await wait_for(pilot, lambda: not screen.running, 120, "the end of the training")
        done = [m for m in messages(app) if "Run #1 done" in m]
        assert done and "Recall@10 0." in done[0], messages(app)
        assert not messages(app, "error")
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one("#runs", DataTable)
        assert table.row_count == 1 and str(table.get_row_at(0)[1]) == "done"
        await pilot.press("4")
        await settle(pilot)
        plots = screen.query_one(TrainingPlots)
        assert len(plots.epochs) == 1 and "recall@10" in plots.epochs[0].metrics
        assert "Last run #1: done" in text(screen.query_one("#train-status"))
    assert runs(demo_workspace)[0][:3] == (1, "done", 1)
    assert training_in_progress(demo_workspace) is None


async def test_cancel_soon_after_start(demo_workspace):
    """Cancelled at its first batches: the job stops early (before an epoch ends there is no
    checkpoint to keep), the run is recorded as cancelled, the app says so and carries on, and
    the training lock is free again."""
    app = make_app(demo_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot, epochs="5", no_profiles=True)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.query_one(TrainingPlots).losses, 60,
                       "the first batch")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: not screen.running, 60, "the cancelled training")
        # (On a fast machine an epoch may end before the cancel lands: then it is kept.)
        assert any(m.startswith(("Run #1 stopped before its first epoch", "Run #1 cancelled"))
                   for m in messages(app)), messages(app)
        assert not messages(app, "error") and app.is_running
        assert screen.check_action("start_training", ())
    run_id, status, epochs_done, best, _ = runs(demo_workspace)[0]
    assert epochs_done < 5
    assert training_in_progress(demo_workspace) is None
    assert status == "cancelled"


async def test_bad_values_start_nothing(demo_workspace):
    app = make_app(demo_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot, epochs="ten", lr="-0.1")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.running
        shown = text(screen.query_one("#form-errors"))
        assert "Epochs: a whole number" in shown and "Learning rate: a positive" in shown
        assert any("Epochs" in m for m in messages(app, "error"))
        assert screen.query_one("#epochs").has_class("bad")
        assert not screen.query_one("#batch_size").has_class("bad")
    assert runs(demo_workspace) == []


async def test_a_failing_job_is_a_notification_and_frees_the_lock(tmp_path):
    db = tmp_path / "empty.db"
    Workspace.open(db).close()
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot, epochs="1")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not screen.running, 60, "the failed job")
        assert any("no interactions" in m for m in messages(app, "error"))
        assert app.is_running and screen.check_action("start_training", ())
    assert training_in_progress(db) is None


# --- the demo build from Home -----------------------------------------------------------


async def test_demo_builds_in_the_background_and_home_follows_its_phases(tmp_path,
                                                                          monkeypatch):
    """A demo build in phases (import, then a slow 'profiles' phase): Home shows the phase,
    reloads its summary as soon as the import's data has landed, and the build stops on c."""
    release = threading.Event()

    def phased_demo(args, db, on_event, cancel):
        # Stands in for the `dynllm-tui demo --no-open` child: its progress events, its cancel.
        assert args == ["demo", "--no-open", "--profile-users", "5"]  # the app's demo_options
        jobs.import_job(db, jobs.demo_data_path(), preset="online-retail",
                        progress=lambda d, t, _p: on_event(
                            {"event": "progress", "done": d, "total": t, "phase": "import"}))
        for step in range(200):
            on_event({"event": "progress", "done": step, "total": 200, "phase": "profiles"})
            if cancel() or release.wait(0.05):
                break
        if cancel():
            raise DynllmError("demo build process was interrupted before it finished")
        return {"run_id": None, "cancelled": False, "seconds": {}}

    monkeypatch.setattr(child_job, "run_cli_job", phased_demo)
    # build_demo=True is what `dynllm-tui demo` opens: the build starts as Home first shows.
    app = WorkbenchApp(str(tmp_path / "demo.db"), config=UiConfig(), build_demo=True,
                       demo_options={"profile_limit": 5})
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        home = app.screen
        assert isinstance(home, HomeScreen)
        await wait_for(pilot, lambda: "200 users" in text(home.query_one("#summary")), 30,
                       "the summary after the import phase")
        assert home.demo_running and "profiles" in text(home.query_one("#demo-label"))
        await pilot.press("2")  # usable meanwhile
        await wait_for(pilot, lambda: getattr(app.screen, "total", 0) == 200, 30, "users")
        await pilot.press("1", "c")
        await wait_for(pilot, lambda: not home.demo_running, 30, "the stopped build")
        assert any("Demo build stopped" in m for m in messages(app, "warning"))
        assert not messages(app, "error")


async def test_a_background_job_freezes_the_garbage_collector_until_it_ends(plain_workspace):
    """While a child job streams progress, the app's long-lived objects are frozen out of the
    collector (a full collection would stall the UI ~100 ms); they are released afterwards."""
    import gc

    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE):
        before = gc.get_freeze_count()
        app.background_job_started()
        app.background_job_started()  # training and the demo build at once
        frozen = gc.get_freeze_count()
        app.background_job_finished()
        still = gc.get_freeze_count()
        app.background_job_finished()
        # Frozen objects can still be freed by reference counting while the app runs, so the
        # count may shrink a little between readings; what matters is that one finished job of
        # two does not release the freeze, and the last one does.
        assert frozen > before
        assert still > frozen // 2
        assert gc.get_freeze_count() == 0
