"""Which finished run is the active one (the run whose recommendations the app and the exports
show): the rule a new run goes through at the end of `train_job`, its one-line explanation,
and `dynllm-tui activate RUN` to switch by hand.

The rule (`--activate if-better`, the default): a new run becomes active when there is no
active run, when the active run was trained on other data (another data fingerprint, hence
another split: the validation figures cannot be compared), or when its best epoch's validation
Recall@10 beats the active run's; a tie keeps the active run. `always` and `never` override it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.browse.runs import RunSummary, active_run, get_run, set_active_run
from storage.errors import DynllmError
from storage.workspace import Workspace

ACTIVATE_MODES = ("if-better", "always", "never")


@dataclass(frozen=True)
class Activation:
    """What the rule decided for run `run_id`. `validation` is (this run's, the compared run's)
    best validation Recall@10; `reason` is one of: no-active-run, other-data, better,
    not-better, no-figure, always, never."""

    run_id: int
    activate: bool
    reason: str
    compared_with: int | None = None
    validation: tuple[float | None, float | None] | None = None


def check_activate_mode(mode: str) -> str:
    if mode not in ACTIVATE_MODES:
        raise DynllmError(f"activate: one of {', '.join(ACTIVATE_MODES)} (got {mode!r})")
    return mode


def decide_activation(ws: Workspace, run_id: int, mode: str) -> Activation:
    """The rule for run `run_id` against the run the app shows now (`active_run`: the one
    marked active, else the latest finished one). Called before the new run is marked done,
    so it is never its own rival."""
    check_activate_mode(mode)
    new = get_run(ws, run_id)
    rival: RunSummary | None = active_run(ws)
    if rival is None or rival.id == run_id:
        return Activation(run_id, mode != "never", "never" if mode == "never"
                          else "no-active-run", validation=(new.best_validation, None))
    figures = (new.best_validation, rival.best_validation)
    if mode in ("always", "never"):
        return Activation(run_id, mode == "always", mode, rival.id, figures)
    if new.data_fingerprint != rival.data_fingerprint:
        return Activation(run_id, True, "other-data", rival.id, figures)
    if figures[1] is None:  # a run stored without its epochs' metrics: nothing to beat
        return Activation(run_id, True, "no-figure", rival.id, figures)
    if figures[0] is not None and figures[0] > figures[1]:
        return Activation(run_id, True, "better", rival.id, figures)
    return Activation(run_id, False, "not-better", rival.id, figures)


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _difference(new: float | None, old: float | None) -> str:
    """'by 0.0089 (-11.1%)': the gap between two validation figures, absolute and relative."""
    if new is None or old is None:
        return ""
    gap = new - old
    relative = f" ({gap / old:+.1%})" if old > 0 else ""
    return f" by {abs(gap):.4f}{relative}"


def describe_activation(run_id: int, activated: bool, reason: str, compared_with: int | None,
                        validation: tuple[float | None, float | None] | list | None, *,
                        switch: str = "") -> str:
    """One line saying whether run `run_id` became active and, when it did not, which run is
    better on validation and by how much. `switch` names the way to switch by hand (the CLI
    and the app word it differently); by default `dynllm-tui activate RUN` or Runs."""
    new, old = (list(validation) + [None, None])[:2] if validation else (None, None)
    switch = switch or f"`dynllm-tui activate {run_id}` or Runs to switch"
    this = f"run {run_id} (val R@10 {_figure(new)})"
    other = f"run {compared_with} ({_figure(old)})"
    if reason == "no-active-run":
        return f"{this} is now the active run (there was none)"
    if reason == "never":
        if compared_with is None:
            return f"{this} is not marked active (--activate never); it is the only finished run"
        return f"{this} is not made active (--activate never): run {compared_with} " \
               f"({_figure(old)}) stays active; {switch}"
    if reason == "always":
        return f"{this} is now the active run (--activate always; it replaced {other})"
    if reason == "other-data":
        return (f"{this} is now the active run: the previous active {other} was trained on "
                "other data, so their validation figures are not comparable")
    if reason == "no-figure":
        return (f"{this} is now the active run: the previous active run {compared_with} has "
                "no validation figure stored to compare with")
    if reason == "better":
        return f"{this} beats the active {other}{_difference(new, old)}: run {run_id} is now " \
               "the active run"
    relation = "ties with" if new is not None and new == old else "is below"
    return (f"{this} {relation} the active {other}{_difference(new, old)}: run "
            f"{compared_with} stays active; {switch}")


def activate_job(db_path: str | Path | None, run_id: int) -> RunSummary:
    """`dynllm-tui activate RUN`: make finished run `run_id` the active one; an unknown or
    unfinished run is refused with one line (storage's `set_active_run`)."""
    with Workspace.open(db_path, create=False) as ws:
        set_active_run(ws, run_id)
        return get_run(ws, run_id)
