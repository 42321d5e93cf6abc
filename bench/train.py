"""Training and evaluation speed on the full Online Retail workspace, against the loop-based way
of the authors' code, measured in the same run.

    .venv/bin/python bench/train.py [--epochs 1] [--eval-events 20000] [--data PATH]

Rows:
  - one training epoch (train part, then validation scoring) with the vectorised CSR neighbour
    finder, and the same epoch with the per-node Python-loop finder (models.neighbors.
    LoopNeighborFinder, swapped in for the whole epoch);
  - full-ranking evaluation of test events: chunked torch ranking (models.metrics.
    ranks_in_chunks) against one Python iteration per event (models.metrics.loop_ranks), on the
    trained model's item matrix and the same user rows;
  - events per second and the process's peak memory.
Targets (issue #4): >= 5x per epoch, >= 20x evaluation, < 4 GB peak.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _epoch_seconds(data, finder_class, epochs: int) -> tuple[float, object]:
    import models.training as training
    from models.dynllm import DynLLMConfig
    from models.training import TrainConfig, train

    original = training.NeighborFinder
    training.NeighborFinder = finder_class
    try:
        start = time.perf_counter()
        result = train(data.log, data.item_text, None, DynLLMConfig(no_profiles=True),
                       TrainConfig(epochs=epochs, device="cpu", patience=epochs),
                       checkpoint_dir=None)
        seconds = (time.perf_counter() - start) / max(1, len(result.epochs))
    finally:
        training.NeighborFinder = original
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-events", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    import numpy as np
    import torch

    from dynllm_tui.train_job import load_workspace_data
    from models.metrics import loop_ranks, ranks_in_chunks
    from models.neighbors import LoopNeighborFinder, NeighborFinder
    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp, Workspace.open(Path(tmp) / "ws.db") as ws:
        run_import(ws, preset_spec("online-retail", args.data))
        data = load_workspace_data(ws, use_profiles=False)
    n_events = len(data.log)
    print(f"Online Retail: {n_events:,} events, {data.log.n_users:,} users, "
          f"{data.log.n_items:,} items; torch threads {torch.get_num_threads()}")

    fast_s, result = _epoch_seconds(data, NeighborFinder, args.epochs)
    loop_s, _ = _epoch_seconds(data, LoopNeighborFinder, args.epochs)
    train_events = len(result.split.train) + len(result.split.val)

    # Evaluation: the same user rows and item matrix ranked both ways.
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
    fast_ranks = ranks_in_chunks(rows, item_matrix, torch.as_tensor(items))
    eval_fast = time.perf_counter() - start
    start = time.perf_counter()
    slow_ranks = loop_ranks(rows.numpy(), item_matrix.numpy(), items)
    eval_loop = time.perf_counter() - start
    # float32 products summed in different orders can break near-ties differently.
    agree = float(np.mean(np.abs(fast_ranks.numpy() - slow_ranks) <= 1.0))

    print(f"\n{'what':<46}{'vectorised':>12}{'loop-based':>12}{'speed-up':>10}  target")
    print(f"{'training epoch (train + validation), s':<46}{fast_s:>12.1f}{loop_s:>12.1f}"
          f"{loop_s / fast_s:>9.2f}x  >= 5x")
    print(f"{'  events per second':<46}{train_events / fast_s:>12,.0f}"
          f"{train_events / loop_s:>12,.0f}")
    print(f"{f'evaluation, {len(picked):,} test events, s':<46}{eval_fast:>12.2f}"
          f"{eval_loop:>12.2f}{eval_loop / eval_fast:>9.1f}x  >= 20x")
    print(f"{'peak memory of this process, GB':<46}{_peak_gb():>12.2f}{'':>12}{'':>10}  < 4 GB")
    print(f"(the two rankings agree within one place on {agree:.1%} of the events)")
    full = result.test.get("full", {})
    print(f"\n(test Recall@10 after {args.epochs} epoch(s), no profiles: "
          f"{full.get('recall@10', float('nan')):.4f})")


if __name__ == "__main__":
    main()
