"""The GPU check's measurements (run by bench/gpu_check.sh, which prepares the interpreter and
the workspace): the application's training job for N epochs on each device, then
bench/train.py on each device, and ONE table of the figures side by side with the CPU/GPU ratio.

    python bench/gpu_check.py --db WORKSPACE --work DIR [--devices cuda,cpu] [--epochs 2]

Imports neither the UI nor the LLM: the training job reads the workspace's stored profile and
item vectors (the encoder is not loaded), trains, tests, replays into a private copy of the
workspace and stores the baselines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train_job_row(db: Path, device: str, epochs: int, batch_size: int) -> dict:
    """The training job (dynllm_tui.jobs.training.train_job) as the app runs it."""
    import torch

    from dynllm_tui.jobs.training import train_job
    from dynllm_tui.jobs.workspace_data import load_workspace_data
    from models.data.events import chronological_split
    from storage.workspace import Workspace

    with Workspace.open(db, create=False) as ws:
        data = load_workspace_data(ws)
    split = chronological_split(data.log)
    marks: dict[str, float] = {}

    def progress(p) -> None:
        now = time.perf_counter()
        marks.setdefault(f"first_{p.stage}", now)
        marks[f"last_{p.stage}"] = now

    def on_replay(done: int, total: int) -> None:
        marks["replay_end"] = time.perf_counter()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = train_job(db, epochs=epochs, batch_size=batch_size, device=device,
                        patience=epochs, progress=progress, on_replay=on_replay,
                        activate="always")
    total = time.perf_counter() - started
    if summary.status != "done":
        raise SystemExit(f"gpu_check: the training job on {device} ended {summary.status}")
    with sqlite3.connect(db) as conn:
        history = json.loads(conn.execute("SELECT history FROM runs WHERE id = ?",
                                          (summary.run_id,)).fetchone()[0])
    epoch_s = sum(e["seconds"] for e in history) / len(history)
    return {
        "epoch_s": epoch_s,
        "events_per_s": (len(split.train) + len(split.val)) / epoch_s,
        "evaluation_s": marks["last_test"] - marks["last_epoch"],
        "replay_s": marks.get("replay_end", marks["last_test"]) - marks["last_test"],
        "total_s": total,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else None,
        "profiles": bool(summary.with_profiles),
        "test_recall@10": summary.test.get("full", {}).get("recall@10"),
    }


def bench_rows(db: Path, device: str, epochs: int, out: Path) -> list[dict]:
    """bench/train.py on one device, in its own process (its own peak memory)."""
    command = [sys.executable, str(REPO / "bench" / "train.py"), "--db", str(db),
               "--rows", "ours,before", "--epochs", str(epochs), "--device", device,
               "--eval-events", "5000", "--json", str(out)]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return json.loads(out.read_text())["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--devices", default="cuda,cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    devices = args.devices.split(",")

    import torch

    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("gpu_check.sh: --device cuda was asked for but torch sees no GPU "
                         f"(torch {torch.__version__}); use --device cpu on this machine")
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA "
          f"{torch.version.cuda or 'none'}, GPU "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
          flush=True)
    figures: dict[str, dict[str, dict]] = {}
    for device in devices:
        copy = args.work / f"ws-{device}.db"
        shutil.copy(args.db, copy)  # the job writes a run, a replay and baselines into it
        print(f"training job, {args.epochs} epochs on {device} ...", flush=True)
        job = train_job_row(copy, device, args.epochs, args.batch_size)
        rows = {r["row"]: r for r in bench_rows(copy, device, args.epochs,
                                                args.work / f"bench-{device}.json")}
        figures[device] = {
            "job": job,
            "ours": {"epoch_s": rows["ours"]["epoch_s"],
                     "events_per_s": rows["ours"]["events_per_s"],
                     "evaluation_s": rows["ours"]["test_eval_s"],
                     "peak_gpu_gb": rows["ours"]["peak_gpu_gb"]},
            "before": {"epoch_s": rows["before"]["epoch_s"],
                       "events_per_s": rows["before"]["events_per_s"],
                       "evaluation_s": rows["before"]["test_eval_s"],
                       "peak_gpu_gb": rows["before"]["peak_gpu_gb"]},
        }
    print_table(figures, devices, args.epochs, figures[devices[0]]["job"]["profiles"])
    (args.work / "gpu_check.json").write_text(json.dumps(figures, indent=1))


def print_table(figures: dict, devices: list[str], epochs: int, profiles: bool) -> None:
    names = {"job": f"training job ({epochs} epochs, "
                    f"{'profiles' if profiles else 'no profiles'}, batch 512)",
             "ours": f"bench/train.py, ours ({epochs} epochs, no profiles)",
             "before": f"bench/train.py, before #14 ({epochs} epochs, no profiles)"}
    measures = (("epoch s", "epoch_s", "{:.2f}"), ("events/s", "events_per_s", "{:,.0f}"),
                ("evaluation s (test part)", "evaluation_s", "{:.2f}"),
                ("replay s", "replay_s", "{:.2f}"),
                ("peak GPU memory GB", "peak_gpu_gb", "{:.3f}"))
    ratio = "cuda" in devices and "cpu" in devices
    head = f"{'':<58}" + "".join(f"{d:>12}" for d in devices) + (
        f"{'cpu/cuda':>10}" if ratio else "")
    print("\n" + head)
    for what, name in names.items():
        print(name)
        for label, key, fmt in measures:
            values = [figures[d][what].get(key) for d in devices]
            if all(v is None for v in values):
                continue
            cells = "".join(f"{fmt.format(v) if v is not None else 'n/a':>12}"
                            for v in values)
            line = f"  {label:<56}{cells}"
            if ratio and key in ("epoch_s", "evaluation_s", "replay_s"):
                cpu, gpu = figures["cpu"][what].get(key), figures["cuda"][what].get(key)
                line += f"{cpu / gpu:>9.1f}x" if cpu and gpu else ""
            elif ratio and key == "events_per_s":
                cpu, gpu = figures["cpu"][what].get(key), figures["cuda"][what].get(key)
                line += f"{gpu / cpu:>9.1f}x" if cpu and gpu else ""
            print(line)


if __name__ == "__main__":
    main()
