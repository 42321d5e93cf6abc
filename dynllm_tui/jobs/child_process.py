"""A CLI job (`dynllm-tui train`, `dynllm-tui demo --no-open`) in a child process, for the app.

Training and the demo build import torch, llama.cpp and transformers and hold the GIL for long
stretches (an import of torch alone is ~200 ms): in a thread of the app they stall its event
loop. In a child process they cannot. The child runs with `--progress-jsonl`, so every progress
report arrives as one JSON line on its stdout; this module reads them in the calling (worker)
thread, hands each to `on_event`, turns a cancel into one SIGINT (the CLI's own Ctrl-C: the job
stops at its next checkpoint and keeps what it finished) and returns the child's final summary.
No Textual here: the app's workers call it, so could any other front end.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.errors import DynllmError

POLL_S = 0.2  # how often `cancel()` is looked at while the child is quiet
REPO = Path(__file__).resolve().parents[2]

_children: set[int] = set()  # pids of the children running now
_children_lock = threading.Lock()


class ChildJobError(DynllmError):
    """The child job failed: its own message, and its exit status (negative: the signal)."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


def child_pids() -> set[int]:
    """The pids of the jobs this process runs as children now (the training lock names the
    child's pid, so the app can tell its own training from another process's)."""
    with _children_lock:
        return set(_children)


def _what(args: list[str]) -> str:
    command = args[0] if args else "job"
    return {"train": "training", "demo": "demo build"}.get(command, command)


def run_cli_job(
    args: list[str],
    db: str | Path,
    on_event: Callable[[dict[str, Any]], None],
    cancel: Callable[[], bool],
) -> dict[str, Any]:
    """Run `dynllm-tui --db DB ARGS --progress-jsonl` as a child and wait for it.

    `on_event` gets each progress object (in this thread); `cancel()` is polled at least every
    `POLL_S` seconds and, once true, the child gets one SIGINT. Returns the final summary (also
    that of a cancelled job, which exits 130 after it). Raises `ChildJobError` (a DynllmError)
    with the child's message when it fails, or says how it died."""
    cmd = [sys.executable, "-m", "dynllm_tui.cli", "--db", str(db), *args, "--progress-jsonl"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            errors="replace", env=env, cwd=REPO)
    with _children_lock:
        _children.add(proc.pid)
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr.append(line)
            del stderr[:-200]  # the tail is enough for a message

    readers = [threading.Thread(target=fn, daemon=True, name=f"child-{proc.pid}-{fn.__name__}")
               for fn in (read_stdout, read_stderr)]
    for reader in readers:
        reader.start()
    summary: dict[str, Any] | None = None
    error: str | None = None
    interrupted = False
    try:
        while True:
            if not interrupted and cancel():
                interrupted = True
                _interrupt(proc)
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if line is None:
                break
            event = _parse(line)
            if event is None:
                continue
            kind = event.get("event")
            if kind == "progress":
                on_event(event)
            elif kind == "done":
                summary = event.get("summary") or {}
            elif kind == "error":
                error = str(event.get("message") or "")
        returncode = proc.wait()
        for reader in readers:
            reader.join(timeout=5)
    except BaseException:
        # The caller went away mid-job (an exception in on_event, interpreter exit): stop the
        # child as Ctrl-C would, so it keeps what it finished and frees the training lock.
        if proc.poll() is None:
            _interrupt(proc)
        raise
    finally:
        with _children_lock:
            _children.discard(proc.pid)
    if summary is not None and returncode in (0, 130):
        return summary
    what = _what(args)
    if error:
        raise ChildJobError(error, returncode)
    tail = [line.strip() for line in stderr if line.strip()]
    said = next((line[len("error: "):] for line in reversed(tail) if line.startswith("error: ")),
                None)
    if said:
        raise ChildJobError(said, returncode)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        raise ChildJobError(f"{what} process ended with signal {-returncode} ({name})",
                            returncode)
    if returncode == 130:
        raise ChildJobError(f"{what} process was interrupted before it finished", returncode)
    last = tail[-1] if tail else "no output"
    raise ChildJobError(f"{what} process exited with status {returncode}: {last}", returncode)


def _interrupt(proc: subprocess.Popen) -> None:
    try:
        proc.send_signal(signal.SIGINT)
    except ProcessLookupError:
        pass


def _parse(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
