"""Training, evaluation and replay jobs: workspace in, run record and its outputs out.

`train_job` trains DynLLM on the workspace (with the stored profile and item vectors when there
are any), records the run (config, data fingerprint, per-epoch metrics, test metrics, best
checkpoint), then replays the best model over the whole timeline and stores, for every user,
the top-50 recommendations, the facet weights at each event and the memory trace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dynllm_tui.jobs.training_lock import holds_train_lock
from dynllm_tui.jobs.workspace_data import WorkspaceData, load_workspace_data
from storage.browse import set_active_run
from storage.errors import DynllmError
from storage.workspace import Workspace

REPLAY_K = 50


@dataclass
class TrainSummary:
    run_id: int
    status: str
    epochs: int
    best_epoch: int | None
    test: dict
    checkpoint: str | None
    seconds: float
    with_profiles: bool
    device: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@holds_train_lock  # one training per workspace, visible to other processes
def train_job(
    db_path: str | Path | None,
    *,
    epochs: int = 50,
    batch_size: int = 2048,
    lr: float = 1e-3,
    device: str = "auto",
    seed: int = 0,
    no_profiles: bool = False,
    ablation: str | None = None,
    resume: int | None = None,
    patience: int = 10,
    exclude_bought: bool = False,
    repeat_term: bool = False,
    progress: Callable[[Any], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_replay: Callable[[int, int], None] | None = None,
) -> TrainSummary:
    """Train (or resume run `resume`), record the run, replay the best model into the workspace.
    `repeat_term` adds the learned repeat-purchase term to the paper's dot-product score
    (models.dynllm.RepeatTerm)."""
    from models.data.events import NotEnoughEventsError
    from models.network.dynllm import DynLLMConfig
    from models.training.loop import CheckpointError, TrainConfig, resolve_device, train
    from models.training.stream import NonFiniteLossError

    started = time.perf_counter()
    with Workspace.open(db_path, create=False) as ws:
        data = load_workspace_data(ws, use_profiles=not no_profiles)
        model_config = DynLLMConfig(no_profiles=no_profiles or data.profiles is None,
                                    repeat_term=repeat_term)
        if ablation:
            try:
                model_config = model_config.ablation(ablation)
            except (ValueError, KeyError) as exc:
                raise DynllmError(f"unknown ablation {ablation!r} ({exc})") from None
        try:
            resolved = str(resolve_device(device))
        except (RuntimeError, ValueError) as exc:
            raise DynllmError(str(exc)) from None
        train_config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                   device=device, patience=patience)
        config = {"model_name": "dynllm" + (" + repeat" if repeat_term else "")
                  + (f" ({ablation})" if ablation else ""),
                  "model": asdict(model_config), "train": asdict(train_config),
                  "with_profiles": data.profiles is not None,
                  "item_text": data.item_text is not None,
                  "exclude_bought": exclude_bought}
        resume_from = None
        if resume is not None:
            row = ws.conn.execute("SELECT checkpoint_path FROM runs WHERE id = ?",
                                  (resume,)).fetchone()
            if row is None:
                raise DynllmError(f"no run {resume} to resume in {ws.path}")
            run_id = resume
            resume_from = ws.checkpoint_dir / f"run-{run_id}" / "last.pt"
        else:
            with ws.transaction() as conn:
                run_id = conn.execute(
                    "INSERT INTO runs (created_at, status, config, data_fingerprint, device, "
                    "epochs_done, active) VALUES (?, 'running', ?, ?, ?, 0, 0)",
                    (_now(), json.dumps(config, default=str), data.log.fingerprint(), resolved),
                ).lastrowid
        checkpoint_dir = ws.checkpoint_dir / f"run-{run_id}"

        def record(**fields: Any) -> None:
            with ws.transaction() as conn:
                sets = ", ".join(f"{k} = ?" for k in fields)
                conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

        try:
            result = train(data.log, data.item_text, data.profiles, model_config, train_config,
                           progress=progress, should_stop=cancel,
                           checkpoint_dir=checkpoint_dir, resume_from=resume_from)
        except NotEnoughEventsError as exc:
            record(status="failed", error=str(exc), finished_at=_now())
            raise DynllmError(f"cannot train: {exc}") from None
        except (CheckpointError, NonFiniteLossError) as exc:
            if resume is None:  # a failed resume leaves the run as it was
                record(status="failed", error=str(exc), finished_at=_now())
            raise DynllmError(f"run {run_id}: {exc}") from None
        history = [asdict(e) for e in result.epochs]
        status = "cancelled" if result.status == "cancelled" else "done"
        record(status=status if result.best_epoch is not None else "failed",
               epochs_done=len(result.epochs), best_epoch=result.best_epoch,
               history=json.dumps(history, default=float),
               test_metrics=json.dumps(result.test, default=float),
               checkpoint_path=str(result.checkpoint) if result.checkpoint else None,
               seconds=round(time.perf_counter() - started, 2), finished_at=_now())
        if result.best_epoch is not None and result.model is not None:
            replay_into_workspace(ws, run_id, data, result.model, progress=on_replay,
                                  exclude_bought=exclude_bought)
            if status == "done":
                set_active_run(ws, run_id)
    return TrainSummary(run_id, status, len(result.epochs), result.best_epoch, result.test,
                        str(result.checkpoint) if result.checkpoint else None,
                        time.perf_counter() - started, data.profiles is not None, resolved)


def replay_into_workspace(ws: Workspace, run_id: int, data: WorkspaceData, model,
                          progress: Callable[[int, int], None] | None = None,
                          exclude_bought: bool = False) -> None:
    """Run the model over the whole timeline and store its outputs for the app and exports;
    `exclude_bought` leaves items each user already bought out of the stored top-K."""
    from models.training.replay import replay

    model.eval()
    out = replay(model, data.log, data.profiles, k=REPLAY_K, progress=progress,
                 exclude_seen=exclude_bought)
    recs = out.recommendations
    bought = {(int(u), int(i)) for u, i in zip(data.log.user_idx, data.log.item_idx,
                                                strict=True)}
    rows = []
    for user, items, scores in zip(recs.users.tolist(), recs.items.tolist(),
                                   recs.scores.tolist(), strict=True):
        for rank, (item, score) in enumerate(zip(items, scores, strict=True), start=1):
            rows.append((run_id, int(data.user_ids[user]), rank, int(data.item_ids[item]),
                         float(score), int((user, item) in bought)))
    with ws.transaction() as conn:
        conn.execute("DELETE FROM recommendations WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM facet_weights WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM memory_trace WHERE run_id = ?", (run_id,))
        conn.executemany("INSERT INTO recommendations VALUES (?, ?, ?, ?, ?, ?)", rows)
        weights = out.facet_weights
        if weights is not None:
            conn.executemany(
                "INSERT INTO facet_weights VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, int(data.user_ids[u]), int(t), *map(float, w)) for u, t, w in
                 zip(weights.users.tolist(), weights.ts.tolist(), weights.weights, strict=True)],
            )
        trace = out.memory_trace
        conn.executemany(
            "INSERT INTO memory_trace VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(run_id, int(data.user_ids[u]), int(t), float(n), float(d), float(x), float(y))
             for u, t, n, d, (x, y) in zip(trace.users.tolist(), trace.ts.tolist(),
                                           trace.norm.tolist(), trace.drift.tolist(),
                                           trace.xy.tolist(), strict=True)],
        )
