"""Evaluation shared by DynLLM and the baselines: the protocols (full ranking, the paper's
candidate set, exclude-seen), repeat flags and ratios, a leakage-free batch loop for any scorer,
and the model report (rows = methods, columns = metrics, repeat/explore columns beside them).

Repeat event: the user bought the same item at a strictly earlier time (same-time events are one
basket). Under exclude-seen, each event ranks its true item against the items its user had not
bought before the event; repeat events (whose item is by definition seen) are dropped from its
figures and counted ("n_excluded_repeat")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from models.data.events import EventLog, Split, time_batches
from models.evaluation.metrics import (
    DEFAULT_KS,
    Candidates,
    RowExclusions,
    protocol_ranks,
    split_metrics,
)

RANK_ROWS = 512
REPORT_COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10", "mrr",
                  "repeat:recall@20", "repeat:ndcg@20", "explore:recall@20", "explore:ndcg@20")
FULL, PAPER, EXCLUDE_SEEN = "full", "paper", "exclude_seen"
PROTOCOLS = (FULL, PAPER, EXCLUDE_SEEN)
# Below this share of repeat events in the training part, ranking the user's own past items
# wastes the top slots of every method that looks at them, so seen items are left out.
LOW_REPEAT_RATIO = 0.05
PROTOCOL_LABELS = {
    FULL: "full ranking (all items)",
    PAPER: "paper protocol (items seen in validation or test)",
    EXCLUDE_SEEN: "exclude-seen (items the user bought before the event are left out; "
                  "repeat events cannot be scored and are dropped, counted)",
}


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


def repeat_flags(log: EventLog, part: range) -> np.ndarray:
    """For each event of `part`: did its user buy its item at a strictly earlier time?"""
    if not len(part):
        return np.zeros(0, dtype=bool)
    key = log.user_idx[:part.stop] * np.int64(log.n_items) + log.item_idx[:part.stop]
    # The log is sorted by time, so the first occurrence of a pair is its earliest purchase.
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return log.ts[first][inverse[part.start:part.stop]] < log.ts[part.start:part.stop]


def repeat_ratio(log: EventLog, part: range) -> float | None:
    """Share of `part`'s events that are repeats (None for an empty part)."""
    return float(repeat_flags(log, part).mean()) if len(part) else None


def default_protocol(log: EventLog, split: Split) -> tuple[str, str]:
    """(protocol, why): exclude-seen when the training part's repeat ratio is below 5%."""
    ratio = repeat_ratio(log, split.train) or 0.0
    if ratio < LOW_REPEAT_RATIO:
        return EXCLUDE_SEEN, (f"exclude-seen is the default: the training part's repeat ratio "
                              f"{ratio:.1%} is below {LOW_REPEAT_RATIO:.0%}")
    return FULL, (f"full ranking is the default: the training part's repeat ratio {ratio:.1%} "
                  f"is at least {LOW_REPEAT_RATIO:.0%}")


def dataset_summary(log: EventLog, split: Split) -> dict:
    """What heads a report: repeat ratios of the whole log, the training and the test part,
    and the default protocol with its reason."""
    protocol, reason = default_protocol(log, split)
    return {"repeat_ratio": repeat_ratio(log, range(0, len(log))),
            "train_repeat_ratio": repeat_ratio(log, split.train),
            "test_repeat_ratio": repeat_ratio(log, split.test),
            "default_protocol": protocol, "default_reason": reason}


class SeenItems:
    """The exclude-seen protocol's per-event candidates: for each user, the distinct items with
    the time of their first purchase, so the items bought before any time are a prefix."""

    def __init__(self, log: EventLog):
        self.log = log
        key = log.user_idx * np.int64(log.n_items) + log.item_idx
        pairs, first = np.unique(key, return_index=True)
        users, items, times = pairs // log.n_items, pairs % log.n_items, log.ts[first]
        order = np.lexsort((times, users))
        self.items, self.times = items[order], times[order]
        self.offsets = np.searchsorted(users[order], np.arange(log.n_users + 1))

    def before(self, user: int, time: float) -> np.ndarray:
        """Items `user` bought strictly before `time`."""
        lo, hi = self.offsets[user], self.offsets[user + 1]
        return self.items[lo:lo + np.searchsorted(self.times[lo:hi], time, side="left")]

    def for_events(self, events: range) -> RowExclusions:
        users = self.log.user_idx[events.start:events.stop]
        times = self.log.ts[events.start:events.stop]
        starts = self.offsets[users]
        counts = np.array([np.searchsorted(self.times[s:e], t, side="left") for s, e, t in
                           zip(starts, self.offsets[users + 1], times, strict=True)],
                          dtype=np.int64)
        width = max(int(counts.max()) if len(counts) else 0, 1)
        cols = np.arange(width)
        mask = cols[None, :] < counts[:, None]
        idx = np.where(mask, self.items[np.minimum(starts[:, None] + cols[None, :],
                                                   len(self.items) - 1)], 0)
        return RowExclusions(torch.as_tensor(idx), torch.as_tensor(mask))


