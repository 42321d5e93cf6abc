"""Training: `dynllm-tui train` as a form, run as a child process (`dynllm_tui.jobs.child_process`:
torch never loads in the app, so its event loop never stalls on it) watched by a thread worker,
with a live progress bar, loss and validation plots, and a cancel key (SIGINT to the child: it
keeps the best checkpoint); the finished run then appears under Runs.

The screen is a Textual mode's screen, so it lives as long as the app: switching to another
section leaves it (and its worker) running, and coming back shows the progress made meanwhile.
One training per workspace, also across processes (`dynllm_tui.jobs.training_lock`): while another
process trains, the screen says so and Start is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from textual import on, work
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button

from dynllm_tui.jobs.activate import describe_activation
from dynllm_tui.jobs.training_lock import describe, training_in_progress
from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.common.workspace_changed import Change
from dynllm_tui.ui.keys import bindings
from dynllm_tui.ui.run_status import run_status
from dynllm_tui.ui.training.progress_relay import ProgressRelay, RelayUpdate
from dynllm_tui.ui.training.training_form import (
    TrainingForm,
    TrainParams,
    parse_params,
)
from dynllm_tui.ui.training.training_plots import TrainingPlots
from dynllm_tui.ui.training.training_progress import TrainingProgress
from models.vocabulary import ABLATIONS  # torch-free: the app must not load the network
from storage.browse import RunSummary, headline_metrics, list_runs

DRAIN_EVERY_S = 0.1  # UI updates from a running training: at most 10 a second


@dataclass
class TrainProgress:
    """A progress event of the training child: the attributes of models.training.loop.Progress
    (which the app does not import: that would import torch)."""

    stage: str
    epoch: int
    batch: int
    n_batches: int
    loss: float | None = None
    metrics: dict | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> TrainProgress:
        return cls(str(event.get("stage", "")), int(event.get("epoch") or 0),
                   int(event.get("batch") or 0), int(event.get("n_batches") or 0),
                   event.get("loss"), event.get("metrics"))


class TrainingScreen(WorkbenchScreen):
    SCOPE = "training"
    SECTION = "training"
    BINDINGS = bindings("training")
    # Not the first field: a focused input would swallow the section keys (1-4, q, ...).
    AUTO_FOCUS = "#start"
    CONCERNS = frozenset({"run", "activate", "training"})
    DEFAULT_CSS = """
    TrainingScreen #training-body { height: 1fr; }
    TrainingScreen #training-right { width: 1fr; height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.params: TrainParams | None = None
        self.running = False
        self.cancel_flag: Any = None  # dynllm_tui.jobs.control.CancelFlag of the running training
        self.relay: ProgressRelay | None = None
        self.epochs_done = 0
        self.holder: dict[str, Any] | None = None  # the training lock's holder, if any
        self.last_run: RunSummary | None = None
        self.interrupted: list[int] = []
        self._drain_timer: Timer | None = None
        # The active run whose settings were last put in the form: the form follows a new
        # active run, but a refresh never overwrites what the analyst typed or chose since.
        self.prefill_seen: int | None = None

    def compose_body(self) -> Iterable[Any]:
        with Horizontal(id="training-body"):
            yield TrainingForm(id="training-form")
            with Vertical(id="training-right"):
                yield TrainingProgress(id="training-progress")
                yield TrainingPlots(id="training-plots")

    def on_mount(self) -> None:
        self.load_ablations()
        self.refresh_data()

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def on_unmount(self) -> None:
        # The app is closing: stop the training at the next batch so the process can exit;
        # the job records the run as cancelled and keeps its best checkpoint.
        if self.cancel_flag is not None:
            self.cancel_flag.set()

    # --- what the screen shows when idle -------------------------------------------------

    def refresh_data(self) -> None:
        self.poll_lock()
        self.load_runs()

    @work(thread=True, exclusive=True, group="training-runs", exit_on_error=False)
    def load_runs(self) -> None:
        try:
            runs = self.fetch(list_runs)
        except Exception as exc:
            self.fail("Runs", exc)
            return
        self.deliver(self.show_runs, runs)

    def show_runs(self, runs: list[RunSummary]) -> None:
        self.last_run = runs[0] if runs else None
        self.prefill_from_active(runs)
        holder = self.holder
        self.interrupted = [r.id for r in runs
                            if run_status(r.status, r.id, r.created_at, holder) == "interrupted"]
        self.show_status()

    def prefill_from_active(self, runs: list[RunSummary]) -> None:
        """"Retrain like run #N": the form takes the active run's settings (the same choice
        of active run as `storage.browse.active_run`: marked active, else the latest done)."""
        done = [r for r in runs if r.status == "done"]
        active = next((r for r in done if r.active), done[0] if done else None)
        if active is None or self.running or active.id == self.prefill_seen:
            return
        self.prefill_seen = active.id
        self.query_one(TrainingForm).fill_from_run(active.id, active.config)

    @on(Button.Pressed, "#defaults")
    def defaults_pressed(self) -> None:
        self.action_validated_defaults()

    def action_validated_defaults(self) -> None:
        if not self.running:
            self.query_one(TrainingForm).fill_defaults()

    def load_ablations(self) -> None:
        self.set_ablations(ABLATIONS)

    def set_ablations(self, names: tuple[str, ...]) -> None:
        self.query_one(TrainingForm).set_ablations(names)

    def workspace_changed(self, change: Change) -> None:
        if change.kind == "training":  # the app saw the lock change: no need to look again
            self.set_holder(change.holder)
        else:
            self.refresh_data()

    def poll_lock(self) -> None:
        """Look at the workspace's training lock now (before a start, on a refresh): a
        non-blocking flock and a read of a tiny file, cheap enough for the UI thread. Changes
        between those are the app's `WorkspaceChanged("training")`."""
        self.set_holder(training_in_progress(self.workbench.db_path))

    def set_holder(self, holder: dict[str, Any] | None) -> None:
        changed = (holder or {}).get("started_at") != (self.holder or {}).get("started_at")
        self.holder = holder
        if changed:
            self.load_runs()  # a run started or ended elsewhere: its status changed
        self.show_status()

    def other_training(self) -> str | None:
        """Why Start is refused now, or None: a training held by another process, or by this
        app outside this screen (only the demo build trains elsewhere in the app)."""
        holder = self.holder
        if self.running or holder is None:
            return None
        from dynllm_tui.jobs.child_process import child_pids

        if holder.get("pid") == os.getpid() or holder.get("pid") in child_pids():
            return f"the demo build is training in this app ({describe(holder)})"
        return f"training in progress in another process ({describe(holder)})"

    def show_status(self) -> None:
        if not self.is_mounted:
            return
        key = self.workbench.key_display
        lines = []
        other = self.other_training()
        if self.running and self.cancel_flag is not None and self.cancel_flag():
            lines.append("[b]Cancelling[/b] at the next batch; the best checkpoint is kept…")
        elif self.running:
            lines.append(f"[b]Training[/b] · cancel with [b]{key('training.cancel')}[/b] · "
                         "other sections stay usable")
        elif other is not None:
            lines.append(f"[b $warning]{other}[/b $warning]: wait for it or stop it")
        else:
            lines.append(f"Set the parameters, then start with [b]{key('training.start')}[/b]")
        run = self.last_run
        if run is not None and not self.running:
            shown = run_status(run.status, run.id, run.created_at, self.holder)
            recall = run.headline.get("recall@10")
            extra = "" if recall is None else f", test Recall@10 {recall:.4f}"
            lines.append(f"Last run #{run.id}: {shown}{extra}")
        if self.interrupted and not self.running:
            first = self.interrupted[0]
            runs = ", ".join(f"#{i}" for i in self.interrupted[:3])
            lines.append(f"Interrupted: {runs} (resume: dynllm-tui train --resume {first})")
        self.query_one(TrainingProgress).set_status("\n".join(lines))

    # --- start, progress, cancel ---------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start_training":
            return not self.running
        if action == "cancel_training":
            return self.running
        return True

    @on(Button.Pressed, "#start")
    def start_pressed(self) -> None:
        self.action_start_training()

    @on(Button.Pressed, "#cancel")
    def cancel_pressed(self) -> None:
        self.action_cancel_training()

    def action_start_training(self) -> None:
        if self.running:
            return
        form = self.query_one(TrainingForm)
        params, errors = parse_params(form.values(), form.ablations)
        form.show_errors(errors)
        if params is None:
            self.notify("\n".join(errors.values()), title="Training: fix the form",
                        severity="error", timeout=8)
            return
        self.poll_lock()  # the lock's state now, not two seconds ago
        other = self.other_training()
        if other is not None:
            self.notify(f"Not started: {other}. Wait for it to finish or stop it.",
                        title="Training", severity="error", timeout=10)
            return
        from dynllm_tui.jobs.control import CancelFlag

        self.params = params
        self.running = True
        self.cancel_flag = CancelFlag()
        self.relay = ProgressRelay()
        self.epochs_done = 0
        form.set_running(True)
        self.query_one(TrainingProgress).reset(params.epochs)
        self.query_one(TrainingPlots).clear()
        self.show_status()
        self.refresh_bindings()
        self._drain_timer = self.set_interval(DRAIN_EVERY_S, self.drain)
        self.workbench.background_job_started()
        self.run_training(params, self.relay, self.cancel_flag)

    def action_cancel_training(self) -> None:
        if not self.running or self.cancel_flag is None:
            return
        self.cancel_flag.set()
        self.show_status()
        self.notify("Cancelling: the run keeps its best checkpoint", title="Training")

    @work(thread=True, exclusive=True, group="training", exit_on_error=False)
    def run_training(self, params: TrainParams, relay: ProgressRelay, cancel: Any) -> None:
        from dynllm_tui.jobs import child_process as child_job

        try:
            summary = child_job.run_cli_job(
                params.cli_args(), self.workbench.db_path,
                lambda event: relay(TrainProgress.from_event(event)), cancel)
        except Exception as exc:
            if cancel() and isinstance(exc, child_job.ChildJobError):
                # Cancelled while the child was still starting (before its Ctrl-C handler):
                # nothing was trained, nothing to report as an error.
                self.deliver(self.notify, "Training stopped before it started",
                             title="Training", severity="warning")
            else:
                self.fail("Training", exc)
            self.deliver(self.training_done, None)
            return
        self.deliver(self.training_done, SimpleNamespace(**summary))

    def drain(self) -> None:
        if self.relay is None or self.params is None:
            return
        self.apply(self.relay.drain())

    def apply(self, update: RelayUpdate, *, force: bool = False) -> None:
        if not update and not force:
            return
        if update.epochs:
            self.epochs_done = max(self.epochs_done, *(e.epoch for e in update.epochs))
        if update.latest is not None and self.params is not None:
            self.query_one(TrainingProgress).show(update.latest, self.params.epochs,
                                                  self.epochs_done)
        self.query_one(TrainingPlots).add(update.losses, update.epochs, force=force)

    def training_done(self, summary: Any) -> None:
        if self._drain_timer is not None:
            self._drain_timer.stop()
            self._drain_timer = None
        if self.relay is not None:
            self.apply(self.relay.drain(), force=True)
        if self.running:
            self.workbench.background_job_finished()
        self.running = False
        self.cancel_flag = None
        self.relay = None
        self.query_one(TrainingForm).set_running(False)
        self.refresh_bindings()
        params = self.params
        epochs = params.epochs if params else 0
        if summary is None:
            self.query_one(TrainingProgress).finish(self.epochs_done, epochs, "failed")
        else:
            self.query_one(TrainingProgress).finish(summary.epochs, epochs, summary.status)
            self.notify(self.outcome(summary), title="Training", timeout=10,
                        severity="information" if summary.status == "done" else "warning")
        # Once, for every screen (this one included): the run is stored, or was cancelled.
        self.workbench.workspace_changed(
            "run", run_id=None if summary is None else getattr(summary, "run_id", None))

    @staticmethod
    def outcome(summary: Any) -> str:
        """The notification for a finished job: run id and its test Recall@10."""
        recall = headline_metrics(summary.test or {}).get("recall@10")
        if summary.status == "done":
            score = "—" if recall is None else f"{recall:.4f}"
            done = (f"Run #{summary.run_id} done after {summary.epochs} epochs: test "
                    f"Recall@10 {score}")
            reason = getattr(summary, "activation_reason", "")
            if not reason:  # a child from before the activation rule: it made the run active
                return f"{done}; it is now the active run (see Runs)"
            return f"{done}.\n" + describe_activation(
                summary.run_id, bool(summary.activated), reason, summary.compared_with,
                summary.validation,
                switch=f"to switch, select run #{summary.run_id} in Runs: Make active")
        if summary.best_epoch is None:
            return (f"Run #{summary.run_id} stopped before its first epoch finished: "
                    "nothing to keep")
        return (f"Run #{summary.run_id} cancelled after {summary.epochs} epochs; the best "
                f"checkpoint (epoch {summary.best_epoch}) is kept: resume with "
                f"dynllm-tui train --resume {summary.run_id}")
