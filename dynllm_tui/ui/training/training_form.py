"""Training: the parameters of `dynllm-tui train` as a form, and their validation.

Fields are plain text inputs checked by `parse_params` (not Textual's typed inputs, which
silently swallow keys) against the rules of `jobs.train_settings`, the same ones the CLI and
`train_job` apply: a bad value gets a message naming the field and what it accepts.

The form starts from the active run's settings ("retrain like run #N", `params_from_run`), so a
retrain is comparable with the run it may replace; "Validated defaults" puts back the defaults
of `dynllm-tui train`. "Activate" is `train --activate` (jobs.activate's rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from dynllm_tui.jobs.train_settings import DEFAULTS, RULES

DEVICES = ("auto", "cpu", "cuda")
ACTIVATE_MODES = ("if-better", "always", "never")  # jobs.activate.ACTIVATE_MODES, first default
NO_ABLATION = "none"
# label, input id, default (the CLI's defaults, so the form and `dynllm-tui train` agree)
TEXT_FIELDS = tuple((rule.label, field, str(DEFAULTS[field])) for field, rule in RULES.items())
LABELS = {field: label for label, field, _ in TEXT_FIELDS} | {
    "device": "Device", "ablation": "Ablation", "no_profiles": "No profiles",
    "repeat_term": "Repeat term", "text_term": "Text term", "activate": "Activate"}


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
    text_term: bool = False
    activate: str = "if-better"

    def job_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `train_job` (progress and cancel aside)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "patience": self.patience, "seed": self.seed, "device": self.device,
                "no_profiles": self.no_profiles, "ablation": self.ablation,
                "repeat_term": self.repeat_term, "text_term": self.text_term,
                "activate": self.activate}

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
        if self.text_term:
            args.append("--text-term")
        if self.activate != ACTIVATE_MODES[0]:  # if-better is the command's default too
            args += ["--activate", self.activate]
        return args


DEFAULT_PARAMS = TrainParams(**DEFAULTS)  # the validated defaults, as `dynllm-tui train` has them


def params_from_run(config: Mapping[str, Any]) -> TrainParams | None:
    """The settings a run was trained with (its stored config: "train" and "model"), as the
    form's parameters, or None when the config lacks them (a run from an older version).
    A setting out of today's ranges falls back to its default; the device stays "auto" (the
    run's machine may not be this one); the ablation is read back from the model name."""
    train = config.get("train")
    model = config.get("model")
    if not isinstance(train, Mapping) or not isinstance(model, Mapping):
        return None
    values: dict[str, Any] = {}
    for field, rule in RULES.items():
        value = train.get(field)
        values[field] = value if rule.accepts(value) else DEFAULTS[field]
    ablation = None
    name = str(config.get("model_name") or "")
    if name.endswith(")") and " (" in name:  # "dynllm + repeat (no_distill)"
        ablation = name[name.rindex(" (") + 2:-1] or None
    return TrainParams(**values, no_profiles=bool(model.get("no_profiles"))
                       and ablation != "no_profiles",
                       ablation=ablation, repeat_term=bool(model.get("repeat_term")),
                       text_term=bool(model.get("text_term")))


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
    activate = raw.get("activate") or ACTIVATE_MODES[0]
    if activate not in ACTIVATE_MODES:
        errors["activate"] = f"Activate: one of {', '.join(ACTIVATE_MODES)} (got {activate!r})"
    if errors:
        return None, errors
    return TrainParams(**values, device=str(device), no_profiles=bool(raw.get("no_profiles")),
                       repeat_term=bool(raw.get("repeat_term")),
                       text_term=bool(raw.get("text_term")), activate=str(activate),
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
    TrainingForm #form-origin { height: 1; color: $text-muted; }
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
            yield Label("")
            yield Checkbox("Text term", id="text_term", compact=True,
                           tooltip="add a learned term: each item's title against the user's "
                           "profile facets (needs profiles)")
            yield Label("Activate")
            yield Select([(m, m) for m in ACTIVATE_MODES], value=ACTIVATE_MODES[0],
                         allow_blank=False, id="activate", compact=True,
                         tooltip="if-better: the new run becomes active only if it beats the "
                         "active run's validation Recall@10 on the same data")
        yield Static("Validated defaults", id="form-origin")
        with Horizontal(id="form-buttons"):
            yield Button("Start", id="start", variant="primary", compact=True)
            yield Button("Cancel", id="cancel", variant="error", compact=True, disabled=True)
            yield Button("Defaults", id="defaults", compact=True,
                         tooltip="put back the validated defaults of `dynllm-tui train`")
        yield Static("", id="form-errors")

    def on_mount(self) -> None:
        self.border_title = "Parameters"
        self.ablations: tuple[str, ...] = ()
        self.prefilled_from: int | None = None  # the run whose settings the form shows

    def fill(self, params: TrainParams, origin: str) -> None:
        """Show `params` in the fields; `origin` says where they come from."""
        for _, field, _ in TEXT_FIELDS:
            value = getattr(params, field)
            self.query_one(f"#{field}", Input).value = repr(value) if isinstance(
                value, float) else str(value)
        self.query_one("#device", Select).value = params.device
        ablation = self.query_one("#ablation", Select)
        if params.ablation and params.ablation not in self.ablations:
            # The ablation list arrives with the screen; keep the run's choice offered.
            self.set_ablations((*self.ablations, params.ablation))
        ablation.value = params.ablation or NO_ABLATION
        self.query_one("#no_profiles", Checkbox).value = params.no_profiles
        self.query_one("#repeat_term", Checkbox).value = params.repeat_term
        self.query_one("#text_term", Checkbox).value = params.text_term
        self.query_one("#activate", Select).value = params.activate
        self.query_one("#form-origin", Static).update(origin)
        self.show_errors({})

    def fill_from_run(self, run_id: int, config: Mapping[str, Any]) -> bool:
        """Prefill with run `run_id`'s settings ("retrain like run #N"); False (form left
        as it is) when its config does not hold them."""
        params = params_from_run(config)
        if params is None:
            return False
        self.fill(params, f"Retrain like run #{run_id}")
        self.prefilled_from = run_id
        return True

    def fill_defaults(self) -> None:
        self.fill(DEFAULT_PARAMS, "Validated defaults")
        self.prefilled_from = None

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {field: self.query_one(f"#{field}", Input).value
                               for _, field, _ in TEXT_FIELDS}
        out["device"] = self.query_one("#device", Select).value
        out["ablation"] = self.query_one("#ablation", Select).value
        out["no_profiles"] = self.query_one("#no_profiles", Checkbox).value
        out["repeat_term"] = self.query_one("#repeat_term", Checkbox).value
        out["text_term"] = self.query_one("#text_term", Checkbox).value
        out["activate"] = self.query_one("#activate", Select).value
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
        self.query_one("#defaults", Button).disabled = running
        self.query_one("#cancel", Button).disabled = not running
