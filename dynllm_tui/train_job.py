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

import numpy as np

from dynllm_tui.train_lock import holds_train_lock
from storage.browse import set_active_run
from storage.errors import DynllmError
from storage.profiles import load_embeddings
from storage.workspace import Workspace

REPLAY_K = 50


@dataclass
class WorkspaceData:
    """The workspace as the model sees it: dense indices and the maps back to database ids."""

    log: Any  # models.events.EventLog
    user_ids: np.ndarray  # dense user index -> users.id
    item_ids: np.ndarray  # dense item index -> items.id
    item_text: Any  # torch.Tensor [n_items, d] or None
    profiles: Any  # models.profile_index.ProfileIndex or None


def load_workspace_data(ws: Workspace, *, use_profiles: bool = True) -> WorkspaceData:
    import torch

    from models.events import EventLog
    from models.profile_index import ProfileIndex

    rows = ws.conn.execute(
        "SELECT user_id, item_id, ts, basket FROM interactions ORDER BY ts, id").fetchall()
    if not rows:
        raise DynllmError(f"{ws.path} has no interactions: import a purchase log first")
    user_col = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    item_col = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    ts = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    baskets = {}
    group = np.fromiter((baskets.setdefault((r[0], r[3]) if r[3] is None else r[3], len(baskets))
                         for r in rows), np.int64, len(rows))
    user_ids, user_idx = np.unique(user_col, return_inverse=True)
    item_ids = np.array([r[0] for r in ws.conn.execute("SELECT id FROM items ORDER BY id")],
                        dtype=np.int64)
    item_idx = np.searchsorted(item_ids, item_col)
    log = EventLog.from_arrays(user_idx, item_idx, ts, len(user_ids), len(item_ids), group)

    from models.text_encoder import TextEncoder

    encoder = TextEncoder().name  # the name vectors are stored under; loads nothing
    keys, matrix = load_embeddings(ws, "item", encoder)
    item_text = None
    if keys:
        position = {int(k): n for n, k in enumerate(keys)}
        if all(int(i) in position for i in item_ids):
            item_text = torch.from_numpy(matrix[[position[int(i)] for i in item_ids]])

    profiles = None
    if use_profiles:
        from dynllm_tui.profiles_job import load_profile_vectors

        vectors = load_profile_vectors(ws, encoder)
        known = np.isin(vectors["user"], user_ids)
        if known.any():
            profiles = ProfileIndex(
                np.searchsorted(user_ids, vectors["user"][known]),
                vectors["as_of"][known],
                torch.from_numpy(np.ascontiguousarray(vectors["vectors"][known])),
            )
    return WorkspaceData(log, user_ids, item_ids, item_text, profiles)


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
    from models.dynllm import DynLLMConfig
    from models.events import NotEnoughEventsError
    from models.stream import NonFiniteLossError
    from models.training import CheckpointError, TrainConfig, resolve_device, train

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
    from models.replay import replay

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


def recommend(db_path: str | Path | None, user: str, *, k: int = 10,
              run_id: int | None = None) -> dict[str, Any]:
    """A user's stored top-k of a run (default: the active one), with item titles."""
    from storage.exports import resolve_run

    with Workspace.open(db_path, create=False) as ws:
        row = ws.conn.execute("SELECT id FROM users WHERE external_id = ?", (user,)).fetchone()
        if row is None:
            raise DynllmError(f"unknown user id {user!r} in {ws.path}")
        run, model, _ = resolve_run(ws, run_id)
        items = [
            {"rank": rank, "item_id": key, "title": title, "score": round(score, 6),
             "bought_before": bool(bought)}
            for rank, key, title, score, bought in ws.conn.execute(
                "SELECT r.rank, i.external_id, i.title, r.score, r.bought_before "
                "FROM recommendations r JOIN items i ON i.id = r.item_id "
                "WHERE r.run_id = ? AND r.user_id = ? AND r.rank <= ? ORDER BY r.rank",
                (run, row[0], k),
            )
        ]
    return {"user_id": user, "run_id": run, "model": model, "items": items}


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
    from models.dynllm import DynLLMConfig
    from models.evaluation import model_report
    from models.report import baseline_results, method_label, run_model_report
    from models.training import TrainConfig
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
