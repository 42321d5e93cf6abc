"""UI responsiveness benchmark on the full Online Retail workspace.

Why one long file: each part below runs as its own fresh process (`--part`) that re-enters this
script, and the parts share the workspace preparation and the timing helpers; split into modules
they would need a package under bench/ for a script that is run by path.

    .venv/bin/python bench/ui.py [--quick] [--workspace PATH] [--starts 5] [--users 20]
                                 [--stall-variants app,default,threads1,process] [--stall-window 60]
                                 [--json]

Prepares a workspace (the full Online Retail file imported into a temporary workspace; with
`--quick`, the shipped demo slice), then measures, each part in a fresh process:

(a) start-up: from spawning the process to the Home screen painted with its data, in a 100x30
    pseudo-terminal (median and max of `--starts`, after one warm-up start: see `clean_env`).
    The process runs the command itself, `dynllm_tui.cli.main` with `--db PATH` (what the
    `dynllm-tui` script runs), with one hook set as the screens' base module is imported: the
    first frame painted after Home received its data ends the clock (`FIRST_SCREEN`).
    Baselines, same run: `python -c pass`, `dynllm-tui --help`, and a bare Textual app that
    paints one Static. Also lists the heavy modules loaded by then (there must be none).
(c) training stall: the real `train_job(db, epochs=1, no_profiles=True)` in a thread worker of
    the running app, its progress relayed to a label 10 times a second, while a 10 ms interval
    timer measures the event loop's lag; max and p99 lag, and the same for the idle app first.
    The default variant trains to the end when the workspace has no run yet (that run is what
    (b) shows), else for `--stall-window` s like the others; `threads1` calls
    `torch.set_num_threads(1)` in the training thread, and `process` runs `dynllm-tui train`
    in a child process instead of a thread; both are stopped after `--stall-window` s. `app`
    is what the analyst does: the Training screen's form and Start key, which runs training as
    a `dynllm-tui train --progress-jsonl` child and relays its progress (cancelled with the
    screen's cancel key after `--stall-window` s). The worst gaps are listed with what the
    training was doing then.
(b) user detail: App.run_test + pilot at 100x30, the `--users` most active customers opened one
    after the other from the Users screen, time from the enter key to the first paint after the
    detail's data arrived. Baselines, same run: the workspace query alone, and pushing a bare
    screen (one Static and the footer). A second pass over the same users runs after
    `gc.collect(); gc.freeze()` (what the app could do once started) to show how much of the
    worst case is the garbage collector; the longest collector pause is reported for each pass.

(d) workbench: for the `--users` most active customers, each opened on its detail screen at
    the Top tab: switching between the lists (All, Buy again, Discover, with their reasons)
    with the list key, from the key to the table repainted; and the refresh after a job ends:
    from `app.workspace_changed("run")` (what the Training screen and the demo build call when
    their job ends) to the open customer repainted with the reloaded data; the same for Home
    after `workspace_changed("profiles")` (what the demo build posts as profiles are committed).

(e) segments: Segments' first paint, from its key to the table painted with its data, in a fresh
    app each time, on a copy of the workspace where customers have profiles (see
    `segments_part`).

They run in the order (c), (a), (b), (d), (e): the training in (c) makes the run that (b) shows. A
temporary workspace is deleted at the end; one given with `--workspace` is kept for the next run.

Targets: first screen < 1.5 s, user detail < 150 ms, no stall > 100 ms. The machine's load is
printed with the table: on a shared machine the wall-clock numbers move with it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import pty
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere; storage/ and dynllm_tui/ from this checkout
SHARED = Path(os.environ.get("DYNLLM_SHARED", REPO.parent / "shared"))
ONLINE_RETAIL = SHARED / "data" / "online-retail" / "online_retail.csv.gz"
DEMO_SLICE = REPO / "dynllm_tui" / "data" / "online_retail_demo.csv.gz"
SIZE = (100, 30)
# Modules the first screen does not need (tests/ui/test_start_up.py keeps them off the start path).
HEAVY = ("torch", "transformers", "llama_cpp", "sqlite_utils", "pandas", "numpy", "pyarrow",
         "plotext", "textual_plotext", "openai", "httpx")
TARGETS = {"start": 1.5, "detail": 0.150, "stall": 0.100, "switch": 0.150, "refresh": 0.200,
           "segments": 0.300}


# ------------------------------------------------------------------ workspace


def prepare(args: argparse.Namespace) -> Path:
    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.workspace import Workspace

    db = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp()) / "bench-ui.db"
    if db.exists():
        print(f"workspace: reusing {db}", file=sys.stderr)
        return db
    source = DEMO_SLICE if args.quick else ONLINE_RETAIL
    started = time.perf_counter()
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", source))
    print(f"workspace: imported {source.name} into {db} in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    return db


def has_run(db: Path) -> bool:
    from storage.workspace import Workspace

    with Workspace.open(db, create=False) as ws:
        return ws.conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0] > 0


def describe(db: Path) -> str:
    from storage.workspace import Workspace

    with Workspace.open(db, create=False) as ws:
        users, events = ws.conn.execute(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM interactions)").fetchone()
    return f"{users:,} users, {events:,} interactions"


def clean_env(home: Path) -> dict[str, str]:
    """No user config, no devtools, no animations: what the tests and a fresh machine see.

    The app's bytecode is cached, under `home` (not in the tree), as an installed app's is (pip
    compiles it at install): where the environment sets PYTHONDONTWRITEBYTECODE (this machine
    does), every start would otherwise compile the app's ~40 modules from source, ~180M
    instructions or ~35 ms of the first screen. So the first start of each measure is a warm-up
    (`warm_up`) that writes the cache, and is not counted."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEXTUAL", "DYNLLM_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), XDG_CACHE_HOME=str(home / ".cache"),
               TERM="xterm-256color", TEXTUAL_ANIMATIONS="none", COLUMNS=str(SIZE[0]),
               LINES=str(SIZE[1]), PYTHONPATH=str(REPO),
               PYTHONPYCACHEPREFIX=str(home / ".cache" / "pycache"))
    return env


