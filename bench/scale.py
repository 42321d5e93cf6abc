"""How every cost grows with the store: synthetic Online Retail stores at 1x, 4x, 16x (issue 14.4).

    nice -n 10 .venv/bin/python bench/scale.py [--sizes 1,4,16] [--skip-train] [--skip-ui]
        [--skip-baseline] [--train-sizes 1,4,16] [--threads N] [--nice N]
        [--out /tmp/dynllm-scale] [--seed 14]

The synthetic store at k x (written once as CSV.gz under --out, reused by later runs):
  - copy 0 is the real file (/work/shared/data/online-retail/online_retail.csv.gz), unchanged;
  - copies 1 .. k-1: for every customer of the real file (4,372 ids) one customer is drawn at
    random WITH replacement (numpy default_rng(seed + copy)) and that customer's whole history
    is written again under a new id, 100000 * copy + the slot's own id (so 17850 in copy 3
    becomes 317850), with every time of that history shifted by one whole number of minutes
    drawn uniformly in [0, 30 days) for the (copy, slot), and every invoice renamed to
    "<C if it was a cancellation><copy, 2 digits><invoice>" (so an invoice stays one basket and
    cancellations stay cancellations);
  - the real file's rows without a customer (135k, rejected as missing_user) are copied once
    per copy with their invoices renamed the same way, so rejects grow with the store too;
  - items (StockCode, Description, price) are the real ones: 4,070 codes at every size.
So k x has k times the lines (541,909 k), about k times the kept interactions and customers,
and the real file's duplicates and cancellations repeated per copy.

For each size, each measured in a fresh child process (peak MB is that child's ru_maxrss):
  import        seconds and peak MB of `run_import` into a new workspace (this tree), and the same
                import by the code before issue 14 (commit 7cdd621, checked out with
                `git worktree add --detach /tmp/old_main 7cdd621`; --skip-baseline skips it)
  workspace     the workspace file's size on disk after the import (MB)
  UI            the app's first screen (Home with its data) from process start, as bench/ui.py
                (a) measures it, in a pseudo-terminal (the median of 3 starts after a warm-up
                start that writes the bytecode cache); then, headless with App.run_test, the
                Users screen's first page (key "2" to painted) and a search (from the search's
                reload, after the screen's 200 ms typing debounce, to the painted result)
  training      `train_job(epochs=1, no_profiles=True)`: the epoch (train + validation) seconds
                and events/s (train + validation events: 85 % of the interactions by the 70/15/15
                chronological split), the test evaluation seconds, the replay seconds (the three
                lists for every user), and the child's peak MB (the baselines a finished run
                also stores are left out); beside each, the CPU seconds the part used (all its
                threads), which a busy shared machine distorts far less than wall time, the
                torch thread count and the load average. Training runs for the sizes in
                --train-sizes (default 1,4,16); a size left out is EXTRAPOLATED linearly from the
                largest trained one and printed as such. `--threads 1` gives each training part
                one torch thread: on 2 shared cores, spinning OpenMP threads that outnumber the
                free cores collapse (an epoch became 15x slower beside two other busy processes).
The last lines say what breaks first and why, from the measured numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("DYNLLM_SHARED", REPO.parent / "shared"))
ONLINE_RETAIL = SHARED / "data" / "online-retail" / "online_retail.csv.gz"
BASELINE_COMMIT = "7cdd621"
MINUTES_30_DAYS = 30 * 24 * 60
NICE = 10  # each part runs niced; --nice changes it
FIRST_SCREEN_STARTS = 3  # the app's first screen: the median of this many starts (after a warm-up)


# ------------------------------------------------------------------ the synthetic store


def make_store(k: int, out: Path, seed: int) -> Path:
    """The k x store as CSV.gz (see the module docstring); an existing file is reused."""
    path = out / f"online_retail_{k}x_seed{seed}.csv.gz"
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    real = pacsv.read_csv(ONLINE_RETAIL, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in ("InvoiceNo", "StockCode", "Description",
                                                "Quantity", "InvoiceDate", "UnitPrice",
                                                "CustomerID", "Country")},
        strings_can_be_null=False))
    customer = real.column("CustomerID").to_numpy(zero_copy_only=False).astype(str)
    with_customer = np.flatnonzero(customer != "")
    without = np.flatnonzero(customer == "")
    ids = np.unique(customer[with_customer])
    slot_of_row = np.searchsorted(ids, customer[with_customer])
    order = with_customer[np.argsort(slot_of_row, kind="stable")]
    counts = np.bincount(slot_of_row, minlength=len(ids))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    times = pc.cast(pc.cast(real.column("InvoiceDate"), pa.timestamp("s")), pa.int64()).to_numpy()
    numeric_ids = np.array([int(float(x)) for x in ids], dtype=np.int64)

    tmp = path.with_suffix(".part")
    sink = pa.CompressedOutputStream(str(tmp), "gzip")
    writer = None
    for copy in range(k):
        if copy == 0:
            part = real
        else:
            rng = np.random.default_rng(seed + copy)
            drawn = rng.integers(0, len(ids), size=len(ids))
            shift_min = rng.integers(0, MINUTES_30_DAYS, size=len(ids))
            rows = np.concatenate([order[starts[s]:starts[s] + counts[s]] for s in drawn])
            slot = np.repeat(np.arange(len(ids)), counts[drawn])
            shift = np.repeat(shift_min, counts[drawn]) * 60
            new_ids = (100_000 * copy + numeric_ids[slot]).astype(str)
            rows = np.concatenate([rows, without])
            shift = np.concatenate([shift, np.zeros(len(without), dtype=np.int64)])
            new_ids = np.concatenate([new_ids, np.full(len(without), "", dtype=new_ids.dtype)])
            part = real.take(pa.array(rows))
            invoice = part.column("InvoiceNo")
            cancelled = pc.starts_with(invoice, "C")
            digits = pc.if_else(cancelled, pc.utf8_slice_codeunits(invoice, 1), invoice)
            renamed = pc.binary_join_element_wise(
                pc.if_else(cancelled, "C", ""), f"{copy:02d}", digits, "")
            when = pc.strftime(pc.cast(pa.array(times[rows] + shift), pa.timestamp("s")),
                               format="%Y-%m-%d %H:%M:%S")
            part = part.set_column(part.schema.get_field_index("InvoiceNo"), "InvoiceNo",
                                   renamed)
            part = part.set_column(part.schema.get_field_index("InvoiceDate"), "InvoiceDate",
                                   when)
            part = part.set_column(part.schema.get_field_index("CustomerID"), "CustomerID",
                                   pa.array(new_ids, pa.string()))
        if writer is None:
            writer = pacsv.CSVWriter(sink, part.schema, write_options=pacsv.WriteOptions(
                quoting_style="needed"))
        writer.write_table(part)
    writer.close()
    sink.close()
    tmp.rename(path)
    return path


# ------------------------------------------------------------------ child parts


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_import(tree: str, data: str, db: str) -> dict:
    """One import with the code of `tree` (this checkout or the baseline worktree)."""
    sys.path.insert(0, tree)
    import sqlite_utils  # noqa: F401  (loaded by the first migration; outside the clock)

    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.workspace import Workspace

    assert Path(sys.modules["storage"].__file__).resolve().is_relative_to(Path(tree).resolve())
    start = time.perf_counter()
    with Workspace.open(db) as ws:
        summary = run_import(ws, preset_spec("online-retail", data))
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(db).parent.glob(Path(db).name + "*"))
    return {"seconds": seconds, "peak_mb": _peak_mb(), "rows_read": summary.rows_read,
            "rows_kept": summary.rows_kept, "users": summary.users_total,
            "rejected": summary.rows_rejected, "db_mb": size / 2**20}


async def _ui_async(db: str) -> dict:
    from bench.ui import SIZE, _wait
    from dynllm_tui.app import WorkbenchApp
    from dynllm_tui.ui.config import UiConfig
    from dynllm_tui.ui.users.search_bar import SearchBar
    from dynllm_tui.ui.users.users_screen import UsersScreen

    painted: list = [None]
    reloaded: list = [None]
    search_for = ""
    original_show, original_reload = UsersScreen.show_page, UsersScreen.reload

    def show_page(self, generation, page):
        original_show(self, generation, page)
        if page.offset == 0 and self.search == search_for:
            self.call_after_refresh(lambda: painted.__setitem__(0, time.perf_counter()))

    def reload(self, *args, **kwargs):
        if self.search == search_for and search_for:
            reloaded[0] = time.perf_counter()
        original_reload(self, *args, **kwargs)

    UsersScreen.show_page, UsersScreen.reload = show_page, reload
    app = WorkbenchApp(db, config=UiConfig())
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        started = time.perf_counter()
        await pilot.press("2")
        await _wait(painted, 120)
        first_page = painted[0] - started
        await app.workers.wait_for_complete()
        await pilot.pause()
        # A customer-id prefix that exists at every size (copy 0 is the real file).
        search_for = "1785"
        painted[0] = None
        app.screen.query_one(SearchBar).value = search_for
        await _wait(painted, 120)
        search = painted[0] - reloaded[0]
    return {"users_first_page": first_page, "search": search}


def part_ui(db: str) -> dict:
    import asyncio
    import statistics

    from bench.ui import FIRST_SCREEN, clean_env, run_in_pty, warm_up

    starts = []
    with tempfile.TemporaryDirectory() as folder:  # the bytecode cache goes with it
        home = Path(folder)
        out = home / "shown.json"
        argv = [sys.executable, "-c", FIRST_SCREEN, db, str(out)]
        warm_up(argv, clean_env(home))  # writes the app's bytecode cache; not measured
        for _ in range(FIRST_SCREEN_STARTS):
            spawned = run_in_pty(argv, clean_env(home), timeout=300)
            starts.append(json.loads(out.read_text())["at"] - spawned)
    result = asyncio.run(_ui_async(db))
    return {"first_screen": statistics.median(starts), "first_screen_all": starts, **result}


def part_train(db: str) -> dict:
    import dynllm_tui.jobs.training as training
    from storage.workspace import Workspace

    # The baselines (popularity ... BPR-MF) that a finished run stores are not the model's
    # cost and take longer than the epoch itself on a small store: left out of this measure.
    training._store_baselines = lambda *args, **kwargs: None

    marks: dict[str, float] = {}

    # Wall and CPU seconds at each mark: on a shared machine the wall time of a part depends on
    # the others' load, its CPU time (this process, all threads) much less.
    cpu: dict[str, float] = {}

    def mark(name: str, first: bool) -> None:
        now, used = time.perf_counter(), time.process_time()
        if first:
            marks.setdefault(name, now)
            cpu.setdefault(name, used)
        else:
            marks[name], cpu[name] = now, used

    def progress(p) -> None:
        mark(f"{p.stage}_first", True)
        mark(f"{p.stage}_last", False)

    def on_replay(done: int, total: int) -> None:
        mark("replay_first", True)
        mark("replay_last", False)

    start, start_cpu = time.perf_counter(), time.process_time()
    summary = training.train_job(db, epochs=1, no_profiles=True, device="cpu", progress=progress,
                        on_replay=on_replay, activate="always")
    end, end_cpu = time.perf_counter(), time.process_time()
    with Workspace.open(db, create=False) as ws:
        events = ws.conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
    epoch = marks["epoch_first"] - marks["train_first"]

    def spans(m: dict, last: float) -> dict:
        return {"epoch": m["epoch_first"] - m["train_first"],
                "evaluation": m.get("test_last", m["epoch_first"]) - m["epoch_first"],
                "replay": m.get("replay_last", last) - m.get("replay_first", last)}

    return {
        "status": summary.status, "events": events, "threads": torch_threads(),
        "load": marks["train_first"] - start, **spans(marks, end),
        "events_per_s": 0.85 * events / epoch,
        "cpu": {**spans(cpu, end_cpu), "total": end_cpu - start_cpu},
        "load_average": os.getloadavg()[0],
        "total": end - start, "peak_mb": _peak_mb(),
    }


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def in_child(part: str, *args: str, timeout: float = 1800) -> dict:
    """One part in a fresh, niced interpreter; its JSON answer (last stdout line)."""
    done = subprocess.run(["nice", "-n", str(NICE), sys.executable, __file__, "--part", part,
                           *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"part {part} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree() -> Path | None:
    tree = Path("/tmp/old_main")
    if not (tree / "storage" / "importer").exists():
        done = subprocess.run(["git", "worktree", "add", "--detach", str(tree), BASELINE_COMMIT],
                              cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            print(f"baseline: no worktree ({done.stderr.strip()})", file=sys.stderr)
            return None
    return tree


# ------------------------------------------------------------------ the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--train-sizes", default="1,4,16")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-ui", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "dynllm-scale")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the training part (default: torch's own); 1 "
                        "avoids the collapse of spinning threads on a shared 2-core machine")
    parser.add_argument("--nice", type=int, default=NICE, help="niceness of each part")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.threads is not None:  # inherited by every part's process
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    globals()["NICE"] = args.nice
    if args.part:
        handler = {"import": part_import, "ui": part_ui, "train": part_train}[args.part]
        print(json.dumps(handler(*rest)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    train_sizes = {int(s) for s in args.train_sizes.split(",") if s}
    args.out.mkdir(parents=True, exist_ok=True)
    old = None if args.skip_baseline else baseline_tree()
    results: dict[int, dict] = {}
    # Imports and the UI for every size first, then training (the longest part), so that a run
    # cut short still has every size's import and UI figures.
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        for k in sizes:
            started = time.perf_counter()
            data = make_store(k, args.out, args.seed)
            made = time.perf_counter() - started
            row: dict = {"file_mb": data.stat().st_size / 2**20, "made_s": made}
            if old is not None:
                old_db = Path(tmp) / f"old{k}.db"
                row["old_import"] = in_child("import", str(old), str(data), str(old_db))
                for leftover in Path(tmp).glob(old_db.name + "*"):
                    leftover.unlink()
            db = str(Path(tmp) / f"ws{k}.db")
            row["import"] = in_child("import", str(REPO), str(data), db)
            if not args.skip_ui:
                row["ui"] = in_child("ui", db)
            results[k] = row
            print_size(k, row)
            sys.stdout.flush()
        for k in sizes:
            if not args.skip_train and k in train_sizes:
                results[k]["train"] = in_child("train", str(Path(tmp) / f"ws{k}.db"),
                                               timeout=3 * 3600)
                print_size(k, results[k])
                sys.stdout.flush()
    print_growth(results)
    print_breaks_first(results)
    (args.out / "scale_results.json").write_text(json.dumps(results, indent=1))


def print_size(k: int, row: dict) -> None:
    imp = row["import"]
    print(f"\n== {k}x Online Retail: {imp['rows_read']:,} lines, {imp['rows_kept']:,} kept "
          f"interactions, {imp['users']:,} customers (file {row['file_mb']:.0f} MB gz, made in "
          f"{row['made_s']:.0f} s)")
    print(f"  {'import (this tree)':<34}{imp['seconds']:>9.1f} s {imp['peak_mb']:>8.0f} MB peak")
    if "old_import" in row:
        old = row["old_import"]
        print(f"  {'import (before, ' + BASELINE_COMMIT + ')':<34}{old['seconds']:>9.1f} s "
              f"{old['peak_mb']:>8.0f} MB peak  (same kept rows: "
              f"{old['rows_kept'] == imp['rows_kept'] and old['rejected'] == imp['rejected']})")
    print(f"  {'workspace on disk':<34}{imp['db_mb']:>9.0f} MB")
    if "ui" in row:
        ui = row["ui"]
        print(f"  {'app first screen (process start)':<34}{ui['first_screen'] * 1000:>9.0f} ms")
        print(f"  {'Users first page (key to paint)':<34}{ui['users_first_page'] * 1000:>9.0f} ms")
        print(f"  {'Users search (reload to paint)':<34}{ui['search'] * 1000:>9.0f} ms")
    if "train" in row:
        tr = row["train"]
        cpu = tr.get("cpu", {})

        def cpu_s(key: str) -> str:
            return f"  (CPU {cpu[key]:.1f} s)" if key in cpu else ""

        print(f"  {'training epoch (train + val)':<34}{tr['epoch']:>9.1f} s "
              f"{tr['events_per_s']:>8,.0f} events/s  (loading {tr['load']:.1f} s)"
              + cpu_s("epoch"))
        print(f"  {'test evaluation':<34}{tr['evaluation']:>9.1f} s" + cpu_s("evaluation"))
        print(f"  {'replay (3 lists, every user)':<34}{tr['replay']:>9.1f} s" + cpu_s("replay"))
        if "threads" in tr:
            print(f"  {'torch threads / load average':<34}{tr['threads']:>9d}   "
                  f"{tr['load_average']:.1f} at the end")
        print(f"  {'train_job peak':<34}{'':>11}{tr['peak_mb']:>8.0f} MB peak "
              f"(whole job {tr['total']:.0f} s)")


def print_growth(results: dict[int, dict]) -> None:
    """Growth from the smallest size measured, and 16x training extrapolated when not run."""
    sizes = sorted(results)
    if len(sizes) < 2:
        return
    base = sizes[0]
    print(f"\n== growth against {base}x (x = linear)")
    for k in sizes[1:]:
        factor = k / base
        parts = []
        for label, get in (
                ("import s", lambda r: r["import"]["seconds"]),
                ("import MB", lambda r: r["import"]["peak_mb"]),
                ("disk MB", lambda r: r["import"]["db_mb"]),
                ("users page ms", lambda r: r["ui"]["users_first_page"]),
                ("search ms", lambda r: r["ui"]["search"]),
                ("epoch s", lambda r: r["train"]["epoch"]),
                ("epoch CPU s", lambda r: r["train"]["cpu"]["epoch"]),
                ("replay CPU s", lambda r: r["train"]["cpu"]["replay"]),
                ("train MB", lambda r: r["train"]["peak_mb"])):
            try:
                parts.append(f"{label} {get(results[k]) / get(results[base]) / factor:.2f}x")
            except KeyError:
                continue
        print(f"  {k}x ({factor:.0f}x the data): " + ", ".join(parts))
    trained = [k for k in sizes if "train" in results[k]]
    if trained and max(sizes) not in trained:
        k0 = max(trained)
        tr = results[k0]["train"]
        factor = max(sizes) / k0
        print(f"  EXTRAPOLATED (not measured), {max(sizes)}x training from {k0}x, linear: epoch "
              f"~{tr['epoch'] * factor:.0f} s, evaluation ~{tr['evaluation'] * factor:.0f} s, "
              f"replay ~{tr['replay'] * factor:.0f} s")


def print_breaks_first(results: dict[int, dict]) -> None:
    """Each measure at the largest size against its target, worst first."""
    k = max(results)
    row = results[k]
    findings = []
    ui = row.get("ui", {})
    for label, value, target in (("Users first page", ui.get("users_first_page"), 0.300),
                                 ("Users search", ui.get("search"), 0.300),
                                 ("app first screen", ui.get("first_screen"), 0.300)):
        if value is not None:
            findings.append((value / target, f"{label} {value * 1000:.0f} ms at {k}x "
                                             f"(target {target * 1000:.0f} ms)"))
    trained = [s for s in sorted(results) if "train" in results[s]]
    if trained:
        base = trained[-1]
        train = results[base]["train"]
        # CPU seconds when the part recorded them: a busy machine's wall time says more about
        # the other processes than about this one.
        cpu = train.get("cpu", {}).get("epoch")
        epoch = (train["epoch"] if cpu is None else cpu) * k / base
        how = ("measured" if base == k else f"EXTRAPOLATED linearly from {base}x") + (
            "" if cpu is None else ", CPU time")
        # An analyst retrains weekly in a working day: 15 minutes an epoch is the budget here.
        findings.append((epoch / 900, f"training: one epoch ~{epoch / 60:.0f} min at {k}x ({how};"
                                      " one process, the whole log per epoch)"))
    imp = row["import"]
    findings.append((imp["peak_mb"] / 2048, f"import peak {imp['peak_mb']:.0f} MB at {k}x "
                                            "(budget 2 GB)"))
    print(f"\n== what breaks first at {k}x (measure / target, worst first)")
    for ratio, text in sorted(findings, reverse=True):
        print(f"  {ratio:5.2f}  {text}")


if __name__ == "__main__":
    main()
