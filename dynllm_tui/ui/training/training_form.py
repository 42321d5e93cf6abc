"""Training: the parameters of `dynllm-tui train` as a form, and their validation.

Fields are plain text inputs checked by `parse_params` (not Textual's typed inputs, which
silently swallow keys) against the rules of `jobs.train_settings`, the same ones the CLI and
`train_job` apply: a bad value gets a message naming the field and what it accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from dynllm_tui.jobs.train_settings import DEFAULTS, RULES

DEVICES = ("auto", "cpu", "cuda")
NO_ABLATION = "none"
# label, input id, default (the CLI's defaults, so the form and `dynllm-tui train` agree)
TEXT_FIELDS = tuple((rule.label, field, str(DEFAULTS[field])) for field, rule in RULES.items())
LABELS = {field: label for label, field, _ in TEXT_FIELDS} | {
    "device": "Device", "ablation": "Ablation", "no_profiles": "No profiles",
    "repeat_term": "Repeat term"}


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    lr: float
    patience: int
    seed: int
    device: str = "auto"
    no_profiles: bool = False
    ablation: str | None = None
    repeat_term: bool = False

    def job_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `train_job` (progress and cancel aside)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "patience": self.patience, "seed": self.seed, "device": self.device,
                "no_profiles": self.no_profiles, "ablation": self.ablation,
                "repeat_term": self.repeat_term}

    def cli_args(self) -> list[str]:
        """The same parameters as arguments of `dynllm-tui train`."""
        args = ["train", "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
                "--lr", repr(float(self.lr)), "--patience", str(self.patience),
                "--seed", str(self.seed), "--device", self.device]
        if self.no_profiles:
            args.append("--no-profiles")
        if self.ablation:
            args += ["--ablation", self.ablation]
        if self.repeat_term:
            args.append("--repeat-term")
        return args


def parse_params(raw: Mapping[str, Any],
                 ablations: Sequence[str] = ()) -> tuple[TrainParams | None, dict[str, str]]:
    """The form's values as `TrainParams`, or None and one message per bad field
    (field id -> "Epochs: a whole number from 1 to 10,000 (got 'ten')")."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field, rule in RULES.items():  # the same rules as `dynllm-tui train` and train_job
        text = str(raw.get(field, "")).strip()
        if not text:
            errors[field] = f"{LABELS[field]}: required"
            continue
        try:
            values[field] = rule.parse(text)
        except ValueError as exc:
            errors[field] = f"{LABELS[field]}: {exc} (got {text!r})"
    device = raw.get("device", "auto")
    if device not in DEVICES:
        errors["device"] = f"Device: one of {', '.join(DEVICES)} (got {device!r})"
    ablation = raw.get("ablation") or NO_ABLATION
    if ablation != NO_ABLATION and ablations and ablation not in ablations:
        errors["ablation"] = f"Ablation: unknown {ablation!r}"
    if errors:
        return None, errors
    return TrainParams(**values, device=str(device), no_profiles=bool(raw.get("no_profiles")),
                       repeat_term=bool(raw.get("repeat_term")),
                       ablation=None if ablation == NO_ABLATION else str(ablation)), {}


class TrainingForm(Vertical):
    """Compact one-line fields so the whole form fits beside the plots at 80x24."""

    DEFAULT_CSS = """
    TrainingForm { width: 36; height: 1fr; padding: 0 1; border: round $primary-darken-2;
                   border-title-color: $text-accent; }
    TrainingForm Grid { grid-size: 2; grid-columns: 14 1fr; grid-rows: 1; grid-gutter: 0 0;
                        height: auto; }
    TrainingForm Label { height: 1; color: $text-muted; }
    TrainingForm Input.-invalid, TrainingForm Input.bad { color: $error; text-style: bold; }
    TrainingForm #form-buttons { height: 1; margin-top: 1; }
    TrainingForm #form-buttons Button { margin-right: 1; }
    TrainingForm #form-errors { color: $error; height: auto; margin-top: 1; }
    """

    def compose(self) -> Iterable[Any]:
        with Grid():
            for label, field, default in TEXT_FIELDS:
                yield Label(label)
                yield Input(default, id=field, compact=True, select_on_focus=True)
            yield Label("Device")
            yield Select([(d, d) for d in DEVICES], value="auto", allow_blank=False,
                         id="device", compact=True)
            yield Label("Ablation")
            yield Select([(NO_ABLATION, NO_ABLATION)], value=NO_ABLATION, allow_blank=False,
                         id="ablation", compact=True)
            yield Label("")
            yield Checkbox("No profiles", id="no_profiles", compact=True)
            yield Label("")
            yield Checkbox("Repeat term", id="repeat_term", compact=True,
                           tooltip="add a learned repeat-purchase term to the score")
        with Horizontal(id="form-buttons"):
            yield Button("Start", id="start", variant="primary", compact=True)
            yield Button("Cancel", id="cancel", variant="error", compact=True, disabled=True)
        yield Static("", id="form-errors")

    def on_mount(self) -> None:
        self.border_title = "Parameters"
        self.ablations: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {field: self.query_one(f"#{field}", Input).value
                               for _, field, _ in TEXT_FIELDS}
        out["device"] = self.query_one("#device", Select).value
        out["ablation"] = self.query_one("#ablation", Select).value
        out["no_profiles"] = self.query_one("#no_profiles", Checkbox).value
        out["repeat_term"] = self.query_one("#repeat_term", Checkbox).value
        return out

    def set_ablations(self, names: Sequence[str]) -> None:
        """The ablations the model offers (`ABLATIONS`)."""
        self.ablations = tuple(names)
        select = self.query_one("#ablation", Select)
        current = select.value
        select.set_options([(NO_ABLATION, NO_ABLATION), *((n, n) for n in names)])
        select.value = current if current in names else NO_ABLATION

    def show_errors(self, errors: Mapping[str, str]) -> None:
        for _, field, _ in TEXT_FIELDS:
            self.query_one(f"#{field}", Input).set_class(field in errors, "bad")
        self.query_one("#form-errors", Static).update("\n".join(errors.values()))
        first = next(iter(errors), None)
        if first is not None and first in {f for _, f, _ in TEXT_FIELDS}:
            self.query_one(f"#{first}", Input).focus()

    def set_running(self, running: bool) -> None:
        """While a training runs its parameters are fixed: the fields and Start are disabled."""
        for widget in self.query("Input, Select, Checkbox"):
            widget.disabled = running
        self.query_one("#start", Button).disabled = running
        self.query_one("#cancel", Button).disabled = not running
