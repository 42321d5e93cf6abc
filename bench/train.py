"""Training and evaluation speed on the full Online Retail workspace (or any workspace with
--db), against the previous path and the way the authors' code works, measured in the same run.

    .venv/bin/python bench/train.py [--epochs 1] [--eval-events 20000] [--data PATH]
        [--db WORKSPACE] [--rows ours,before,loop-finder,authors] [--device cpu|cuda]
        [--threads N] [--json OUT]

Rows:
  - one training epoch (train part, then validation scoring), up to four ways:
      ours: each distinct (node, time) query embedded once per batch, the CSR neighbour finder
        (models.data.neighbors.NeighborFinder), the re-associated temporal attention
        (models.network.graph_attention), evaluation batches taking all items from an ItemTable
        (models.network.item_table) and scoring each distinct (user, time) row once
        (models.training.stream.ranks_of_shared_rows);
      before: the path before issue #14 (tests.models.reference_attention.previous_paths):
        every key slot through nn.MultiheadAttention, all items re-embedded at every
        evaluation batch, every event's row scored;
      ours with only the finder swapped for the per-node Python loop
        (tests.reference_graph.LoopNeighborFinder), to show what the finder alone is worth;
      the authors' way: the previous path plus one query per event
        (tests.reference_graph.one_query_per_event), the per-node loop finder, and the
        validation ranked per event with a Python dict of item scores and heapq.nlargest(50)
        (bench.reference_ranking.heapq_ranks, as in their utils/evaluation.py; their process
        pool has cpu_count() // 5 = 0 workers on a 2-core machine, so it runs in this process);
    each with its train and validation seconds, the process CPU seconds (the work, whatever
    else shares the machine), the test evaluation after the epochs, and on CUDA the peak GPU
    memory (torch.cuda.max_memory_allocated);
  - full-ranking evaluation of test events on the trained model's item matrix and the same user
    rows: chunked torch ranking against a per-event numpy loop
    (bench.reference_ranking.loop_ranks) and against the authors' per-event dict + heapq ranking;
  - events per second and the process's peak memory.
Targets (issue #4): >= 5x per epoch, >= 20x evaluation, < 4 GB peak. Issue #14: a Complete
Journey epoch (--db on its workspace, 1.46M events, 68k items) under 2 minutes.
--json writes the epoch rows as JSON (bench/gpu_check.sh builds its table from them).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


ROWS = ("ours", "before", "loop-finder", "authors")


@contextmanager
def _authors_ranking():
    """The validation ranked per event with a dict of item scores and heapq (their way)."""
    import torch

    import models.training.stream as stream
    from bench.reference_ranking import heapq_ranks

    saved = stream.ranks_of_shared_rows

    def ranks(rows, same_as, item_matrix, true, protocols, chunk=1024, adjust=None):
        # The authors' ranking knows one candidate set for all events (or none); per-event
        # protocols (exclude-seen, after the epochs) stay on ours.
        theirs = {name: cand for name, cand in protocols.items()
                  if cand is None or torch.is_tensor(cand)}
        rest = {name: cand for name, cand in protocols.items() if name not in theirs}
        out = saved(rows, same_as, item_matrix, true, rest, chunk, adjust) if rest else {}
        for name, cand in theirs.items():
            out[name] = torch.as_tensor(heapq_ranks(
                rows.cpu().numpy(), item_matrix.cpu().numpy(), true.cpu().numpy(),
                None if cand is None else cand.cpu().numpy()), dtype=torch.float64)
        return {name: out[name] for name in protocols}
    stream.ranks_of_shared_rows = ranks
    try:
        yield
    finally:
        stream.ranks_of_shared_rows = saved


@contextmanager
def _loop_finder():
    import models.training.loop as training
    from tests.reference_graph import LoopNeighborFinder

    saved = training.NeighborFinder
    training.NeighborFinder = LoopNeighborFinder
    try:
        yield
    finally:
        training.NeighborFinder = saved


def _paths(row: str) -> ExitStack:
    """The slow parts swapped in for one row."""
    from tests.models.reference_attention import previous_paths
    from tests.reference_graph import one_query_per_event

    stack = ExitStack()
    if row in ("before", "authors"):
        stack.enter_context(previous_paths())
    if row in ("loop-finder", "authors"):
        stack.enter_context(_loop_finder())
    if row == "authors":
        stack.enter_context(one_query_per_event())
        stack.enter_context(_authors_ranking())
    return stack


def _epoch_row(data, epochs: int, row: str, device: str) -> tuple[dict, object]:
    """One training run (no profiles) with the given paths: the epochs' seconds split into
    the train and validation parts, CPU seconds, the test evaluation after them, peak GPU
    memory on CUDA."""
    import torch

    from models.network.dynllm import DynLLMConfig
    from models.training.loop import TrainConfig, train

    marks: dict[str, float] = {"train": 0.0, "val": 0.0}
    last = [time.perf_counter()]

    def progress(p) -> None:
        now = time.perf_counter()
        if p.stage in ("train", "val"):
            marks[p.stage] += now - last[0]
        if p.stage == "epoch":
            marks["epoch_end"], marks["epoch_cpu"] = now, time.process_time()
        last[0] = now

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cpu = time.process_time()
    with _paths(row):
        result = train(data.log, data.item_text, None, DynLLMConfig(no_profiles=True),
                       TrainConfig(epochs=epochs, device=device, patience=epochs),
                       checkpoint_dir=None, progress=progress)
        if device == "cuda":
            torch.cuda.synchronize()
    test_s = time.perf_counter() - marks.get("epoch_end", last[0])  # the test part
    n = max(1, len(result.epochs))
    epoch_s = sum(e.seconds for e in result.epochs) / n
    return {
        "row": row, "device": device, "epochs": len(result.epochs),
        "epoch_s": epoch_s, "train_s": marks["train"] / n, "val_s": marks["val"] / n,
        "cpu_s": (marks.get("epoch_cpu", cpu) - cpu) / n, "test_eval_s": test_s,
        "events_per_s": (len(result.split.train) + len(result.split.val)) / epoch_s,
        "peak_gpu_gb": (torch.cuda.max_memory_allocated() / 1024**3
                        if device == "cuda" else None),
        "val_recall@10": result.epochs[-1].val["recall@10"] if result.epochs else None,
    }, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-events", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=DATA, help="an Online Retail file")
    parser.add_argument("--db", type=Path, help="an existing workspace instead of --data")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated epoch rows to run, of {', '.join(ROWS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="write the epoch rows here as JSON")
    args = parser.parse_args()
    rows_asked = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not rows_asked or set(rows_asked) - set(ROWS):
        parser.error(f"--rows: choose from {', '.join(ROWS)}, not {args.rows!r}")
    if args.db is not None and not args.db.exists():
        parser.error(f"--db: no workspace at {args.db}")

    import numpy as np
    import torch

    from bench.reference_ranking import heapq_ranks, loop_ranks
    from dynllm_tui.jobs.workspace_data import load_workspace_data
    from models.data.neighbors import NeighborFinder
    from models.evaluation.metrics import ranks_in_chunks
    from models.training.loop import resolve_device
    from storage.workspace import Workspace

    resolve_device(args.device)  # a clear line when CUDA was asked for and is not there
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.db is not None:
        with Workspace.open(args.db) as ws:
            data = load_workspace_data(ws, use_profiles=False)
        name = args.db.name
    else:
        from storage.importer import run_import
        from storage.presets import preset_spec

        with tempfile.TemporaryDirectory() as tmp, Workspace.open(Path(tmp) / "ws.db") as ws:
            run_import(ws, preset_spec("online-retail", args.data))
            data = load_workspace_data(ws, use_profiles=False)
        name = "Online Retail"
    n_events = len(data.log)
    print(f"{name}: {n_events:,} events, {data.log.n_users:,} users, "
          f"{data.log.n_items:,} items; device {args.device}, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    # Warm-up (allocator, thread pool, first-touch pages, CUDA context) on a slice, so that
    # the first row measured does not pay for it.
    head = data.log.with_events(data.log.user_idx[:20_000], data.log.item_idx[:20_000],
                                data.log.ts[:20_000])
    _epoch_row(SimpleNamespace(log=head, item_text=None), 1, "ours", args.device)
    measured, result = [], None
    for row in rows_asked:
        figures, trained = _epoch_row(data, args.epochs, row, args.device)
        measured.append(figures)
        result = trained if row == "ours" or result is None else result
        print(f"  {row}: epoch {figures['epoch_s']:.1f} s (train {figures['train_s']:.1f}, "
              f"validation {figures['val_s']:.1f}), test evaluation "
              f"{figures['test_eval_s']:.1f} s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"data": name, "n_events": n_events,
                                         "rows": measured}, indent=1))
    train_events = len(result.split.train) + len(result.split.val)
    base = measured[0]["epoch_s"]

    # Evaluation: the same user rows and item matrix ranked three ways.
    model = result.model.eval()
    memory = result.memory
    finder = NeighborFinder(data.log)
    test = result.split.test
    picked = np.arange(test.start, min(test.stop, test.start + args.eval_events))
    users, items = data.log.user_idx[picked], data.log.item_idx[picked]
    with torch.no_grad():
        model.begin_batch(memory)  # fold in the messages the last batch left
        cut = float(data.log.ts[test.start])
        rows = torch.cat([
            model.user_embeddings(memory, finder, users[i : i + 2048],
                                  data.log.ts[picked][i : i + 2048], cut, None, None).embedding
            for i in range(0, len(picked), 2048)
        ])
        item_matrix = model.item_embeddings(memory, finder, np.arange(data.log.n_items), cut)
    start = time.perf_counter()
    fast_ranks = ranks_in_chunks(rows, item_matrix, torch.as_tensor(items)).cpu().numpy()
    if args.device == "cuda":
        torch.cuda.synchronize()
    eval_fast = time.perf_counter() - start
    slow_eval = "authors" in rows_asked  # the per-event rankers take minutes on 68k items
    if slow_eval:
        rows_np, items_np = rows.cpu().numpy(), item_matrix.cpu().numpy()
        start = time.perf_counter()
        numpy_ranks = loop_ranks(rows_np, items_np, items)
        eval_numpy = time.perf_counter() - start
        start = time.perf_counter()
        authors_ranks = heapq_ranks(rows_np, items_np, items)
        eval_authors = time.perf_counter() - start
        # float32 products summed in different orders can break near-ties differently.
        agree = float(np.mean(np.abs(fast_ranks - numpy_ranks) <= 1.0))
        top = fast_ranks <= 50
        agree_top = float(np.mean(np.abs(fast_ranks[top] - authors_ranks[top]) <= 1.0))

    w = 52
    labels = {"ours": "  ours (this version)",
              "before": "  before #14 (MHA per slot, all items per batch)",
              "loop-finder": "  ours with the per-node loop finder",
              "authors": "  authors' way (per event, loop finder, heapq)"}
    print(f"\n{'what':<{w}}{'seconds':>10}{'events/s':>11}{'vs first':>10}"
          f"{'train s':>9}{'valid. s':>9}{'CPU s':>8}")
    print(f"{'training epoch (train + validation):':<{w}}")
    for figures in measured:
        print(f"{labels[figures['row']]:<{w}}{figures['epoch_s']:>10.1f}"
              f"{train_events / figures['epoch_s']:>11,.0f}"
              f"{figures['epoch_s'] / base:>9.2f}x{figures['train_s']:>9.1f}"
              f"{figures['val_s']:>9.1f}{figures['cpu_s']:>8.1f}")
    print(f"{f'evaluation, {len(picked):,} test events, full ranking:':<{w}}")
    evaluations = [("  ours (chunked torch ranking)", eval_fast, "")]
    if slow_eval:
        evaluations += [("  per-event numpy loop", eval_numpy, ""),
                        ("  authors' way (per-event dict + heapq.nlargest)", eval_authors,
                         "  >= 20x")]
    for label, seconds, target in evaluations:
        print(f"{label:<{w}}{seconds:>10.2f}{len(picked) / seconds:>11,.0f}"
              f"{seconds / eval_fast:>9.1f}x{target}")
    print(f"{'peak memory of this process, GB':<{w}}{_peak_gb():>10.2f}{'':>21}  < 4 GB")
    if slow_eval:
        print(f"(ranks agree within one place: numpy loop {agree:.1%} of events; authors' "
              f"heapq {agree_top:.1%} of the events ours puts in the top 50)")
    full = result.test.get("full", {})
    print(f"(test Recall@10 after {args.epochs} epoch(s), no profiles: "
          f"{full.get('recall@10', float('nan')):.4f})")


if __name__ == "__main__":
    main()
