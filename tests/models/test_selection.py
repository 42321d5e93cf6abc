"""Choices on validation only, seeds with spread and the significance rule."""

from __future__ import annotations

import pytest

from models.evaluation.seeds import aggregate, check_seeds, significantly_above
from models.evaluation.selection import (
    ValidationTooSmallError,
    check_validation_size,
    choose_on_validation,
)

GRID = ["repeat term off", "repeat term on"]


def _pick(validation: dict[str, float], test: dict[str, float]) -> str:
    """What a run would choose: `test` is available to the caller, as it is in a real report,
    but only `validation` may decide."""
    assert set(test) == set(validation)
    return choose_on_validation(GRID, lambda o: {"recall@10": validation[o]}).option


def test_choice_follows_validation_not_test():
    val = {"repeat term off": 0.10, "repeat term on": 0.20}
    test = {"repeat term off": 0.30, "repeat term on": 0.05}
    assert _pick(val, test) == "repeat term on"
    # Change validation, keep test: the choice changes.
    assert _pick({"repeat term off": 0.25, "repeat term on": 0.20}, test) == "repeat term off"
    # Change test, keep validation: it does not.
    assert _pick(val, {"repeat term off": 0.01, "repeat term on": 0.99}) == "repeat term on"


def test_choice_records_grid_and_deciding_figure():
    choice = choose_on_validation([1e-3, 1e-4], lambda lr: {"recall@10": 0.1 if lr > 5e-4
                                                            else 0.2})
    assert choice.record() == {"chosen": 1e-4, "metric": "recall@10", "validation": 0.2,
                               "grid": [{"option": 1e-3, "value": 0.1},
                                        {"option": 1e-4, "value": 0.2}]}
    # Ties go to the first option listed.
    assert choose_on_validation(["a", "b"], lambda o: {"recall@10": 0.5}).option == "a"


def test_a_split_too_small_for_a_grid_is_one_clear_line():
    with pytest.raises(ValidationTooSmallError, match=r"^the validation part has 5 events, "
                       r"too few to choose settings from a grid \(need at least 20\)"):
        check_validation_size(5)
    check_validation_size(20)


@pytest.mark.parametrize("bad", [0, 11, -1, 2.5, True])
def test_seed_counts_outside_1_to_10_are_refused(bad):
    with pytest.raises(ValueError, match=r"--seeds must be a whole number from 1 to 10"):
        check_seeds(bad)


def test_mean_sd_and_the_two_pooled_sd_rule():
    a = aggregate([{"recall@10": 0.30, "n_events": 9}, {"recall@10": 0.32, "n_events": 9},
                   {"recall@10": 0.34, "n_events": 9}])
    assert a["recall@10"] == pytest.approx(0.32) and a["recall@10_sd"] == pytest.approx(0.02)
    assert a["n_events"] == 9 and a["n_seeds"] == 3
    b = aggregate([{"recall@10": 0.25}, {"recall@10": 0.27}, {"recall@10": 0.29}])
    # pooled sd = 0.02; 0.32 - 0.27 = 0.05 > 0.04: significant. 0.32 vs 0.29: not.
    assert significantly_above(a, b, "recall@10")
    c = aggregate([{"recall@10": 0.28}, {"recall@10": 0.29}, {"recall@10": 0.30}])
    assert not significantly_above(a, c, "recall@10")
    one = aggregate([{"recall@10": 0.9}])
    assert one["recall@10_sd"] == 0.0 and not significantly_above(one, aggregate(
        [{"recall@10": 0.1}]), "recall@10")  # one seed: nothing is significant
    assert aggregate([{"repeat:recall@10": None}, {"repeat:recall@10": None}])[
        "repeat:recall@10"] is None
