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
from typing import TYPE_CHECKING, Any

from dynllm_tui.jobs.activate import check_activate_mode, decide_activation, describe_activation
from dynllm_tui.jobs.train_settings import check_train_settings
from dynllm_tui.jobs.training_lock import holds_train_lock
from dynllm_tui.jobs.workspace_data import WorkspaceData, load_workspace_data
from storage.errors import DynllmError
from storage.workspace import Workspace

if TYPE_CHECKING:  # torch behind it: imported in the job, not at start-up
    from models.network.dynllm import DynLLMConfig

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
    # The activation rule's outcome (jobs.activate): whether the run became the active one,
    # the run it was compared with, both best validation Recall@10 (new, compared) and why.
    activated: bool = False
    compared_with: int | None = None
    validation: tuple[float | None, float | None] | None = None
    activation_reason: str = ""
    activation_note: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    text_term: bool = False,
    progress: Callable[[Any], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_replay: Callable[[int, int], None] | None = None,
    activate: str = "if-better",
) -> TrainSummary:
    """Train (or resume run `resume`), record the run, replay the best model into the workspace.
    `repeat_term` adds the learned repeat-purchase term to the paper's dot-product score
    (models.network.dynllm.RepeatTerm); `text_term` the learned profile-text term, the cosine
    of each item's title with the user's facet texts (models.network.dynllm.TextAffinityTerm),
    which needs profiles and item text vectors of the same encoder.

    Bad settings (jobs.train_settings), a missing workspace and a read-only one are refused
    before anything is written, the training lock file included. Once the run is recorded,
    every way out leaves it finished: done (only after its replay is stored, and then active),
    cancelled, or failed with the reason.

    `activate` (jobs.activate): "if-better" makes the finished run active only when it beats
    the active run on validation (same data) or is not comparable with it; "always"; "never"."""
    check_train_settings(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                         seed=seed)
    check_activate_mode(activate)
    Workspace.open(db_path, create=False).close()
    return _train_locked(
        db_path, epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed,
        no_profiles=no_profiles, ablation=ablation, resume=resume, patience=patience,
        exclude_bought=exclude_bought, repeat_term=repeat_term, text_term=text_term,
        progress=progress, cancel=cancel, on_replay=on_replay, activate=activate)


def _check_text_term(data: WorkspaceData, model_config: DynLLMConfig, no_profiles: bool,
                     path: Path) -> None:
    """The text term scores items by their title's cosine with the user's facet texts, so it
    needs both, embedded by one encoder; refused before a run is recorded. `model_config` is
    the config after its ablation (the no_profiles ablation leaves no facets to score with)."""
    from models.evaluation.profile_text import check_text_inputs

    if no_profiles or (model_config.no_profiles and data.profiles is not None):
        raise DynllmError("the text term scores items against the user's profile: it cannot "
                          "go with --no-profiles or the no_profiles ablation")
    if data.profiles is None:
        raise DynllmError(f"the text term needs LLM profiles, and {path} has none with "
                          "embedded facets: run `dynllm-tui profiles` first")
    if data.item_text is None:
        raise DynllmError(f"the text term needs item text vectors, and {path} has none: "
                          "run `dynllm-tui profiles` (it embeds the titles too)")
    try:
        check_text_inputs(data.log, data.item_text, data.profiles)
    except ValueError as exc:
        raise DynllmError(f"the text term cannot train on {path}: {exc}") from None


