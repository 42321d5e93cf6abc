"""The replay job: run a finished run's best checkpoint over the whole timeline again and store
its outputs anew — how a run stored before the buy-again/discover lists and reasons gets them
without retraining (`storage.browse.stored_before_lists` tells the analyst to do this)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dynllm_tui.jobs.training_lock import holds_train_lock
from dynllm_tui.jobs.workspace_data import load_workspace_data
from storage.browse import active_run
from storage.errors import DynllmError
from storage.workspace import Workspace


def replay_job(db_path: str | Path | None, run_id: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Replay run `run_id` (default: the active run; finished, with its checkpoint) into the
    workspace: its three lists with reasons, facet weights and memory trace replace the stored
    ones. Returns (the run, the number of recommendations stored). Holds the training lock: no
    training writes meanwhile."""
    with Workspace.open(db_path, create=False) as ws:  # a missing workspace: refused, not made
        if run_id is None:
            run = active_run(ws)
            if run is None:
                raise DynllmError(f"no active run to replay in {ws.path}: give --run N")
            run_id = run.id
    return run_id, _replay_locked(db_path, run_id=run_id, progress=progress)


@holds_train_lock
def _replay_locked(db_path: str | Path | None, *, run_id: int,
                   progress: Callable[[int, int], None] | None) -> int:
    from dynllm_tui.jobs.training import replay_into_workspace
    from models.training.loop import CheckpointError, model_from_checkpoint

    with Workspace.open(db_path, create=False) as ws:
        row = ws.conn.execute("SELECT status, config, checkpoint_path FROM runs WHERE id = ?",
                              (run_id,)).fetchone()
        if row is None:
            raise DynllmError(f"no run {run_id} in {ws.path}")
        status, config_text, checkpoint = row
        if status not in ("done", "cancelled") or not checkpoint:
            raise DynllmError(f"run #{run_id} is {status} with no model to replay: retrain")
        config = json.loads(config_text or "{}")
        data = load_workspace_data(ws, use_profiles=bool(config.get("with_profiles")))
        try:
            model, _memory, _saved = model_from_checkpoint(
                Path(checkpoint), data.log, data.item_text, data.profiles)
        except CheckpointError as exc:
            raise DynllmError(f"run #{run_id} cannot be replayed: {exc}") from None
        replay_into_workspace(ws, run_id, data, model, progress=progress,
                              exclude_bought=bool(config.get("exclude_bought")))
        return ws.conn.execute("SELECT count(*) FROM recommendations WHERE run_id = ?",
                               (run_id,)).fetchone()[0]
