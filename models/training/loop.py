"""Headless DynLLM training: chronological split, time-ordered batches, early stopping on
validation Recall@10, a checkpoint per epoch plus the best, resume, and the test evaluation.

Each epoch starts from empty memory and streams the training part (learning) and then the
validation part (scoring, memory still updated after each batch). The best checkpoint keeps the
memory as it stood after validation, so the test part continues exactly where validation ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.data.events import (
    EventLog,
    NotEnoughEventsError,
    Split,
    chronological_split,
    time_batches,
)
from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.evaluation.metrics import DEFAULT_KS, metrics_from_ranks
from models.evaluation.protocols import part_metrics, standard_protocols
from models.network.dynllm import DynLLM, DynLLMConfig
from models.network.memory import NodeMemory
from models.training.stream import NonFiniteLossError, run_batches

__all__ = ["CheckpointError", "NonFiniteLossError", "Progress", "TrainConfig", "TrainResult",
           "evaluate", "load_checkpoint", "model_from_checkpoint", "resolve_device", "train",
           "user_gaps"]

STOP_METRIC = "recall@10"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to other data or settings."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50
    batch_size: int = 2048
    lr: float = 1e-3  # the authors used 5e-5 over hundreds of epochs; see the note in train()
    reg: float = 1e-5
    patience: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    memory_device: str = "cpu"  # memory may stay on the CPU while the network uses the GPU
    train_frac: float = 0.70
    val_frac: float = 0.15
    ks: tuple[int, ...] = DEFAULT_KS
    eval_chunk: int = 1024
    grad_clip: float = 5.0
    keep_epoch_checkpoints: int = 2


@dataclass
class Progress:
    """Reported after every batch ('train', 'val', 'test') and once per finished epoch."""

    stage: str  # "train" | "val" | "test" | "epoch"
    epoch: int
    batch: int
    n_batches: int
    loss: float | None = None
    metrics: dict | None = None


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    val: dict
    seconds: float


@dataclass
class TrainResult:
    epochs: list[EpochRecord]
    best_epoch: int | None
    status: str  # "completed" | "early_stopped" | "cancelled"
    test: dict = field(default_factory=dict)  # {"full": metrics, "paper": metrics}
    checkpoint: Path | None = None  # the best checkpoint
    model: DynLLM | None = None
    memory: NodeMemory | None = None  # memory after the test part (the end of the timeline)
    split: Split | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no GPU")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def user_gaps(log: EventLog, part: range) -> np.ndarray:
    """Seconds between consecutive events of the same user inside `part` (for normalisation)."""
    users, ts = log.user_idx[part.start:part.stop], log.ts[part.start:part.stop]
    order = np.lexsort((ts, users))
    users, ts = users[order], ts[order]
    same = users[1:] == users[:-1]
    return (ts[1:] - ts[:-1])[same]


def _fingerprint(log: EventLog, profiles: ProfileIndex | None, item_text: torch.Tensor | None,
                 model_config: DynLLMConfig, train_config: TrainConfig) -> str:
    """What a checkpoint was trained on and with; a resume must see the same value."""
    digest = hashlib.sha256(log.fingerprint().encode())
    for tensor in (None if profiles is None else profiles.vectors, item_text):
        if tensor is not None:
            digest.update(tensor.detach().cpu().numpy().tobytes())
    if profiles is not None:
        digest.update(profiles.user_idx.tobytes() + profiles.as_of.tobytes())
    settings = {**asdict(model_config), **asdict(train_config)}
    for volatile in ("epochs", "patience", "device", "memory_device", "eval_chunk"):
        settings.pop(volatile)  # may change on resume without changing what is learnt
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _save(path: Path, payload: dict) -> None:
    # Write then rename, so an interruption never leaves a half-written checkpoint.
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("kind") != "dynllm-checkpoint":
        raise CheckpointError(f"{path} is not a DynLLM checkpoint")
    return payload


def model_from_checkpoint(
    path: Path,
    log: EventLog,
    item_text: torch.Tensor | None = None,
    profiles: ProfileIndex | None = None,
    device: str = "cpu",
) -> tuple[DynLLM, NodeMemory, dict]:
    """Rebuild a trained model (and its memory as saved: after validation) for evaluation,
    replay or recommendations. Refuses a checkpoint whose interaction data has changed."""
    saved = load_checkpoint(path)
    if saved.get("data_fingerprint") != log.fingerprint():
        raise CheckpointError(
            f"the interactions changed since checkpoint {path} was written; retrain first")
    config = DynLLMConfig(**{**saved["model_config"],
                             "facets": tuple(saved["model_config"]["facets"])})
    if not config.no_profiles and profiles is None:
        raise CheckpointError("this checkpoint was trained with profiles; pass them")
    model = DynLLM(config, log.n_users, log.n_items, item_text,
                   None if config.no_profiles else profiles.dim)
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {exc}") from exc
    model.to(resolve_device(device))
    memory = model.new_memory()
    memory.load_state_dict(saved["memory"])
    return model, memory, saved


def _build_model(log: EventLog, split: Split, item_text: torch.Tensor | None,
                 profiles: ProfileIndex | None, config: DynLLMConfig,
                 device: torch.device) -> DynLLM:
    model = DynLLM(config, log.n_users, log.n_items, item_text,
                   None if config.no_profiles else profiles.dim)
    model.set_gap_stats(user_gaps(log, split.train))
    return model.to(device)


def train(
    log: EventLog,
    item_text: torch.Tensor | None = None,
    profiles: ProfileIndex | None = None,
    model_config: DynLLMConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
) -> TrainResult:
    """Train DynLLM; return the per-epoch history and the best model's test metrics.

    Without profiles the model is trained with no_profiles=True (there is nothing to attend to).
    `should_stop` is polled between batches: a cancelled run keeps its best checkpoint, and a
    partial epoch is never saved. lr defaults to 1e-3 rather than the authors' 5e-5, which with
    the tens of epochs an analyst waits for barely moves the weights."""
    model_config = model_config or DynLLMConfig()
    cfg = train_config or TrainConfig()
    if profiles is None and not model_config.no_profiles:
        model_config = model_config.ablation("no_profiles")
    if len(log) == 0:
        raise NotEnoughEventsError("there are no interactions to train on")
    if log.n_items < 2:
        raise NotEnoughEventsError("training needs at least two distinct items")
    split = chronological_split(log, cfg.train_frac, cfg.val_frac)
    device = resolve_device(cfg.device)
    fingerprint = _fingerprint(log, profiles, item_text, model_config, cfg)

    torch.manual_seed(cfg.seed)
    model = _build_model(log, split, item_text, profiles, model_config, device)
    # fused: the same Adam update in one pass per tensor (the default's several passes over
    # a large item table dominated a step on CPU); CPU and CUDA have the fused kernel.
    optimizer = torch.optim.Adam(model.param_groups(cfg.lr),
                                 fused=device.type in ("cpu", "cuda") or None)
    memory = model.new_memory(cfg.memory_device)
    finder = NeighborFinder(log)
    history: list[EpochRecord] = []
    best_epoch, best_value, start_epoch = None, -1.0, 1
    if resume_from is not None:
        saved = load_checkpoint(resume_from)
        if saved["fingerprint"] != fingerprint:
            raise CheckpointError(
                "the data, profiles or settings changed since this checkpoint was written; "
                "refusing to resume (start a new run instead)")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        history = [EpochRecord(**r) for r in saved["history"]]
        best_epoch, best_value = saved["best_epoch"], saved["best_value"]
        start_epoch = saved["epoch"] + 1

    if checkpoint_dir is None and resume_from is not None:
        checkpoint_dir = Path(resume_from) if Path(resume_from).is_dir() else Path(
            resume_from).parent
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    train_batches = time_batches(log, split.train, cfg.batch_size)
    val_batches = time_batches(log, split.val, cfg.batch_size)

    def report(stage: str, epoch: int) -> Callable:
        def on_batch(view) -> None:
            if progress is not None:
                progress(Progress(stage, epoch, view.index + 1, view.n_batches, view.loss))
        return on_batch

    status = "completed"
    for epoch in range(start_epoch, cfg.epochs + 1):
        if best_epoch is not None and epoch - best_epoch > cfg.patience:
            status = "early_stopped"
            break
        started = time.perf_counter()
        # Seeds derived from (seed, epoch) make a resumed run repeat an uninterrupted one.
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        memory.reset()
        trained = run_batches(model, memory, finder, log, train_batches, profiles,
                              optimizer=optimizer, rng=rng, reg=cfg.reg, grad_clip=cfg.grad_clip,
                              on_batch=report("train", epoch), should_stop=should_stop,
                              epoch=epoch)
        if should_stop is not None and should_stop():
            status = "cancelled"
            break
        val = run_batches(model, memory, finder, log, val_batches, profiles,
                          candidates={"full": None}, chunk=cfg.eval_chunk,
                          on_batch=report("val", epoch), should_stop=should_stop)
        if should_stop is not None and should_stop():
            status = "cancelled"
            break
        val_metrics = metrics_from_ranks(val.ranks["full"], cfg.ks)
        record = EpochRecord(epoch, trained.mean_loss, val_metrics,
                             time.perf_counter() - started)
        history.append(record)
        improved = val_metrics[STOP_METRIC] > best_value
        if improved:
            best_epoch, best_value = epoch, val_metrics[STOP_METRIC]
        if ckpt_dir is not None:
            payload = {
                "kind": "dynllm-checkpoint", "fingerprint": fingerprint, "epoch": epoch,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "memory": memory.state_dict(), "history": [asdict(r) for r in history],
                "best_epoch": best_epoch, "best_value": best_value,
                "model_config": asdict(model_config), "train_config": asdict(cfg),
                "n_users": log.n_users, "n_items": log.n_items,
                "data_fingerprint": log.fingerprint(),
            }
            _save(ckpt_dir / f"epoch-{epoch:03d}.pt", payload)
            _save(ckpt_dir / "last.pt", payload)
            if improved:
                _save(ckpt_dir / "best.pt", payload)
            stale = ckpt_dir / f"epoch-{epoch - cfg.keep_epoch_checkpoints:03d}.pt"
            stale.unlink(missing_ok=True)
        elif improved:
            best_state = ({k: v.detach().clone() for k, v in model.state_dict().items()},
                          memory.state_dict())
        if progress is not None:
            progress(Progress("epoch", epoch, len(history), cfg.epochs, record.loss, val_metrics))

    result = TrainResult(history, best_epoch, status, split=split)
    if best_epoch is None:
        return result
    # Test the best model, continuing from the memory it had after validation.
    if ckpt_dir is not None:
        best = load_checkpoint(ckpt_dir / "best.pt")
        model.load_state_dict(best["model"])
        memory.load_state_dict(best["memory"])
        result.checkpoint = ckpt_dir / "best.pt"
    else:
        model.load_state_dict(best_state[0])
        memory.load_state_dict(best_state[1])
    if status != "cancelled":
        result.test = evaluate(model, memory, finder, log, split, profiles, ks=cfg.ks,
                               batch_size=cfg.batch_size, chunk=cfg.eval_chunk,
                               progress=progress)
    result.model, result.memory = model, memory
    return result


def evaluate(
    model: DynLLM,
    memory: NodeMemory | None,
    finder: NeighborFinder,
    log: EventLog,
    split: Split,
    profiles: ProfileIndex | None = None,
    *,
    ks: tuple[int, ...] = DEFAULT_KS,
    batch_size: int = 2048,
    chunk: int = 1024,
    progress: Callable[[Progress], None] | None = None,
) -> dict:
    """Test metrics under every protocol ({"full": {...}, "paper": {...}, "exclude_seen": ...}),
    each with repeat/explore columns (models.evaluation.protocols.part_metrics).

    `memory` must be the state after the validation part; None replays train and validation
    (scoring nothing) to rebuild it first."""
    if memory is None:
        memory = model.new_memory()
        with torch.no_grad():
            run_batches(model, memory, finder, log,
                        time_batches(log, range(0, split.test.start), batch_size), profiles)

    def on_batch(view) -> None:
        if progress is not None:
            progress(Progress("test", 0, view.index + 1, view.n_batches))

    out = run_batches(model, memory, finder, log, time_batches(log, split.test, batch_size),
                      profiles, candidates=standard_protocols(log, split), chunk=chunk,
                      on_batch=on_batch)
    return part_metrics(out.ranks, log, split.test, ks)
