"""Test metrics of a trained DynLLM recomputed on a path independent of the evaluation code:
the model's own embeddings batch by batch, then every rank counted with numpy comparisons
(half/half tie rule) and the metric definitions written out (tests/reference_ranking.py).

Shares with production only the network's public calls (begin_batch, user_embeddings,
item_embeddings, end_batch); it does not use run_batches, models.evaluation.metrics or
models.evaluation.protocols, so a mistake there shows as a disagreement with what training
reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data.events import EventLog, Split, chronological_split, time_batches
from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.network.dynllm import DynLLM
from models.network.memory import NodeMemory
from tests.reference_ranking import brute_force_metrics

COMPARED = ("recall@10", "ndcg@10", "mrr")


def numpy_ranks(scores: np.ndarray, true_items: np.ndarray,
                competing: np.ndarray | None = None) -> np.ndarray:
    """1 + #competitors scoring higher + #competitors scoring level / 2; the true item always
    competes and never counts against itself."""
    rows = np.arange(len(true_items))
    true_scores = scores[rows, true_items][:, None]
    others = np.ones(scores.shape, dtype=bool) if competing is None else np.broadcast_to(
        competing, scores.shape).copy()
    others[rows, true_items] = False
    higher = ((scores > true_scores) & others).sum(1)
    level = ((scores == true_scores) & others).sum(1)
    return 1.0 + higher + level / 2.0


def _profile_inputs(model: DynLLM, profiles: ProfileIndex | None, users: np.ndarray,
                    cut: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if model.config.no_profiles:
        return None, None
    return profiles.lookup(users, np.full(len(users), cut))


def replay_test_metrics(
    model: DynLLM,
    memory: NodeMemory | None,
    log: EventLog,
    split: Split,
    profiles: ProfileIndex | None = None,
    *,
    batch_size: int,
    chunk: int = 1024,
) -> dict[str, dict[str, Any]]:
    """{"full": metrics, "paper": metrics} over split.test, continuing from `memory` (the state
    after validation; None: rebuilt by replaying train and validation with this model).
    `chunk` is the evaluation's row block: float32 products summed over row blocks of another
    size may differ in the last bit and break a near-tie the other way."""
    finder = NeighborFinder(log)
    model.eval()
    if memory is None:
        memory = model.new_memory()
        with torch.no_grad():
            for events in time_batches(log, range(0, split.test.start), batch_size):
                users = log.user_idx[events.start:events.stop]
                items = log.item_idx[events.start:events.stop]
                times = log.ts[events.start:events.stop]
                model.begin_batch(memory)
                facets, mask = _profile_inputs(model, profiles, users, float(times[0]))
                out = model.user_embeddings(memory, finder, users, times, float(times[0]),
                                            facets, mask)
                needed, inverse = np.unique(items, return_inverse=True)
                item_rows = model.item_embeddings(memory, finder, needed, float(times[0]))
                model.end_batch(memory, users, items, times, out.embedding,
                                item_rows[torch.as_tensor(inverse)])
    # The paper's protocol: items seen in the validation or test part compete.
    paper = np.isin(np.arange(log.n_items), np.unique(log.item_idx[split.val.start:]))
    ranks: dict[str, list[np.ndarray]] = {"full": [], "paper": []}
    with torch.no_grad():
        for events in time_batches(log, split.test, batch_size):
            users = log.user_idx[events.start:events.stop]
            items = log.item_idx[events.start:events.stop]
            times = log.ts[events.start:events.stop]
            cut = float(times[0])
            model.begin_batch(memory)
            facets, mask = _profile_inputs(model, profiles, users, cut)
            out = model.user_embeddings(memory, finder, users, times, cut, facets, mask)
            item_matrix = model.item_embeddings(memory, finder, np.arange(log.n_items), cut)
            for lo in range(0, len(users), chunk):
                scores = out.embedding[lo:lo + chunk] @ item_matrix.T
                if out.repeat is not None:  # each past purchase adds its weight to its item
                    scores.scatter_add_(1, out.repeat.items[lo:lo + chunk],
                                        out.repeat.weights[lo:lo + chunk])
                scores = scores.cpu().numpy()
                true = items[lo:lo + chunk]
                ranks["full"].append(numpy_ranks(scores, true))
                ranks["paper"].append(numpy_ranks(scores, true, paper))
            model.end_batch(memory, users, items, times, out.embedding,
                            item_matrix[torch.as_tensor(items)])
    return {name: brute_force_metrics(np.concatenate(parts), ks=(10,))
            for name, parts in ranks.items()}


def assert_matches_reported(reported: dict, reference: dict, n_test: int) -> None:
    """Training's test metrics equal the reference to 1e-6, under both protocols."""
    for protocol in ("full", "paper"):
        assert reported[protocol]["n_events"] == reference[protocol]["n_events"] == n_test
        for name in COMPARED:
            assert abs(reported[protocol][name] - reference[protocol][name]) <= 1e-6, (
                protocol, name, reported[protocol][name], reference[protocol][name])


def check_run_against_reference(checkpoint: str | Path, log: EventLog,
                                item_text: torch.Tensor | None,
                                profiles: ProfileIndex | None, reported: dict) -> dict:
    """Rebuilds the run's best model and its memory after validation from `checkpoint` and
    checks the test metrics it reported; returns the reference."""
    from models.training.loop import model_from_checkpoint

    model, memory, saved = model_from_checkpoint(Path(checkpoint), log, item_text, profiles)
    train_config = saved["train_config"]
    split = chronological_split(log, train_config["train_frac"], train_config["val_frac"])
    reference = replay_test_metrics(model, memory, log, split, profiles,
                                    batch_size=train_config["batch_size"],
                                    chunk=train_config["eval_chunk"])
    assert_matches_reported(reported, reference, len(split.test))
    return reference


def check_workspace_run(db: str | Path, checkpoint: str | Path, reported: dict,
                        with_profiles: bool) -> dict:
    """check_run_against_reference for a run a training job recorded in the workspace `db`."""
    from dynllm_tui.jobs.workspace_data import load_workspace_data
    from storage.workspace import Workspace

    with Workspace.open(db, create=False) as ws:
        data = load_workspace_data(ws, use_profiles=with_profiles)
    return check_run_against_reference(checkpoint, data.log, data.item_text, data.profiles,
                                       reported)