def warm_up(argv: list[str], env: dict[str, str]) -> None:
    """One start that is not measured: it writes the bytecode cache (see `clean_env`)."""
    run_in_pty(argv, env, timeout=300)


# ------------------------------------------------------------------ (a) start-up

FIRST_SCREEN = r"""
import importlib.util, json, sys, time

db, out = sys.argv[1], sys.argv[2]
done = []

def shown(app):
    heavy = sorted(m for m in HEAVY_MODULES if m in sys.modules)
    with open(out, "w") as fh:
        json.dump({"at": time.time(), "heavy": heavy, "screen": type(app.screen).__name__}, fh)
    app.exit()

# Home's data reaches HomeScreen.show through WorkerResults._deliver (from Home's worker, or at
# mount when the command's prefetch has answered): the first paint after that is the first
# screen with its data. The hook is set as that module
# is imported, by the command itself: importing it here first would change what is measured
# (the command imports the app only after it has started Home's queries).
def hook(base_screen):
    original = base_screen.WorkerResults._deliver
    def _deliver(self, fn, *args, **kwargs):
        original(self, fn, *args, **kwargs)
        if type(self).__name__ == "HomeScreen" and not done:
            done.append(True)
            self.call_after_refresh(shown, self.app)
    base_screen.WorkerResults._deliver = _deliver

class AfterImport:  # a meta path finder (not importlib.abc's: that would load more modules)
    def find_spec(self, name, path, target=None):
        if name != "dynllm_tui.ui.common.base_screen":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            hook(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, AfterImport())
from dynllm_tui.cli import main  # what the console script runs: `dynllm-tui --db PATH`

sys.argv = ["dynllm-tui", "--db", db]
raise SystemExit(main())
""".replace("HEAVY_MODULES", repr(HEAVY))

BARE_TEXTUAL = r"""
import json, sys, time
from textual.app import App
from textual.widgets import Static

class Bare(App):
    def compose(self):
        yield Static("hello")
    def on_mount(self):
        self.call_after_refresh(self._shown)
    def _shown(self):
        with open(sys.argv[2], "w") as fh:
            json.dump({"at": time.time(), "heavy": [], "screen": "Screen"}, fh)
        self.exit()

Bare().run()
"""