@holds_train_lock  # one training per workspace, visible to other processes
def _train_locked(
    db_path: str | Path | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: str,
    seed: int,
    no_profiles: bool,
    ablation: str | None,
    resume: int | None,
    patience: int,
    exclude_bought: bool,
    repeat_term: bool,
    text_term: bool,
    progress: Callable[[Any], None] | None,
    cancel: Callable[[], bool] | None,
    on_replay: Callable[[int, int], None] | None,
    activate: str,
) -> TrainSummary:
    from models.data.events import NotEnoughEventsError
    from models.network.dynllm import DynLLMConfig
    from models.training.loop import CheckpointError, TrainConfig, resolve_device, train
    from models.training.stream import NonFiniteLossError

    started = time.perf_counter()
    with Workspace.open(db_path, create=False) as ws:
        data = load_workspace_data(ws, use_profiles=not no_profiles)
        model_config = DynLLMConfig(no_profiles=no_profiles or data.profiles is None,
                                    repeat_term=repeat_term, text_term=text_term)
        if ablation:
            try:
                model_config = model_config.ablation(ablation)
            except (ValueError, KeyError) as exc:
                raise DynllmError(f"unknown ablation {ablation!r} ({exc})") from None
        if text_term:
            _check_text_term(data, model_config, no_profiles, ws.path)
        try:
            resolved = str(resolve_device(device))
        except (RuntimeError, ValueError) as exc:
            raise DynllmError(str(exc)) from None
        train_config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                   device=device, patience=patience)
        config = {"model_name": "dynllm" + (" + repeat" if repeat_term else "")
                  + (" + text" if text_term else "")
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

        leave_as_it_was = False  # a resume that could not start changes nothing
        activation = None
        try:
            try:
                result = train(data.log, data.item_text, data.profiles, model_config,
                               train_config, progress=progress, should_stop=cancel,
                               checkpoint_dir=checkpoint_dir, resume_from=resume_from)
            except NotEnoughEventsError as exc:
                raise DynllmError(f"cannot train: {exc}") from None
            except (CheckpointError, NonFiniteLossError) as exc:
                leave_as_it_was = resume is not None
                raise DynllmError(f"run {run_id}: {exc}") from None
            cancelled = result.status == "cancelled"
            outcome = {"epochs_done": len(result.epochs), "best_epoch": result.best_epoch,
                       "history": json.dumps([asdict(e) for e in result.epochs], default=float),
                       "test_metrics": json.dumps(result.test, default=float),
                       "checkpoint_path": str(result.checkpoint) if result.checkpoint else None}
            if result.best_epoch is None or result.model is None:
                status = "cancelled" if cancelled else "failed"
                record(**outcome, status=status, finished_at=_now(),
                       seconds=round(time.perf_counter() - started, 2),
                       error=("cancelled" if cancelled else "stopped") +
                       " before the first epoch finished: no model to keep")
            else:
                record(**outcome)  # the metrics show while the replay runs; still 'running'
                replay_into_workspace(ws, run_id, data, result.model, progress=on_replay,
                                      exclude_bought=exclude_bought)
                if not cancelled:
                    _store_baselines(ws, run_id, data, train_config)
                status = "cancelled" if cancelled else "done"
                # 'done' only now that the replay is stored, and the active run chosen in the
                # same commit (decided inside it, so no other writer moves it in between).
                with ws.transaction() as conn:
                    if status == "done":
                        activation = decide_activation(ws, run_id, activate)
                    conn.execute("UPDATE runs SET status = ?, error = NULL, seconds = ?, "
                                 "finished_at = ? WHERE id = ?",
                                 (status, round(time.perf_counter() - started, 2), _now(),
                                  run_id))
                    if activation is not None and activation.activate:
                        conn.execute("UPDATE runs SET active = (id = ?)", (run_id,))
                    elif activation is not None and activation.compared_with is not None:
                        # Pin the run that stays active: with none marked, the app would
                        # fall back to the latest finished run, this one.
                        conn.execute("UPDATE runs SET active = (id = ?)",
                                     (activation.compared_with,))
        except BaseException as exc:
            if not leave_as_it_was:
                _record_failure(ws, run_id, exc)
            raise
    summary = TrainSummary(run_id, status, len(result.epochs), result.best_epoch, result.test,
                           str(result.checkpoint) if result.checkpoint else None,
                           time.perf_counter() - started, data.profiles is not None, resolved)
    if activation is not None:
        summary.activated = activation.activate
        summary.compared_with = activation.compared_with
        summary.validation = activation.validation
        summary.activation_reason = activation.reason
        summary.activation_note = describe_activation(
            run_id, activation.activate, activation.reason, activation.compared_with,
            activation.validation)
    return summary


def _store_baselines(ws: Workspace, run_id: int, data: WorkspaceData, train_config: Any) -> None:
    """Every finished run carries the baselines of its own split (settings chosen on
    validation, repeat/explore columns), so Runs shows DynLLM beside "buy again what you
    bought" without an extra command. A split too small for the validation grids keeps the run
    and says why in its report instead."""
    from dynllm_tui.jobs.evaluation import store_run_baselines

    try:
        store_run_baselines(ws, run_id, data, train_config)
    except DynllmError as exc:
        with ws.transaction() as conn:
            conn.execute("UPDATE runs SET config = json_set(config, '$.baselines_note', ?) "
                         "WHERE id = ?", (f"no baselines: {exc}", run_id))


def _record_failure(ws: Workspace, run_id: int, exc: BaseException) -> None:
    """Mark the run failed with the reason, so that no run stays 'running' after its job ended.
    Best effort: when the workspace itself is what failed (damaged, read-only, disk full), the
    original error is the one to report, and a run left 'running' with no training lock held
    is shown as interrupted."""
    if isinstance(exc, KeyboardInterrupt):
        reason = "interrupted before the run finished"
    elif isinstance(exc, DynllmError):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    try:
        with ws.transaction() as conn:
            conn.execute("UPDATE runs SET status = 'failed', error = ?, active = 0, "
                         "finished_at = ? WHERE id = ?", (reason, _now(), run_id))
    except Exception:  # noqa: BLE001 - the original error matters more than this one
        pass


def replay_into_workspace(ws: Workspace, run_id: int, data: WorkspaceData, model,
                          progress: Callable[[int, int], None] | None = None,
                          exclude_bought: bool = False) -> None:
    """Run the model over the whole timeline and store its outputs for the app and exports:
    per user three top-K lists ("all", "buy-again", "discover"), each recommendation with its
    one-line reason (jobs.reasons), the facet weights and the memory trace. `exclude_bought`
    leaves items each user already bought out of the "all" list."""
    from models.training.replay import replay

    model.eval()
    out = replay(model, data.log, data.profiles, k=REPLAY_K, progress=progress,
                 exclude_seen=exclude_bought)
    rows = _recommendation_rows(ws, run_id, data, out)
    with ws.transaction() as conn:
        conn.execute("DELETE FROM recommendations WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM facet_weights WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM memory_trace WHERE run_id = ?", (run_id,))
        conn.executemany(
            "INSERT INTO recommendations (run_id, list, user_id, rank, item_id, score, "
            "bought_before, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        weights = out.facet_weights
        if weights is not None:
            # Long rows, one per facet the model has (all of them, or one under facet:NAME),
            # in the model's facet order, so each event's rows are stored together. An absent
            # facet (no source, e.g. no brands in the catalogue) has weight exactly 0 (masked
            # in the attention) and gets no row: the app shows it as "not available".
            conn.executemany(
                "INSERT INTO facet_weights (run_id, user_id, ts, facet, weight) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(data.user_ids[u]), int(t), facet, float(w))
                 for u, t, row in zip(weights.users.tolist(), weights.ts.tolist(),
                                      weights.weights.tolist(), strict=True)
                 for facet, w in zip(weights.facets, row, strict=True) if w > 0],
            )
        trace = out.memory_trace
        conn.executemany(
            "INSERT INTO memory_trace VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(run_id, int(data.user_ids[u]), int(t), float(n), float(d), float(x), float(y))
             for u, t, n, d, (x, y) in zip(trace.users.tolist(), trace.ts.tolist(),
                                           trace.norm.tolist(), trace.drift.tolist(),
                                           trace.xy.tolist(), strict=True)],
        )


