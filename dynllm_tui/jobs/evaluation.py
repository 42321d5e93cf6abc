"""The evaluation job: a run's model report on its own split, stored with the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynllm_tui.jobs.workspace_data import load_workspace_data
from storage.errors import DynllmError
from storage.workspace import Workspace


def evaluate_job(
    db_path: str | Path | None,
    *,
    run_id: int | None = None,
    ablations: bool = False,
    progress: Callable[[str, Any], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[dict]:
    """The model report of a run on its own split: the run's test metrics beside the baselines
    (popularity, repeat history, BPR-MF) and, with `ablations`, beside each ablation trained with
    the same settings and seed. Both protocols (full ranking and the paper's candidates). The
    report is stored with the run."""
    from models.evaluation.protocols import model_report
    from models.evaluation.report import baseline_results, method_label, run_model_report
    from models.network.dynllm import DynLLMConfig
    from models.training.loop import TrainConfig
    from storage.exports import resolve_run

    with Workspace.open(db_path, create=False) as ws:
        run, _model, _ = resolve_run(ws, run_id)
        config_json, fingerprint, test_json = ws.conn.execute(
            "SELECT config, data_fingerprint, test_metrics FROM runs WHERE id = ?", (run,)
        ).fetchone()
        config = json.loads(config_json)
        data = load_workspace_data(ws, use_profiles=config.get("with_profiles", True))
        if data.log.fingerprint() != fingerprint:
            raise DynllmError(f"the interactions changed since run {run} was trained; "
                              "train a new run to evaluate on today's data")
        train_fields = {k: v for k, v in config["train"].items() if k != "ks"}
        train_config = TrainConfig(**train_fields)
        if ablations:
            model_fields = {**config["model"], "facets": tuple(config["model"]["facets"])}
            rows = run_model_report(data.log, data.item_text, data.profiles,
                                    DynLLMConfig(**model_fields), train_config,
                                    progress=progress, should_stop=cancel)
        else:
            model_fields = {**config["model"], "facets": tuple(config["model"]["facets"])}
            label = method_label(DynLLMConfig(**model_fields),
                                 with_profiles=bool(config.get("with_profiles")))
            results = {label: json.loads(test_json or "{}")}
            if progress is not None:
                progress("baselines", None)
            results.update(baseline_results(data.log, train_config))
            rows = model_report(results)
        with ws.transaction() as conn:
            conn.execute("UPDATE runs SET report = ? WHERE id = ?",
                         (json.dumps(rows, default=float), run))
    return rows
