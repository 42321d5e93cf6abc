"""The Runs screen's settings line: read from the config the training job records (train
options under "train", model switches under "model"), and from older flat configs."""

from __future__ import annotations

from dataclasses import asdict

from dynllm_tui.ui.runs.run_report import run_settings
from models.network.dynllm import DynLLMConfig
from models.training.loop import TrainConfig


def _config(**model) -> dict:
    """A run config shaped exactly as dynllm_tui.jobs.training builds it."""
    model_config = DynLLMConfig(**model)
    return {"model_name": "dynllm", "model": asdict(model_config),
            "train": asdict(TrainConfig(epochs=7, batch_size=512, lr=0.002, patience=3, seed=4)),
            "with_profiles": not model_config.no_profiles, "item_text": True}


def test_the_settings_of_a_recorded_run():
    line = run_settings(_config(repeat_term=True))
    assert line.startswith("epochs=7, batch_size=512, lr=0.002, patience=3, seed=4")
    assert "repeat term" in line and line.endswith("with profiles")
    assert "text term" not in line
    assert "repeat term, text term" in run_settings(_config(repeat_term=True, text_term=True))
    one_facet = run_settings(_config(facets=("interests",), no_distill=True))
    assert "no distill" in one_facet and "facets interests" in one_facet
    plain = run_settings(_config(no_profiles=True))
    assert plain.endswith("without profiles") and "no profiles" not in plain


def test_older_flat_configs_and_none():
    assert run_settings({"epochs": 20, "batch_size": 2048, "lr": 0.001, "seed": 0}) == (
        "epochs=20, batch_size=2048, lr=0.001, seed=0")
    assert run_settings({}) == ""