def run_in_pty(argv: list[str], env: dict[str, str], timeout: float = 60.0) -> float:
    """Spawn `argv` on a pseudo-terminal of SIZE, drain its output until it exits; returns the
    spawn time (time.time())."""
    import fcntl
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    spawned = time.time()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=REPO, start_new_session=True, close_fds=True)
    os.close(slave)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    pass
            if proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"{argv[:3]} did not finish in {timeout:.0f} s")
    finally:
        os.close(master)
    if proc.returncode:
        raise RuntimeError(f"{argv[:3]} exited with status {proc.returncode}")
    return spawned


def startup(db: Path, runs: int, home: Path) -> dict:
    env = clean_env(home)
    script = Path(sys.executable).with_name("dynllm-tui")
    cases = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "dynllm-tui --help": ([str(script), "--help"], None),
        "bare Textual app": ([sys.executable, "-c", BARE_TEXTUAL, str(db)], "shown"),
        "first screen": ([sys.executable, "-c", FIRST_SCREEN, str(db)], "shown"),
    }
    results: dict[str, dict] = {}
    for name, (argv, mode) in cases.items():
        times, heavy, screen = [], [], ""
        out = home / "shown.json"
        warm_up(argv + [str(out)] if mode else argv, env)
        for _ in range(runs):
            out.unlink(missing_ok=True)
            full = argv + [str(out)] if mode else argv
            spawned = run_in_pty(full, env)
            if mode:
                shown = json.loads(out.read_text())
                times.append(shown["at"] - spawned)
                heavy, screen = shown["heavy"], shown["screen"]
            else:
                times.append(time.time() - spawned)
        results[name] = {"median": statistics.median(times), "max": max(times), "all": times,
                         "heavy": heavy, "screen": screen}
    return results


# ------------------------------------------------------------------ (b) user detail


async def _wait(flag: list, timeout: float) -> None:
    import asyncio

    deadline = time.perf_counter() + timeout
    while flag[0] is None:
        if time.perf_counter() > deadline:
            raise TimeoutError("the detail's data did not show")
        await asyncio.sleep(0.0005)


async def _detail_async(db: str, n_users: int) -> dict:
    import gc

    from textual.screen import Screen
    from textual.widgets import Footer, Static

    from dynllm_tui.app import WorkbenchApp
    from dynllm_tui.ui.config import UiConfig
    from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen
    from dynllm_tui.ui.users.users_table import UsersTable
    from storage.browse import user_detail
    from storage.workspace import Workspace

    painted: list = [None]
    original_show = UserDetailScreen.show

    def show(self, detail):  # the first paint after the data arrived
        self.call_after_refresh(lambda: painted.__setitem__(0, time.perf_counter()))
        original_show(self, detail)

    UserDetailScreen.show = show

    class BareScreen(Screen):
        def compose(self):
            yield Static("bare screen")
            yield Footer()

        def on_mount(self) -> None:
            self.call_after_refresh(lambda: painted.__setitem__(0, time.perf_counter()))

    pauses: list[float] = []
    gc_start: list[float] = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - gc_start[0])

    async def settle(pilot) -> None:
        for _ in range(5):
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            if all(w.is_finished for w in pilot.app.workers):
                break

    async def open_users(pilot, label: str) -> dict:
        times: list[float] = []
        users: list[str] = []
        pauses.clear()
        table = pilot.app.screen.query_one(UsersTable)
        table.move_cursor(row=0)
        await pilot.pause()
        for _ in range(n_users):
            users.append(table.user_at_cursor()[1])
            painted[0] = None
            started = time.perf_counter()
            await pilot.press("enter")
            await _wait(painted, 30)
            times.append(painted[0] - started)
            await settle(pilot)
            await pilot.press("escape")
            await settle(pilot)
            await pilot.press("down")
            await pilot.pause()
        return {"label": label, "times": times, "users": users,
                "gc_max": max(pauses, default=0.0), "gc_n": len(pauses)}

    app = WorkbenchApp(db, config=UiConfig())
    app.animation_level = "none"
    gc.callbacks.append(on_gc)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        default = await open_users(pilot, "default")
        bare: list[float] = []
        for _ in range(10):
            painted[0] = None
            started = time.perf_counter()
            app.push_screen(BareScreen())
            await _wait(painted, 30)
            bare.append(painted[0] - started)
            await settle(pilot)
            app.pop_screen()
            await settle(pilot)
        gc.collect()
        gc.freeze()
        frozen = await open_users(pilot, "gc.freeze()")
    gc.callbacks.remove(on_gc)

    queries: list[float] = []
    with Workspace.open(db, create=False) as ws:
        for external in default["users"]:
            (uid,) = ws.conn.execute("SELECT id FROM users WHERE external_id = ?",
                                     (external,)).fetchone()
            started = time.perf_counter()
            user_detail(ws, uid, k=10, timeline_limit=1000)
            queries.append(time.perf_counter() - started)
    return {"default": default, "frozen": frozen, "bare": bare, "query": queries}


