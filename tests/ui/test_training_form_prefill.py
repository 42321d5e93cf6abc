"""The Training form starts from the active run's settings ("retrain like run #N", a run made
by the real `train_job` with non-default settings), "Defaults" puts back the validated
defaults and a later refresh does not overwrite them; the end-of-training notification says
whether the new run became active and, if not, which is better and by how much."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from textual.widgets import Button, Static

from dynllm_tui.jobs.train_settings import DEFAULTS
from dynllm_tui.jobs.training import train_job
from dynllm_tui.ui.training.training_form import (
    DEFAULT_PARAMS,
    TrainingForm,
    TrainParams,
    params_from_run,
    parse_params,
)
from dynllm_tui.ui.training.training_screen import TrainingScreen
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, write_head
from tests.ui.conftest import make_app, settle

RUN_SETTINGS = TrainParams(epochs=1, batch_size=256, lr=0.005, patience=2, seed=7,
                           ablation="no_distill", repeat_term=True)


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory) -> Path:
    """The first 6,000 lines of the demo slice, one real run with `RUN_SETTINGS`."""
    workdir = tmp_path_factory.mktemp("prefill")
    csv, db = workdir / "slice.csv", workdir / "ws.db"
    write_head(DEMO_SLICE, csv, 6_000)
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", csv))
    kwargs = RUN_SETTINGS.job_kwargs()
    kwargs.pop("activate")
    summary = train_job(db, **{**kwargs, "device": "cpu"})
    assert summary.status == "done" and summary.activated
    return db


def test_params_from_a_config_without_settings_is_none():
    assert params_from_run({}) is None and params_from_run({"train": {}, "model": None}) is None
    # Out-of-range stored values fall back to the defaults, one by one.
    params = params_from_run({"train": {"epochs": 0, "batch_size": 64, "lr": "x"},
                              "model": {"repeat_term": True, "text_term": True}})
    assert params == TrainParams(epochs=DEFAULTS["epochs"], batch_size=64, lr=DEFAULTS["lr"],
                                 patience=DEFAULTS["patience"], seed=DEFAULTS["seed"],
                                 repeat_term=True, text_term=True)


async def test_form_prefilled_from_the_active_run_and_defaults_put_back(tmp_path, trained_file):
    db = tmp_path / "ws.db"
    shutil.copy(trained_file, db)
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        form = screen.query_one(TrainingForm)
        params, errors = parse_params(form.values(), form.ablations)
        # The slice has no profiles, so the run trained without them: "like run #1" says so.
        assert errors == {} and params == replace(RUN_SETTINGS, no_profiles=True)
        assert "Retrain like run #1" in str(form.query_one("#form-origin", Static).render())
        defaults = form.query_one("#defaults", Button)
        assert defaults.region.height > 0  # on screen at 80x24, beside Start and Cancel
        defaults.press()
        await pilot.pause()
        params, errors = parse_params(form.values(), form.ablations)
        assert errors == {} and params == DEFAULT_PARAMS
        assert "Validated defaults" in str(form.query_one("#form-origin", Static).render())
        # Away and back: the refresh keeps what the analyst chose.
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        assert parse_params(form.values(), form.ablations)[0] == DEFAULT_PARAMS
        # The form passes --activate to the child when it is not the default.
        form.query_one("#activate").value = "never"
        params = parse_params(form.values(), form.ablations)[0]
        assert params.cli_args()[-2:] == ["--activate", "never"]


def test_notification_says_which_run_is_better_and_by_how_much():
    base = dict(run_id=3, status="done", epochs=1, best_epoch=1,
                test={"full": {"recall@10": 0.05}})
    kept = SimpleNamespace(**base, activated=False, compared_with=1,
                           validation=[0.0712, 0.0801], activation_reason="not-better")
    text = TrainingScreen.outcome(kept)
    assert text.startswith("Run #3 done after 1 epochs: test Recall@10 0.0500.")
    assert ("run 3 (val R@10 0.0712) is below the active run 1 (0.0801) by 0.0089 (-11.1%): "
            "run 1 stays active; to switch, select run #3 in Runs: Make active") in text
    better = SimpleNamespace(**base, activated=True, compared_with=1,
                             validation=[0.0901, 0.0801], activation_reason="better")
    assert ("run 3 (val R@10 0.0901) beats the active run 1 (0.0801) by 0.0100 (+12.5%): "
            "run 3 is now the active run") in TrainingScreen.outcome(better)
