"""Training and evaluation speed on the full Online Retail workspace, against the way the
authors' code works, measured in the same run.

    .venv/bin/python bench/train.py [--epochs 1] [--eval-events 20000] [--data PATH]

Rows:
  - one training epoch (train part, then validation scoring), three ways:
      ours: each distinct (node, time) query embedded once per batch, the CSR neighbour finder
        (models.data.neighbors.NeighborFinder), chunked torch ranking
        (models.evaluation.metrics.ranks_in_chunks);
      ours with only the finder swapped for the per-node Python loop
        (tests.reference_graph.LoopNeighborFinder), to show what the finder alone is worth;
      the authors' way: one query per event (tests.reference_graph.one_query_per_event), the
        per-node loop finder, and the validation ranked per event with a Python dict of item
        scores and heapq.nlargest(50) (bench.reference_ranking.heapq_ranks, as in their
        utils/evaluation.py; their process pool has cpu_count() // 5 = 0 workers on a 2-core
        machine, so it runs in this process);
  - full-ranking evaluation of test events on the trained model's item matrix and the same user
    rows: chunked torch ranking against a per-event numpy loop
    (bench.reference_ranking.loop_ranks) and against the authors' per-event dict + heapq ranking;
  - events per second and the process's peak memory.
Targets (issue #4): >= 5x per epoch, >= 20x evaluation, < 4 GB peak.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


@contextmanager
def _authors_way(share_queries: bool, loop_finder: bool, heapq_ranking: bool):
    """Swap in the slow parts for the duration of one training run."""
    import numpy as np
    import torch

    import models.training.loop as training
    import models.training.stream as stream
    from bench.reference_ranking import heapq_ranks
    from tests.reference_graph import LoopNeighborFinder, one_query_per_event

    saved = (training.NeighborFinder, stream.protocol_ranks_in_chunks)
    if loop_finder:
        training.NeighborFinder = LoopNeighborFinder
    if heapq_ranking:
        ours = stream.protocol_ranks_in_chunks

        def ranks(rows, item_matrix, true, protocols, chunk=1024, adjust=None):
            # The authors' ranking knows one candidate set for all events (or none); per-event
            # protocols (exclude-seen, after the epochs) stay on ours.
            theirs = {name: cand for name, cand in protocols.items()
                      if cand is None or torch.is_tensor(cand)}
            rest = {name: cand for name, cand in protocols.items() if name not in theirs}
            out = ours(rows, item_matrix, true, rest, chunk, adjust) if rest else {}
            for name, cand in theirs.items():
                out[name] = torch.as_tensor(heapq_ranks(
                    rows.cpu().numpy(), item_matrix.cpu().numpy(), true.cpu().numpy(),
                    None if cand is None else cand.cpu().numpy()), dtype=torch.float64)
            return {name: out[name] for name in protocols}
        stream.protocol_ranks_in_chunks = ranks
    try:
        with one_query_per_event() if not share_queries else nullcontext():
            yield np
    finally:
        training.NeighborFinder, stream.protocol_ranks_in_chunks = saved


def _epoch_seconds(data, epochs: int, **slow_parts) -> tuple[float, object]:
    from models.network.dynllm import DynLLMConfig
    from models.training.loop import TrainConfig, train

    with _authors_way(**slow_parts):
        result = train(data.log, data.item_text, None, DynLLMConfig(no_profiles=True),
                       TrainConfig(epochs=epochs, device="cpu", patience=epochs),
                       checkpoint_dir=None)
    # The epochs' own clocks (train + validation), without the final test evaluation.
    return sum(e.seconds for e in result.epochs) / max(1, len(result.epochs)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-events", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    import numpy as np
    import torch

    from bench.reference_ranking import heapq_ranks, loop_ranks
    from dynllm_tui.jobs.workspace_data import load_workspace_data
    from models.data.neighbors import NeighborFinder
    from models.evaluation.metrics import ranks_in_chunks
    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp, Workspace.open(Path(tmp) / "ws.db") as ws:
        run_import(ws, preset_spec("online-retail", args.data))
        data = load_workspace_data(ws, use_profiles=False)
    n_events = len(data.log)
    print(f"Online Retail: {n_events:,} events, {data.log.n_users:,} users, "
          f"{data.log.n_items:,} items; torch threads {torch.get_num_threads()}")

    fast = dict(share_queries=True, loop_finder=False, heapq_ranking=False)
    # Warm-up (allocator, thread pool, first-touch pages) on a slice, so that the first row
    # measured does not pay for it.
    head = data.log.with_events(data.log.user_idx[:20_000], data.log.item_idx[:20_000],
                                data.log.ts[:20_000])
    _epoch_seconds(SimpleNamespace(log=head, item_text=None), 1, **fast)
    fast_s, result = _epoch_seconds(data, args.epochs, **fast)
    finder_s, _ = _epoch_seconds(data, args.epochs, **{**fast, "loop_finder": True})
    authors_s, _ = _epoch_seconds(data, args.epochs, share_queries=False, loop_finder=True,
                                  heapq_ranking=True)
    train_events = len(result.split.train) + len(result.split.val)

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
    fast_ranks = ranks_in_chunks(rows, item_matrix, torch.as_tensor(items)).numpy()
    eval_fast = time.perf_counter() - start
    start = time.perf_counter()
    numpy_ranks = loop_ranks(rows.numpy(), item_matrix.numpy(), items)
    eval_numpy = time.perf_counter() - start
    start = time.perf_counter()
    authors_ranks = heapq_ranks(rows.numpy(), item_matrix.numpy(), items)
    eval_authors = time.perf_counter() - start
    # float32 products summed in different orders can break near-ties differently.
    agree = float(np.mean(np.abs(fast_ranks - numpy_ranks) <= 1.0))
    top = fast_ranks <= 50
    agree_top = float(np.mean(np.abs(fast_ranks[top] - authors_ranks[top]) <= 1.0))

    w = 52
    print(f"\n{'what':<{w}}{'seconds':>10}{'events/s':>11}{'ours is':>10}  target")
    print(f"{'training epoch (train + validation):':<{w}}")
    for label, seconds, target in (
            ("  ours (shared queries, CSR finder, torch ranking)", fast_s, ""),
            ("  ours with the per-node loop finder", finder_s, ""),
            ("  authors' way (per event, loop finder, heapq)", authors_s, "  >= 5x")):
        ratio = seconds / fast_s
        print(f"{label:<{w}}{seconds:>10.1f}{train_events / seconds:>11,.0f}"
              f"{ratio:>9.2f}x{target}")
    print(f"{f'evaluation, {len(picked):,} test events, full ranking:':<{w}}")
    for label, seconds, target in (
            ("  ours (chunked torch ranking)", eval_fast, ""),
            ("  per-event numpy loop", eval_numpy, ""),
            ("  authors' way (per-event dict + heapq.nlargest)", eval_authors, "  >= 20x")):
        print(f"{label:<{w}}{seconds:>10.2f}{len(picked) / seconds:>11,.0f}"
              f"{seconds / eval_fast:>9.1f}x{target}")
    print(f"{'peak memory of this process, GB':<{w}}{_peak_gb():>10.2f}{'':>21}  < 4 GB")
    print(f"(ranks agree within one place: numpy loop {agree:.1%} of events; authors' heapq "
          f"{agree_top:.1%} of the events ours puts in the top 50)")
    full = result.test.get("full", {})
    print(f"(test Recall@10 after {args.epochs} epoch(s), no profiles: "
          f"{full.get('recall@10', float('nan')):.4f})")


if __name__ == "__main__":
    main()