def detail_part(db: str, n_users: int) -> dict:
    import asyncio

    return asyncio.run(_detail_async(db, n_users))


# ------------------------------------------------------------------ (d) workbench


async def _workbench_async(db: str, n_users: int) -> dict:
    from dynllm_tui.app import WorkbenchApp
    from dynllm_tui.ui.config import UiConfig
    from dynllm_tui.ui.home.home_screen import HomeScreen
    from dynllm_tui.ui.user_detail.recommendations_table import RecommendationsTable
    from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen
    from dynllm_tui.ui.users.users_table import UsersTable

    painted: dict[str, float | None] = {"list": None, "detail": None, "home": None}

    def paint_marker(cls: type, key: str) -> None:
        original = cls.show

        def show(self, *args, **kwargs):  # the first paint after the new data is in
            self.call_after_refresh(lambda: painted.__setitem__(key, time.perf_counter()))
            return original(self, *args, **kwargs)

        cls.show = show

    paint_marker(RecommendationsTable, "list")
    paint_marker(UserDetailScreen, "detail")
    paint_marker(HomeScreen, "home")

    async def wait_painted(key: str, timeout: float = 30) -> float:
        import asyncio

        deadline = time.perf_counter() + timeout
        while painted[key] is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no paint of {key}")
            await asyncio.sleep(0.0005)
        return painted[key]

    async def settle(pilot) -> None:
        for _ in range(5):
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            if all(w.is_finished for w in pilot.app.workers):
                break

    import gc

    gc_pauses: list[tuple[float, float]] = []  # (start, end) of every collection
    gc_start = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append((gc_start[0], time.perf_counter()))

    spans: dict[str, list[tuple[float, float]]] = {"switch": [], "refresh_detail": [],
                                                   "refresh_home": []}
    switch: list[float] = []
    refresh_detail: list[float] = []
    refresh_home: list[float] = []
    sizes: list[dict[str, int]] = []
    app = WorkbenchApp(db, config=UiConfig())
    app.animation_level = "none"
    gc.callbacks.append(on_gc)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one(UsersTable)
        table.move_cursor(row=0)
        await pilot.pause()
        for _ in range(n_users):
            await pilot.press("enter")
            await settle(pilot)
            await pilot.press("l")  # to the Top tab (its view is built now: not measured)
            await settle(pilot)
            detail = app.screen
            sizes.append({k: len(v) for k, v in detail.detail.lists.items()})
            for _ in range(3):  # Buy again -> Discover -> All -> Buy again
                painted["list"] = None
                started = time.perf_counter()
                await pilot.press("l")
                switch.append(await wait_painted("list") - started)
                spans["switch"].append((started, painted["list"]))
                await settle(pilot)
            painted["detail"] = None
            started = time.perf_counter()
            app.workspace_changed("run")
            refresh_detail.append(await wait_painted("detail") - started)
            spans["refresh_detail"].append((started, painted["detail"]))
            await settle(pilot)
            await pilot.press("escape")
            await settle(pilot)
            await pilot.press("down")
            await pilot.pause()
        await pilot.press("1")
        await settle(pilot)
        for _ in range(n_users):
            painted["home"] = None
            started = time.perf_counter()
            app.workspace_changed("profiles")
            refresh_home.append(await wait_painted("home") - started)
            spans["refresh_home"].append((started, painted["home"]))
            await settle(pilot)
    gc.callbacks.remove(on_gc)

    def gc_inside(span: tuple[float, float]) -> float:
        """Seconds of garbage collection within a measured span."""
        return sum(max(0.0, min(end, span[1]) - max(start, span[0]))
                   for start, end in gc_pauses)

    return {"switch": switch, "refresh_detail": refresh_detail, "refresh_home": refresh_home,
            "gc_in": {key: [gc_inside(span) for span in found] for key, found in spans.items()},
            "list_sizes": sizes}


