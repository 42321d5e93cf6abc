"""The evaluation job: a run's model report on its own split, stored with the run; and the
baseline rows every finished run carries (`store_run_baselines`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynllm_tui.jobs.workspace_data import WorkspaceData, load_workspace_data
from storage.errors import DynllmError
from storage.workspace import Workspace

# What `evaluate --protocol` accepts: one protocol, "default" (exclude-seen when the training
# part's repeat ratio is below 5%, else full ranking), "both" (full and paper, as before) or all.
PROTOCOL_CHOICES = ("all", "default", "full", "paper", "exclude-seen", "both")


def check_protocol(name: str) -> str:
    """The protocol choice as given, or one clear error naming the choices."""
    if name not in PROTOCOL_CHOICES:
        raise DynllmError(f"--protocol must be one of {', '.join(PROTOCOL_CHOICES)}, "
                          f"not {name!r}")
    return name


def select_protocol(rows: list[dict], choice: str) -> list[dict]:
    """The report rows of the chosen protocol(s)."""
    check_protocol(choice)
    if choice == "all":
        return rows
    if choice == "both":
        keep = {"full", "paper"}
    elif choice == "default":
        keep = {rows[0].get("default_protocol", "full")} if rows else set()
    else:
        keep = {choice.replace("-", "_")}
    return [r for r in rows if r.get("protocol") in keep]


def _train_config(config: dict):
    from models.training.loop import TrainConfig

    return TrainConfig(**{k: v for k, v in config["train"].items() if k != "ks"})


def _model_config(config: dict):
    from models.network.dynllm import DynLLMConfig

    return DynLLMConfig(**{**config["model"], "facets": tuple(config["model"]["facets"])})


def _as_dynllm_error(exc: ValueError) -> DynllmError:
    return DynllmError(str(exc))


def _run_row_results(ws: Workspace, run_id: int, config: dict) -> dict[str, dict]:
    """{label: stored test metrics} of the run itself (empty when it has none)."""
    from models.evaluation.report import method_label

    (test_json,) = ws.conn.execute("SELECT test_metrics FROM runs WHERE id = ?",
                                   (run_id,)).fetchone()
    test = json.loads(test_json or "{}")
    if not test:
        return {}
    label = method_label(_model_config(config), with_profiles=bool(config.get("with_profiles")))
    return {f"{label} (run {run_id})": test}


def store_run_baselines(
    ws: Workspace,
    run_id: int,
    data: WorkspaceData,
    train_config: Any,
    *,
    n_seeds: int = 1,
    progress: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[dict]:
    """Compute the baseline rows of run `run_id`'s split and batches (settings chosen on
    validation, repeat/explore columns, every protocol), set the run's own test metrics beside
    them, and store the rows as the run's report. Returns the rows. Called at the end of a
    training job, so the Runs screen and `evaluate` show DynLLM beside its baselines."""
    from models.data.events import chronological_split
    from models.evaluation.protocols import dataset_summary, model_report
    from models.evaluation.report import baseline_results

    (config_json,) = ws.conn.execute("SELECT config FROM runs WHERE id = ?",
                                     (run_id,)).fetchone()
    results = _run_row_results(ws, run_id, json.loads(config_json or "{}"))
    try:
        results.update(baseline_results(data.log, train_config, n_seeds=n_seeds,
                                        progress=progress, should_stop=cancel))
    except ValueError as exc:  # too small a validation part, a bad seed count
        raise _as_dynllm_error(exc) from None
    split = chronological_split(data.log, train_config.train_frac, train_config.val_frac)
    rows = model_report(results, dataset_summary(data.log, split))
    with ws.transaction() as conn:
        conn.execute("UPDATE runs SET report = ? WHERE id = ?",
                     (json.dumps(rows, default=float), run_id))
    return rows


def evaluate_job(
    db_path: str | Path | None,
    *,
    run_id: int | None = None,
    ablations: bool = False,
    n_seeds: int = 1,
    progress: Callable[[str, Any], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[dict]:
    """The model report of a run on its own split: the run's test metrics beside the baselines
    (popularity, repeat history, GP-TopFreq, BPR-MF, TIFU-KNN, item-kNN; settings chosen on
    validation) and, with `ablations`, beside each ablation trained with the same settings.
    Every protocol, with repeat/explore columns. With `n_seeds` > 1 the run's configuration is
    retrained once per seed (the run's seed, +1, ...; the split stays fixed) and every row is a
    mean ± sd. The report is stored with the run."""
    from models.evaluation.report import run_model_report
    from models.evaluation.seeds import check_seeds
    from models.vocabulary import ABLATIONS
    from storage.exports import resolve_run

    try:
        check_seeds(n_seeds)
    except ValueError as exc:
        raise _as_dynllm_error(exc) from None
    with Workspace.open(db_path, create=False) as ws:
        run, _model, _ = resolve_run(ws, run_id)
        config_json, fingerprint = ws.conn.execute(
            "SELECT config, data_fingerprint FROM runs WHERE id = ?", (run,)).fetchone()
        config = json.loads(config_json)
        data = load_workspace_data(ws, use_profiles=config.get("with_profiles", True))
        if data.log.fingerprint() != fingerprint:
            raise DynllmError(f"the interactions changed since run {run} was trained; "
                              "train a new run to evaluate on today's data")
        train_config = _train_config(config)
        if not ablations and n_seeds == 1:
            return store_run_baselines(
                ws, run, data, train_config,
                progress=None if progress is None else (lambda text: progress(text, None)),
                cancel=cancel)
        try:
            rows = run_model_report(data.log, data.item_text, data.profiles,
                                    _model_config(config), train_config,
                                    ablations=ABLATIONS if ablations else (),
                                    repeat_counterpart=ablations, progress=progress,
                                    should_stop=cancel, n_seeds=n_seeds)
        except ValueError as exc:
            raise _as_dynllm_error(exc) from None
        with ws.transaction() as conn:
            conn.execute("UPDATE runs SET report = ? WHERE id = ?",
                         (json.dumps(rows, default=float), run))
    return rows