def standard_protocols(log: EventLog, split: Split) -> dict[str, torch.Tensor | SeenItems | None]:
    """Every protocol a report shows: full ranking, the paper's candidates, exclude-seen."""
    return {FULL: None, PAPER: paper_candidates(log, split), EXCLUDE_SEEN: SeenItems(log)}


def batch_protocols(protocols: dict, events: range) -> dict[str, Candidates]:
    """The protocols as `protocol_ranks` takes them for one batch (per-event ones resolved)."""
    return {name: c.for_events(events) if isinstance(c, SeenItems) else c
            for name, c in protocols.items()}


def part_metrics(ranks: dict[str, torch.Tensor], log: EventLog, part: range,
                 ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, dict]:
    """{protocol: metrics with repeat/explore columns} for ranks of `part`'s events in order
    (a shorter tensor, e.g. after a cancel, covers the first events)."""
    out = {}
    for name, r in ranks.items():
        flags = repeat_flags(log, range(part.start, part.start + len(r)))
        out[name] = split_metrics(r, flags, ks, explore_only=name == EXCLUDE_SEEN)
    return out


def distinct_query_scores(scorer: Scorer, log: EventLog,
                          events: range) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores of the batch's distinct (user, time) queries, each event's row in them).

    A scorer sees only the events before the batch start, so two events of one user at one time
    (a basket) ask the same question: scoring each query once is exact and, in a retail batch of
    2,048 events, about 8x fewer rows (a basket has ~20 lines)."""
    users = log.user_idx[events.start:events.stop]
    times = log.ts[events.start:events.stop]
    keys = np.rec.fromarrays([users, times])
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    scores = scorer.scores(users[first], times[first], events.start, float(times[0]))
    return scores, torch.as_tensor(inverse.ravel())


def evaluate_scorer(
    scorer: Scorer,
    log: EventLog,
    split: Split,
    *,
    batch_size: int = 2048,
    ks: tuple[int, ...] = DEFAULT_KS,
    should_stop: Callable[[], bool] | None = None,
    part: range | None = None,
    protocols: dict | None = None,
) -> dict:
    """{protocol: metrics} of `scorer` on the test part (or `part`, e.g. the validation part
    for tuning), batch by batch in time order exactly like DynLLM's evaluation. Default
    protocols: full, paper and exclude-seen."""
    return evaluate_scorers([scorer], log, split, batch_size=batch_size, ks=ks,
                            should_stop=should_stop, part=part, protocols=protocols)[0]


def evaluate_scorers(
    scorers: list[Scorer],
    log: EventLog,
    split: Split,
    *,
    batch_size: int = 2048,
    ks: tuple[int, ...] = DEFAULT_KS,
    should_stop: Callable[[], bool] | None = None,
    part: range | None = None,
    protocols: dict | None = None,
) -> list[dict]:
    """evaluate_scorer for several scorers in one pass over the batches, each scorer's
    figures exactly as alone: scorers that share work (TIFU-KNN's `with_alpha`) find it still
    cached for the batch at hand."""
    part = split.test if part is None else part
    protocols = standard_protocols(log, split) if protocols is None else protocols
    ranks = [{name: [] for name in protocols} for _ in scorers]
    for events in time_batches(log, part, batch_size):
        if should_stop is not None and should_stop():
            break
        true = torch.as_tensor(log.item_idx[events.start:events.stop])
        batch = batch_protocols(protocols, events)
        for scorer, out in zip(scorers, ranks, strict=True):
            scores, row_of = distinct_query_scores(scorer, log, events)
            # Row blocks keep the sign matrix small (a batch of float64 scores over 68k items
            # is already 1 GB).
            for lo in range(0, len(true), RANK_ROWS):
                rows = {name: c.rows(lo, lo + RANK_ROWS) if isinstance(c, RowExclusions)
                        else c for name, c in batch.items()}
                block = protocol_ranks(scores[row_of[lo:lo + RANK_ROWS]],
                                       true[lo:lo + RANK_ROWS], rows, overwrite=True)
                for name, r in block.items():
                    out[name].append(r)
    results = []
    for out in ranks:
        cat = {name: torch.cat(r) if r else torch.zeros(0, dtype=torch.float64)
               for name, r in out.items()}
        results.append(part_metrics(cat, log, part, ks))
    return results


def model_report(results: dict[str, dict], summary: dict | None = None) -> list[dict]:
    """Rows {method, protocol, metric...} from {method: {protocol: metrics, "choice": record?}},
    protocol by protocol; `summary` (dataset_summary) and a method's validation choice record
    ride along in each row, so a stored report is self-describing."""
    rows = []
    for protocol in PROTOCOLS:
        for method, by_protocol in results.items():
            if protocol in by_protocol:
                row = {"method": method, "protocol": protocol, **by_protocol[protocol],
                       **(summary or {})}
                if "choice" in by_protocol:
                    row["choice"] = by_protocol["choice"]
                rows.append(row)
    return rows


def short_name(column: str) -> str:
    """'explore:recall@20' -> 'exp R@20': table headers that fit a terminal."""
    prefix, _, metric = column.rpartition(":")
    name, _, k = metric.partition("@")
    short = {"recall": "R", "ndcg": "N", "hit": "H", "mrr": "MRR"}.get(name, name)
    return (f"{prefix[:3]} " if prefix else "") + short + (f"@{k}" if k else "")


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    if not isinstance(value, int | float):
        return "n/a"
    sd = row.get(f"{column}_sd")
    return f"{value:.4f}" if sd is None or row.get("n_seeds", 1) < 2 else f"{value:.4f}±{sd:.4f}"


def _percent(x: object) -> str:
    return f"{x:.1%}" if isinstance(x, int | float) else "n/a"


def report_header(rows: list[dict]) -> list[str]:
    """The lines that head a report: repeat ratios and the default protocol."""
    first = rows[0] if rows else {}
    if "repeat_ratio" not in first:
        return []
    return [f"repeat ratio {_percent(first['repeat_ratio'])} of all events (training part "
            f"{_percent(first.get('train_repeat_ratio'))}, test part "
            f"{_percent(first.get('test_repeat_ratio'))}); {first.get('default_reason', '')}"]


def events_line(protocol: str, row: dict) -> str:
    """'N test events: repeat a (x%), explore b (y%)', or what exclude-seen dropped."""
    n_rep, n_exp = row.get("n_repeat"), row.get("n_explore")
    if n_rep is None or n_exp is None:
        return f"{row.get('n_events', '?')} test events"
    if protocol == EXCLUDE_SEEN:
        return (f"{n_exp} explore events scored; {row.get('n_excluded_repeat', n_rep)} repeat "
                "events dropped (their item is seen by definition)")
    total = n_rep + n_exp
    return (f"{total} test events: repeat {n_rep} ({_percent(n_rep / total if total else None)})"
            f", explore {n_exp} ({_percent(n_exp / total if total else None)})")


def format_report(rows: list[dict], columns: tuple[str, ...] = REPORT_COLUMNS) -> str:
    """A plain-text table per protocol, headed by the repeat ratio and the default protocol.
    The best value of each column is marked '*', and '+' when it is significantly ahead of the
    runner-up by the seeds rule (models.evaluation.seeds); a part without events shows n/a."""
    from models.evaluation.seeds import SIGNIFICANCE_RULE, significantly_above

    lines = report_header(rows)
    default = rows[0].get("default_protocol") if rows else None
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        part = [r for r in rows if r["protocol"] == protocol]
        label = PROTOCOL_LABELS.get(protocol, protocol)
        if protocol == default:
            label += " [default]"
        width = max(len("method"), *(len(r["method"]) for r in part))
        cell_width = max(10, *(len(_cell(r, c)) + 2 for r in part for c in columns))
        lines.append(f"{label}, {events_line(protocol, part[0])}")
        lines.append("method".ljust(width) + "".join(f"{short_name(c):>{cell_width}}"
                                                     for c in columns))
        for r in part:
            cells = []
            for c in columns:
                others = [o for o in part if o is not r and isinstance(o.get(c), int | float)]
                value = r.get(c)
                best = isinstance(value, int | float) and all(value >= o[c] for o in others)
                mark = " "
                if best and len(part) > 1:
                    runner_up = max(others, key=lambda o, c=c: o[c], default=None)
                    ahead = runner_up is not None and significantly_above(r, runner_up, c)
                    mark = "+" if ahead else "*"
                cells.append(f"{_cell(r, c):>{cell_width - 1}}{mark}")
            lines.append(r["method"].ljust(width) + "".join(cells))
        lines.append("")
    choices = {r["method"]: r["choice"] for r in rows if r.get("choice")}
    for method, choice in choices.items():
        lines.append(f"{method}: chose {choice['chosen']} on validation {choice['metric']} "
                     f"{choice['validation']:.4f} (grid of {len(choice['grid'])})")
    n_seeds = max((r.get("n_seeds", 1) for r in rows), default=1)
    lines.append(f"seeds: {n_seeds}" + (f"; {SIGNIFICANCE_RULE}" if n_seeds > 1 else
                                         " (no spread: nothing is called significant)"))
    return "\n".join(lines).rstrip() + "\n"