def _recommendation_rows(ws: Workspace, run_id: int, data: WorkspaceData, out: Any
                         ) -> list[tuple]:
    """The rows of the recommendations table for a replay's three lists, with reasons made
    once per distinct (user, item) pair (an item is often in "all" and in one other list)."""
    import numpy as np

    from dynllm_tui.jobs.reasons import (
        latest_profile_facets,
        recommendation_reasons,
        top_facet_at_latest_event,
    )

    log = data.log
    flat = {}
    for name, recs in out.lists.items():
        valid = recs.items >= 0  # a shorter list (few items bought) ends early
        shape = recs.items.shape
        flat[name] = (np.broadcast_to(recs.users[:, None], shape)[valid],
                      np.broadcast_to(np.arange(1, shape[1] + 1), shape)[valid],
                      recs.items[valid], recs.scores[valid], recs.bought[valid])
    keys = np.concatenate([f[0] * log.n_items + f[2] for f in flat.values()])
    pairs, inverse = np.unique(keys, return_inverse=True)

    titles = None
    item_text = None
    if data.item_text is not None:
        names = dict(ws.conn.execute(
            "SELECT id, coalesce(nullif(trim(title), ''), external_id) FROM items"))
        titles = [names[int(i)] for i in data.item_ids.tolist()]
        item_text = data.item_text.float().numpy()
    user_facet, facet_texts = {}, {}
    if out.facet_weights is not None:
        user_facet = top_facet_at_latest_event(out.facet_weights)
        by_id = latest_profile_facets(ws, data.user_ids.tolist())
        facet_texts = {int(np.searchsorted(data.user_ids, user)): texts
                       for user, texts in by_id.items()}
    reasons = recommendation_reasons(
        log, pairs // log.n_items, pairs % log.n_items, end=float(log.ts[-1]),
        titles=titles or [], item_text=item_text, user_facet=user_facet,
        facet_texts=facet_texts)

    rows: list[tuple] = []
    offset = 0
    for name, (users, ranks, items, scores, bought) in flat.items():
        pair_reasons = [reasons[n] for n in inverse[offset:offset + len(users)].tolist()]
        offset += len(users)
        rows.extend(
            (run_id, name, user_id, rank, item_id, score, flag, reason)
            for user_id, rank, item_id, score, flag, reason in zip(
                data.user_ids[users].tolist(), ranks.tolist(), data.item_ids[items].tolist(),
                scores.astype(np.float64).tolist(), bought.astype(int).tolist(), pair_reasons,
                strict=True))
    return rows
