"""The numeric settings of a training, and the one rule each must satisfy.

`dynllm-tui train`, the Training form and `train_job` itself all check through this module (it
imports no torch, so the CLI and the form can refuse a bad value at once): a bad value is refused
before any run is recorded, with one line naming the setting and what it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage.errors import DynllmError


@dataclass(frozen=True)
class NumberRule:
    """A setting's accepted values: a whole number in [low, high], or (`whole=False`) a finite
    number in (low, high] (a learning rate of 0 trains nothing, so low is excluded; the wording
    of `wants` assumes low is 0)."""

    field: str  # train_job's keyword
    label: str  # the Training form's label
    option: str  # the CLI's option
    low: float
    high: float
    whole: bool = True
    example: str = ""

    def wants(self) -> str:
        if self.whole:
            return f"a whole number from {self.low:,} to {self.high:,}"
        return f"a positive number at most {self.high:g}, such as {self.example}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):  # True is an int to Python, not a batch size to anyone
            return False
        if self.whole:
            return isinstance(value, int) and self.low <= value <= self.high
        return (isinstance(value, int | float) and math.isfinite(value)
                and self.low < value <= self.high)

    def parse(self, text: str) -> int | float:
        """The value typed in a form field, or ValueError saying what the field accepts."""
        cleaned = text.strip().replace("_", "")
        try:
            value: int | float = int(cleaned) if self.whole else float(cleaned)
        except ValueError:
            raise ValueError(self.wants()) from None
        if not self.accepts(value):
            raise ValueError(self.wants())
        return value


RULES: dict[str, NumberRule] = {rule.field: rule for rule in (
    NumberRule("epochs", "Epochs", "--epochs", 1, 10_000),
    NumberRule("batch_size", "Batch size", "--batch-size", 1, 1_000_000),
    NumberRule("lr", "Learning rate", "--lr", 0, 10, whole=False, example="0.001"),
    # 0 is meaningful: stop at the first epoch that does not improve on the best one.
    NumberRule("patience", "Patience", "--patience", 0, 10_000),
    NumberRule("seed", "Seed", "--seed", 0, 2**32 - 1),
)}
DEFAULTS: dict[str, int | float] = {"epochs": 50, "batch_size": 2048, "lr": 1e-3,
                                    "patience": 10, "seed": 0}


class TrainSettingsError(DynllmError):
    """A training setting out of its range; `problems` maps each bad field to its message."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(self.problems.values()))


def setting_problems(values: Mapping[str, Any], *, name: str = "field") -> dict[str, str]:
    """field -> "NAME: what it accepts (got VALUE)" for each value in `values` that its rule
    refuses; `name` picks how a setting is named: "field" (train_job's keyword), "option"
    (the CLI's) or "label" (the form's)."""
    problems = {}
    for field, value in values.items():
        rule = RULES[field]
        if not rule.accepts(value):
            problems[field] = f"{getattr(rule, name)}: {rule.wants()} (got {value!r})"
    return problems


def check_train_settings(*, name: str = "field", **values: Any) -> None:
    """Raise TrainSettingsError (one line naming every bad setting) unless all are accepted."""
    problems = setting_problems(values, name=name)
    if problems:
        raise TrainSettingsError(problems)
