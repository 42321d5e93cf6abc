"""Defects found by the tests and not yet mended, each as a precise expected failure: the test
asserts the right behaviour, only this defect's own exception is expected, and strict=True makes
the mark fail the run once the defect is mended (then delete the mark and this entry).

- A training run cancelled before its first epoch finished is recorded in the `runs` table as
  "failed", while the job's own summary says "cancelled": `train_job` in
  dynllm_tui/jobs/training.py records `status if result.best_epoch is not None else "failed"`.
"""

from __future__ import annotations

import pytest


class CancelRecordedAsFailedError(AssertionError):
    """The runs table says "failed" for a run that was cancelled."""


def assert_recorded_as_cancelled(status: str) -> None:
    if status == "failed":
        raise CancelRecordedAsFailedError(
            "the cancelled run is recorded as 'failed' (dynllm_tui/jobs/training.py, train_job)")
    assert status == "cancelled", status


cancel_recorded_as_failed = pytest.mark.xfail(
    raises=CancelRecordedAsFailedError, strict=True,
    reason="train_job records a run cancelled before its first epoch as 'failed'")
