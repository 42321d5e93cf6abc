"""Choices made on validation only: an option (repeat term on/off, a learning rate, a baseline's
settings) is picked from a small recorded grid by its validation metric; the test part is then
scored once, for the chosen option. The record keeps the grid and the deciding figure."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

SELECT_METRIC = "recall@10"
MIN_VALIDATION_EVENTS = 20


class ValidationTooSmallError(ValueError):
    """The validation part cannot tell the options of a grid apart."""


@dataclass
class Choice:
    """The option picked, the metric and its validation value, and every option's value."""

    option: Hashable | dict
    metric: str
    value: float
    grid: list[dict] = field(default_factory=list)  # [{"option": ..., "value": ...}]

    def record(self) -> dict:
        return {"chosen": self.option, "metric": self.metric, "validation": self.value,
                "grid": self.grid}


def check_validation_size(n_events: int, what: str = "the validation part") -> None:
    if n_events < MIN_VALIDATION_EVENTS:
        raise ValidationTooSmallError(
            f"{what} has {n_events} events, too few to choose settings from a grid (need at "
            f"least {MIN_VALIDATION_EVENTS}); import more data or enlarge --val-frac")


def choose_on_validation(
    options: Sequence,
    validate: Callable[[object], dict],
    metric: str = SELECT_METRIC,
) -> Choice:
    """Evaluate each option with `validate(option) -> validation metrics` and keep the best by
    `metric` (the first option wins ties, so list the simpler or default one first). Never
    looks at test figures: `validate` gets only the option."""
    if not options:
        raise ValueError("an empty grid has nothing to choose from")
    grid, best = [], None
    for option in options:
        metrics = validate(option)
        value = metrics.get(metric)
        if not isinstance(value, int | float):
            raise ValueError(f"validation metrics have no {metric!r} for option {option!r}")
        grid.append({"option": option, "value": float(value)})
        if best is None or value > best["value"]:
            best = grid[-1]
    return Choice(best["option"], metric, best["value"], grid)