def workbench_part(db: str, n_users: int) -> dict:
    import asyncio

    return asyncio.run(_workbench_async(db, n_users))


# ------------------------------------------------------------------ (e) segments


def segments_part(db: str, runs: int) -> dict:
    """Segments' first paint: from the section key to the table painted with its data, in a
    fresh app each time (the screen is built on its first visit). On a copy of the workspace in
    which customers without profiles get one (a crowd segment among 37 names, one customer in
    11 left without, as the LLM leaves some): the cost depends on the counts, not on the names.
    """
    import asyncio

    from dynllm_tui.app import WorkbenchApp
    from dynllm_tui.ui.config import UiConfig
    from dynllm_tui.ui.segments.segments_screen import SegmentsScreen
    from storage.workspace import Workspace

    folder = Path(tempfile.mkdtemp())
    copy = folder / "segments.db"
    shutil.copy(db, copy)
    with Workspace.open(copy) as ws, ws.transaction() as conn:
        conn.execute(
            "INSERT INTO profiles (user_id, as_of, status, crowd_segment, model, input_hash) "
            "SELECT id, 0, 'ok', 'Segment ' || (id % 37), 'bench', 'bench' FROM users "
            "WHERE id % 11 != 0 AND id NOT IN (SELECT user_id FROM profiles WHERE status = 'ok')")
    from dynllm_tui.ui.runs.runs_screen import RunsScreen

    painted: list[float] = []

    def paint_marker(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def show(self, *args, **kwargs):  # the first paint after the screen's data is in
            self.call_after_refresh(lambda: painted.append(time.perf_counter()))
            return original(self, *args, **kwargs)

        setattr(cls, name, show)

    paint_marker(SegmentsScreen, "show_page")
    paint_marker(RunsScreen, "show")  # the baseline: another section's first paint

    async def once(key: str) -> float:
        painted.clear()
        app = WorkbenchApp(str(copy), config=UiConfig())
        app.animation_level = "none"
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(3):
                await pilot.pause()
                await app.workers.wait_for_complete()
            started = time.perf_counter()
            await pilot.press(key)
            deadline = started + 30
            while not painted and time.perf_counter() < deadline:
                await asyncio.sleep(0.0005)
            if not painted:
                raise TimeoutError(f"the section of key {key} never painted")
            return painted[0] - started

    try:
        return {"times": [asyncio.run(once("5")) for _ in range(runs)],
                "runs_baseline": [asyncio.run(once("3")) for _ in range(runs)]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ (c) training stall


async def _stall_async(db: str, variant: str, window: float | None, idle_s: float) -> dict:
    import asyncio
    import threading

    from textual.widgets import Static

    from dynllm_tui.app import WorkbenchApp
    from dynllm_tui.ui.config import UiConfig

    ticks: list[float] = []
    latest: list = [None]
    lock = threading.Lock()
    reports = [0]
    stop = threading.Event()

    stages: list[tuple[float, str]] = []  # (time, what the training thread was starting)

    def progress(p) -> None:  # training thread: record only, the UI drains 10 times a second
        with lock:
            if latest[0] is None or latest[0].stage != p.stage:
                stages.append((time.perf_counter(), p.stage))
            latest[0] = p
            reports[0] += 1

    def replay(done: int, total: int) -> None:
        if not stages or stages[-1][1] != "replay":
            stages.append((time.perf_counter(), "replay"))

    def train() -> dict:
        stages.append((time.perf_counter(), "import torch"))
        import torch

        from dynllm_tui.jobs.training import train_job

        if variant == "threads1":
            torch.set_num_threads(1)
        stages.append((time.perf_counter(), "setup: data, model, optimizer"))
        started = time.perf_counter()
        summary = train_job(db, epochs=1, no_profiles=True, progress=progress,
                            cancel=stop.is_set, on_replay=replay)
        return {"seconds": time.perf_counter() - started, "status": summary.status,
                "run": summary.run_id}

    app = WorkbenchApp(db, config=UiConfig())
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        label = Static("training: starting", id="bench-progress")
        await app.screen.mount(label)

        def drain() -> None:
            with lock:
                p = latest[0]
            if p is not None:
                label.update(f"training: {p.stage} epoch {p.epoch} batch {p.batch}/{p.n_batches}")

        app.set_interval(0.1, drain)
        if variant == "app":  # open the screen first: its first paint is not training's cost
            await pilot.press("4")
            await pilot.pause(0.5)
            app.screen.query_one("#epochs").value = "1"
            app.screen.query_one("#no_profiles").value = True
            await pilot.pause()
        gc_pauses: list[tuple[float, float]] = []  # (start, seconds) of each collection
        gc_start = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            else:
                gc_pauses.append((gc_start[0], time.perf_counter() - gc_start[0]))

        gc.callbacks.append(on_gc)
        app.set_interval(0.01, lambda: ticks.append(time.perf_counter()))
        await asyncio.sleep(idle_s)
        idle = list(ticks)
        ticks.clear()
        started = time.perf_counter()
        if variant == "process":  # the same job as `dynllm-tui train`, in a child process
            stages.append((started, "child process"))
            child = subprocess.Popen(
                [str(Path(sys.executable).with_name("dynllm-tui")), "--db", db, "train",
                 "--epochs", "1", "--no-profiles"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
            interrupted = False
            while child.poll() is None:
                await asyncio.sleep(0.05)
                label.update(f"training in process {child.pid}")
                if window is not None and time.perf_counter() - started > window:
                    child.send_signal(2)  # Ctrl-C: the job stops and rolls back cleanly
                    interrupted = True
                    await asyncio.to_thread(child.wait)
            stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
            status = "cancelled" if interrupted else ("done" if child.returncode == 0
                                                      else "failed")
            result = {"seconds": time.perf_counter() - started, "status": status,
                      "exit": child.returncode, "stderr": stderr[-500:]}
        elif variant == "app":  # what the analyst does: the Training screen's Start key
            stages.append((started, "Training screen (child process)"))
            screen = app.screen
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            cancelled = False
            while screen.running:
                await asyncio.sleep(0.05)
                if window is not None and not cancelled and time.perf_counter() - started > window:
                    await pilot.press("ctrl+g")
                    cancelled = True
            result = {"seconds": time.perf_counter() - started,
                      "status": "cancelled" if cancelled else "done",
                      "torch_in_app": "torch" in sys.modules,
                      "notes": [n.message for n in app._notifications][-2:]}
        else:
            worker = app.run_worker(train, thread=True, exit_on_error=False)
            while not worker.is_finished:
                await asyncio.sleep(0.05)
                if window is not None and time.perf_counter() - started > window:
                    stop.set()
            result = worker.result if worker.error is None else {"error": repr(worker.error)}
        stages.append((time.perf_counter(), "done"))
        training = list(ticks)
        gc.callbacks.remove(on_gc)
    # Garbage-collector pauses while training, so a long gap can be told from the job's cost.
    result["longest_gc_ms"] = round(1000 * max((d for t, d in gc_pauses if t >= started),
                                               default=0.0))
    return {"variant": variant, "idle": idle, "training": training, "started": started,
            "window": window, "reports": reports[0], "result": result, "stages": stages}


def worst_stalls(stall: dict, n: int = 4) -> str:
    """The longest gaps between ticks, with when they came and what training was doing."""
    ticks, stages, started = stall["training"], stall["stages"], stall["started"]
    gaps = sorted(((b - a, a) for a, b in zip(ticks, ticks[1:], strict=False)), reverse=True)[:n]
    out = []
    for gap, at in gaps:
        stage = next((name for when, name in reversed(stages) if when <= at + gap), "start")
        out.append(f"{ms(gap)} at +{at - started:.1f} s ({stage})")
    return ", ".join(out)


def stall_part(db: str, variant: str, window: float | None, idle_s: float) -> dict:
    import asyncio

    return asyncio.run(_stall_async(db, variant, window, idle_s))


def lags(ticks: list[float], interval: float = 0.01) -> tuple[float, float]:
    """(max, p99) of how late each 10 ms tick came."""
    late = sorted(max(0.0, b - a - interval) for a, b in zip(ticks, ticks[1:], strict=False))
    if not late:
        return 0.0, 0.0
    return late[-1], late[min(len(late) - 1, int(0.99 * len(late)))]


# ------------------------------------------------------------------ orchestration


def in_child(part: str, *args: str, timeout: float = 1800) -> dict:
    """Run one part in a fresh interpreter (torch from one part must not weigh on another)."""
    done = subprocess.run([sys.executable, __file__, "--part", part, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"part {part} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the demo slice, not the full file")
    parser.add_argument("--workspace", help="reuse (or create) this workspace file")
    parser.add_argument("--starts", type=int, default=5, help="start-ups per case (a)")
    parser.add_argument("--users", type=int, default=20, help="users opened (b)")
    parser.add_argument("--stall-variants", default="app,default,threads1,process",
                        help="comma-separated: default (a thread worker, trains to the end), "
                        "threads1 (the same with torch.set_num_threads(1)), process (the "
                        "training in a child process)")
    parser.add_argument("--stall-window", type=float, default=60.0,
                        help="seconds a non-default stall variant trains before it is cancelled")
    parser.add_argument("--json", action="store_true", help="also print every number as JSON")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--window", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part == "detail":
        print(json.dumps(detail_part(args.db, args.users)))
        return
    if args.part == "stall":
        print(json.dumps(stall_part(args.db, args.variant, args.window or None, 3.0)))
        return
    if args.part == "workbench":
        print(json.dumps(workbench_part(args.db, args.users)))
        return
    if args.part == "segments":
        print(json.dumps(segments_part(args.db, args.starts)))
        return

    load_start = os.getloadavg()[0]
    db = prepare(args)
    try:
        report(args, db, load_start)
    finally:
        if not args.workspace:
            shutil.rmtree(db.parent, ignore_errors=True)


def report(args: argparse.Namespace, db: Path, load_start: float) -> None:
    variants = [v for v in args.stall_variants.split(",") if v]
    stalls = []
    for variant in variants:
        # The default variant trains to the end when (b) needs its run; otherwise every
        # variant trains for the same window, so that they compare.
        window = None if variant == "default" and not has_run(db) else args.stall_window
        print(f"(c) training, variant {variant}…", file=sys.stderr)
        stalls.append(in_child("stall", "--db", str(db), "--variant", variant,
                               "--window", str(window or 0)))
    if not has_run(db):
        print("training one epoch so that user detail has a run…", file=sys.stderr)
        from dynllm_tui.jobs.training import train_job

        train_job(str(db), epochs=1, no_profiles=True)
    print("(a) start-up…", file=sys.stderr)
    with tempfile.TemporaryDirectory() as home:
        start = startup(db, args.starts, Path(home))
    print("(b) user detail…", file=sys.stderr)
    detail = in_child("detail", "--db", str(db), "--users", str(args.users))
    print("(d) workbench: lists and refresh…", file=sys.stderr)
    bench = in_child("workbench", "--db", str(db), "--users", str(min(args.users, 10)))
    print("(e) segments…", file=sys.stderr)
    segments = in_child("segments", "--db", str(db), "--starts", str(args.starts))

    import textual

    print(f"\ndynllm-tui UI benchmark · {'demo slice' if args.quick else 'full Online Retail'} "
          f"({describe(db)}) · terminal {SIZE[0]}x{SIZE[1]}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_start:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end · Python {platform.python_version()} · "
          f"textual {textual.__version__}")
    w = 52
    print(f"\n{'what':<{w}}{'median':>9}{'max':>9}  {'target':<10}{'met':<5}baseline, same run")
    print(f"{'':<{w}}{'(c): p99':>9}{'(c): max':>9}")

    def row(label: str, mid: str, top: str, target: str, met: bool | None, base: str) -> None:
        flag = "" if met is None else ("yes" if met else "NO")
        print(f"{label:<{w}}{mid:>9}{top:>9}  {target:<10}{flag:<5}{base}")

    first = start["first screen"]
    row("(a) start to first screen (Home with its data)", f"{first['median']:.2f} s",
        f"{first['max']:.2f} s", "< 1.5 s", first["max"] < TARGETS["start"],
        f"bare Textual app {start['bare Textual app']['median']:.2f} s · "
        f"dynllm-tui --help {start['dynllm-tui --help']['median']:.2f} s · "
        f"python -c pass {start['python -c pass']['median']:.2f} s")
    print(f"{'':<{w}}heavy modules loaded at the first screen: "
          f"{', '.join(first['heavy']) or 'none'} (checked: {', '.join(HEAVY)})")
    query = detail["query"]
    bare = detail["bare"]
    for key, label in (("default", "(b) open a user (enter to data painted)"),
                       ("frozen", "(b') the same after gc.collect(); gc.freeze()")):
        times = detail[key]["times"]
        row(label, ms(statistics.median(times)), ms(max(times)), "< 150 ms",
            max(times) < TARGETS["detail"] if key == "default" else None,
            f"bare screen push {ms(statistics.median(bare))} (max {ms(max(bare))}) · query "
            f"alone {ms(statistics.median(query))} (max {ms(max(query))})"
            if key == "default" else "")
        print(f"{'':<{w}}first open {ms(times[0])}, reused screen after; longest GC pause "
              f"{ms(detail[key]['gc_max'])} ({detail[key]['gc_n']} collections); users: "
              f"{len(times)} most active")
    for key, label, target in (
            ("switch", "(d) switch list with reasons (key to table painted)", "switch"),
            ("refresh_detail", "(d) refresh after a job ends: open customer", "refresh"),
            ("refresh_home", "(d) refresh after a job ends: Home", "refresh")):
        times = bench[key]
        worst = times.index(max(times))
        row(label, ms(statistics.median(times)), ms(max(times)),
            f"< {TARGETS[target] * 1000:.0f} ms", max(times) < TARGETS[target],
            f"{len(times)} times; the slowest had {ms(bench['gc_in'][key][worst])} of GC in it")
    sizes = bench["list_sizes"]
    first_sizes = "/".join(str(sizes[0].get(k, 0)) for k in ("all", "buy-again", "discover")) \
        if sizes else "-"
    print(f"{'':<{w}}{len(sizes)} customers, 3 switches each; list lengths (all/buy again/"
          f"discover) of the first: {first_sizes}; refresh: WorkspaceChanged to the reloaded "
          "data painted")
    times = segments["times"]
    row("(e) Segments first paint (key to table painted)", ms(statistics.median(times)),
        ms(max(times)), "< 300 ms", max(times) < TARGETS["segments"],
        f"Runs' first paint {ms(statistics.median(segments['runs_baseline']))}; "
        f"{len(times)} fresh apps, customers profiled but one in 11")
    for stall in stalls:
        window = stall["window"]
        idle_max, idle_p99 = lags(stall["idle"])
        train_ticks = stall["training"]
        if window:
            train_ticks = [t for t in train_ticks if t <= stall["started"] + window]
        top, p99 = lags(train_ticks)
        result = stall["result"]
        label = f"(c) UI lag while training, {stall['variant']}"
        row(label, f"p99 {ms(p99)}", ms(top), "< 100 ms", top < TARGETS["stall"],
            f"idle app: p99 {ms(idle_p99)}, max {ms(idle_max)}")
        seconds = result.get("seconds") or 0.0
        rate = stall["reports"] / seconds if seconds else 0.0
        limit = f" (stopped at {window:.0f} s if not done)" if window else ""
        reports = {"process": "progress stays in the child",
                   "app": "progress relayed from the child as JSON lines"}.get(
            stall["variant"], f"{stall['reports']:,} progress reports ({rate:.1f}/s)")
        print(f"{'':<{w}}one epoch: {result.get('status', result.get('error'))} after "
              f"{seconds:.0f} s{limit}, {reports}")
        print(f"{'':<{w}}worst: {worst_stalls(stall)}; longest GC pause meanwhile "
              f"{result.get('longest_gc_ms', 0)} ms")
        if not window and args.stall_window:  # the same window as the other variants
            first_top, first_p99 = lags([t for t in stall["training"]
                                         if t <= stall["started"] + args.stall_window])
            print(f"{'':<{w}}its first {args.stall_window:.0f} s: p99 {ms(first_p99)}, "
                  f"max {ms(first_top)}")
    if args.json:
        for stall in stalls:  # the lags, not every tick
            stall["idle_lag"] = dict(zip(("max", "p99"), lags(stall.pop("idle")), strict=True))
            stall["training_lag"] = dict(zip(("max", "p99"), lags(stall.pop("training")),
                                             strict=True))
        print(json.dumps({"start": start, "detail": detail, "stall": stalls,
                          "workbench": bench, "segments": segments}))


if __name__ == "__main__":
    main()
