"""The headless training loop: learning, checkpoints, resume, determinism, bad input."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

import models.training.stream
from models.data.events import EventLog, NotEnoughEventsError
from models.data.neighbors import NeighborFinder
from models.training.loop import CheckpointError, NonFiniteLossError, TrainConfig, evaluate, train
from tests.models.conftest import SMALL, synthetic_log, synthetic_profiles
from tests.reference_replay import (
    assert_matches_reported,
    check_run_against_reference,
    replay_test_metrics,
)

FAST = TrainConfig(epochs=2, batch_size=50, lr=3e-3, device="cpu")


def _states_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_epochs_learn_and_checkpoint(log, tmp_path):
    seen = []
    result = train(log, None, None, SMALL, FAST, checkpoint_dir=tmp_path, progress=seen.append)
    losses = [e.loss for e in result.epochs]
    assert all(math.isfinite(x) for x in losses) and losses[1] < losses[0]
    assert result.status == "completed" and result.best_epoch in (1, 2)
    assert {p.name for p in tmp_path.iterdir()} == {"epoch-001.pt", "epoch-002.pt", "last.pt",
                                                     "best.pt"}
    assert result.checkpoint == tmp_path / "best.pt"
    # The reported test metrics are those of the best model, recomputed independently.
    check_run_against_reference(tmp_path / "best.pt", log, None, None, result.test)
    # The paper protocol ranks among fewer items, so it can only look better.
    assert result.test["paper"]["mrr"] >= result.test["full"]["mrr"]
    stages = {p.stage for p in seen}
    assert stages == {"train", "val", "epoch", "test"}
    assert [p.epoch for p in seen if p.stage == "epoch"] == [1, 2]


def test_resume_repeats_an_uninterrupted_run(log, tmp_path):
    profiles = synthetic_profiles(log)
    straight = train(log, None, profiles, SMALL, FAST, checkpoint_dir=tmp_path / "a")
    first = train(log, None, profiles, SMALL, TrainConfig(**{**asdict(FAST), "epochs": 1}),
                  checkpoint_dir=tmp_path / "b")
    assert len(first.epochs) == 1
    resumed = train(log, None, profiles, SMALL, FAST, resume_from=tmp_path / "b" / "last.pt")
    assert [asdict(e)["val"] for e in resumed.epochs] == [asdict(e)["val"] for e in
                                                          straight.epochs]
    assert [e.loss for e in resumed.epochs] == [e.loss for e in straight.epochs]
    assert _states_equal(resumed.model.state_dict(), straight.model.state_dict())
    assert resumed.test == straight.test


def test_resume_refuses_changed_data_and_bad_files(log, tmp_path):
    train(log, None, None, SMALL, TrainConfig(**{**asdict(FAST), "epochs": 1}),
          checkpoint_dir=tmp_path)
    changed = log.with_events(log.user_idx, np.roll(log.item_idx, 1), log.ts)
    with pytest.raises(CheckpointError, match="changed"):
        train(changed, None, None, SMALL, FAST, resume_from=tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        train(log, None, None, SMALL, FAST, resume_from=tmp_path / "nope.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        train(log, None, None, SMALL, FAST, resume_from=bad)


def test_nan_loss_names_the_batch_and_keeps_the_last_good_checkpoint(log, tmp_path, monkeypatch):
    real = models.training.stream.bpr_loss
    calls = {"epoch": 1, "n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += calls["epoch"] == 2
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss  # batch 3 of epoch 2

    def progress(p):
        if p.stage == "epoch":
            calls["epoch"] = p.epoch + 1

    monkeypatch.setattr(models.training.stream, "bpr_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 3/\d+ \(events \d+\.\.\d+\)"):
        train(log, None, None, SMALL, FAST, checkpoint_dir=tmp_path, progress=progress)
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_cancel_stops_cleanly_and_keeps_best(log, tmp_path):
    batches = {"n": 0}

    def progress(p):
        batches["n"] += p.stage == "train"

    result = train(log, None, None, SMALL, TrainConfig(**{**asdict(FAST), "epochs": 5}),
                   checkpoint_dir=tmp_path, progress=progress,
                   should_stop=lambda: batches["n"] >= 60)  # during epoch 2
    assert result.status == "cancelled" and len(result.epochs) == 1
    assert (tmp_path / "best.pt").exists() and not (tmp_path / "epoch-002.pt").exists()


def test_same_seed_same_run_and_evaluate_replays_memory(log):
    a = train(log, None, None, SMALL, TrainConfig(**{**asdict(FAST), "epochs": 1}))
    b = train(log, None, None, SMALL, TrainConfig(**{**asdict(FAST), "epochs": 1}))
    assert a.epochs[0].loss == b.epochs[0].loss and a.test == b.test
    again = evaluate(a.model, None, NeighborFinder(log), log, a.split, batch_size=50)
    # The memory is rebuilt with the final weights (training built it with the weights as they
    # changed), so the metrics are checked against the reference's own replay.
    reference = replay_test_metrics(a.model, None, log, a.split, batch_size=50,
                                    chunk=FAST.eval_chunk)
    assert_matches_reported(again, reference, len(a.split.test))


def test_too_little_data_is_refused():
    empty = EventLog.from_arrays([], [], [], n_users=1, n_items=2)
    with pytest.raises(NotEnoughEventsError, match="no interactions"):
        train(empty, None, None, SMALL, FAST)
    with pytest.raises(NotEnoughEventsError):
        train(EventLog.from_arrays([0, 1], [0, 1], [1.0, 2.0]), None, None, SMALL, FAST)
    with pytest.raises(NotEnoughEventsError):
        train(synthetic_log(n_events=50).with_events(np.zeros(9, int), np.arange(9) % 2,
                                                     np.ones(9)), None, None, SMALL, FAST)


def test_model_from_checkpoint_reproduces_the_test_metrics(log, tmp_path):
    from models.training.loop import model_from_checkpoint

    result = train(log, None, None, SMALL, FAST, checkpoint_dir=tmp_path)
    model, memory, saved = model_from_checkpoint(tmp_path / "best.pt", log)
    assert saved["epoch"] == result.best_epoch
    again = evaluate(model, memory, NeighborFinder(log), log, result.split, batch_size=50)
    assert again == result.test
    changed = log.with_events(log.user_idx, np.roll(log.item_idx, 1), log.ts)
    with pytest.raises(CheckpointError, match="changed"):
        model_from_checkpoint(tmp_path / "best.pt", changed)
