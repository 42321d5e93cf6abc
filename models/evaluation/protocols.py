"""Evaluation shared by DynLLM and the baselines: the paper's candidate set, a leakage-free
batch loop for any scorer, and the model report (rows = methods, columns = metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from models.data.events import EventLog, Split, time_batches
from models.evaluation.metrics import DEFAULT_KS, metrics_from_ranks, protocol_ranks

RANK_ROWS = 512
REPORT_COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10", "mrr")


class Scorer(Protocol):
    """A recommender that scores all items for a batch of (user, time) queries using only the
    events before `cut_index` (all of which are strictly before `cut_time`)."""

    name: str

    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:  # [B, n_items]
        ...


def paper_candidates(log: EventLog, split: Split) -> torch.Tensor:
    """The authors' protocol: only items that occur in the validation or test part compete."""
    mask = np.zeros(log.n_items, dtype=bool)
    mask[log.item_idx[split.val.start:split.test.stop]] = True
    return torch.as_tensor(mask)


def evaluate_scorer(
    scorer: Scorer,
    log: EventLog,
    split: Split,
    *,
    batch_size: int = 2048,
    ks: tuple[int, ...] = DEFAULT_KS,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """{"full": metrics, "paper": metrics} of `scorer` on the test part, batch by batch in time
    order exactly like DynLLM's evaluation."""
    protocols = {"full": None, "paper": paper_candidates(log, split)}
    ranks = {name: [] for name in protocols}
    for events in time_batches(log, split.test, batch_size):
        if should_stop is not None and should_stop():
            break
        users = log.user_idx[events.start:events.stop]
        true = torch.as_tensor(log.item_idx[events.start:events.stop])
        scores = scorer.scores(users, log.ts[events.start:events.stop], events.start,
                               float(log.ts[events.start]))
        # Row blocks keep the sign matrix small (a batch of float64 scores over 68k items is
        # already 1 GB).
        for lo in range(0, len(scores), RANK_ROWS):
            block = protocol_ranks(scores[lo:lo + RANK_ROWS], true[lo:lo + RANK_ROWS], protocols)
            for name, r in block.items():
                ranks[name].append(r)
    return {name: metrics_from_ranks(torch.cat(r), ks) for name, r in ranks.items()}


def model_report(results: dict[str, dict]) -> list[dict]:
    """Rows {method, protocol, metric...} from {method: {"full": {...}, "paper": {...}}}."""
    rows = []
    for protocol in ("full", "paper"):
        for method, by_protocol in results.items():
            if protocol in by_protocol:
                rows.append({"method": method, "protocol": protocol, **by_protocol[protocol]})
    return rows


def format_report(rows: list[dict], columns: tuple[str, ...] = REPORT_COLUMNS) -> str:
    """A plain-text table per protocol; the best value of each column is marked with '*'."""
    lines = []
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        part = [r for r in rows if r["protocol"] == protocol]
        label = "full ranking (all items)" if protocol == "full" else (
            "paper protocol (items seen in validation or test)")
        width = max(len("method"), *(len(r["method"]) for r in part))
        lines.append(f"{label}, {part[0].get('n_events', '?')} test events")
        lines.append("method".ljust(width) + "".join(f"{c:>12}" for c in columns))
        best = {c: max(r[c] for r in part) for c in columns}
        for r in part:
            cells = "".join(
                f"{r[c]:>11.4f}{'*' if r[c] == best[c] else ' '}" for c in columns)
            lines.append(r["method"].ljust(width) + cells)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
