"""One training at a time per workspace, visible across processes.

Two trainings on one workspace would both write runs, recommendations and the active-run flag,
and fight over the CPU or GPU; a second app or shell must also be able to tell that a training is
under way (and that a run left 'running' by a killed process is not). An advisory lock file next
to the workspace, `<db>.train.lock`, does both: `train_job` holds an exclusive `flock` on it for
its whole duration and writes who it is (JSON: pid, run id or null, start time) into it; readers
probe the lock without taking it over. The kernel drops the lock when its holder dies, so a
crash or `kill -9` never leaves a stale lock behind, whatever the file still says.

The file itself is never deleted: unlinking a lock file lets a second process lock a new inode
while a third still holds the old one.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from storage.errors import DynllmError
from storage.workspace import default_workspace_path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, trainings are not guarded
    fcntl = None  # type: ignore[assignment]

# A probe holds a shared lock for microseconds; a trainer that meets one retries this long
# before concluding that another training really holds the lock.
ACQUIRE_RETRY_S = 0.5

P = ParamSpec("P")
R = TypeVar("R")


class TrainingBusyError(DynllmError):
    """Another training holds the workspace's training lock."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def lock_path(db_path: str | os.PathLike[str] | None) -> Path:
    """`<db>.train.lock` for the workspace at `db_path` (None: the default workspace), resolved so
    that two processes naming the workspace differently (relative path, symlink) share it."""
    db = Path(db_path).expanduser() if db_path is not None else default_workspace_path()
    db = db.resolve()
    return db.with_name(db.name + ".train.lock")


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    # The holder may not have written yet (it locks, then writes): say so rather than guess.
    return {"pid": info.get("pid"), "run_id": info.get("run_id"),
            "started_at": info.get("started_at")}


def describe(holder: dict[str, Any]) -> str:
    """'pid 1234, started 2026-01-05 09:30 UTC' (the parts that are known)."""
    parts = []
    if holder.get("pid") is not None:
        parts.append(f"pid {holder['pid']}")
    if holder.get("run_id") is not None:
        parts.append(f"run #{holder['run_id']}")
    if holder.get("started_at"):
        parts.append(f"started {str(holder['started_at']).replace('T', ' ')[:16]} UTC")
    return ", ".join(parts) or "process unknown"


def training_in_progress(db_path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """Who holds the workspace's training lock ({pid, run_id, started_at}), or None when no
    training runs. Never takes the lock over: a shared, non-blocking probe released at once.

    The holder may be this very process (a training running in one of its threads): compare
    `pid` with `os.getpid()`."""
    if fcntl is None:
        return None
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # no training ever ran here
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class TrainLock:
    """The held lock; `update(run_id=...)` records the run once it has an id."""

    def __init__(self, fd: int, info: dict[str, Any]) -> None:
        self._fd = fd
        self.info = info
        self._write()

    def _write(self) -> None:
        data = json.dumps(self.info).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def update(self, **fields: Any) -> None:
        self.info.update(fields)
        self._write()

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, 0)  # a reader must not mistake an old holder for a live one
        except OSError:
            pass
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = -1


def acquire(db_path: str | os.PathLike[str] | None, run_id: int | None = None) -> TrainLock | None:
    """Take the workspace's training lock, or raise TrainingBusyError naming the holder.

    None where locking is impossible (no fcntl, or the workspace's folder does not exist: the
    job then fails on the workspace itself with a clearer message)."""
    if fcntl is None:
        return None
    path = lock_path(db_path)
    if not path.parent.is_dir():
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + ACQUIRE_RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            holder = _read_holder(fd)
            os.close(fd)
            db = path.with_name(path.name.removesuffix(".train.lock"))
            raise TrainingBusyError(
                f"another training is running on {db} ({describe(holder)}); "
                "wait for it to finish or stop it", holder) from None
        except BaseException:
            os.close(fd)
            raise
    try:
        return TrainLock(fd, {"pid": os.getpid(), "run_id": run_id,
                              "started_at": datetime.now(UTC).isoformat(timespec="seconds")})
    except BaseException:
        os.close(fd)  # closing drops the lock too
        raise


@contextmanager
def holding_train_lock(db_path: str | os.PathLike[str] | None,
                       run_id: int | None = None) -> Iterator[TrainLock | None]:
    """The lock for the duration of the block, released on every way out (errors, cancel)."""
    lock = acquire(db_path, run_id)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def holds_train_lock(job: Callable[P, R]) -> Callable[P, R]:
    """Decorate a job `job(db_path, ..., resume=None, ...)` so that it runs holding the
    workspace's training lock (recording `resume` as the run id when given)."""

    @functools.wraps(job)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        db_path = args[0] if args else kwargs.get("db_path")
        resume = kwargs.get("resume")
        with holding_train_lock(db_path,  # type: ignore[arg-type]
                                run_id=resume if isinstance(resume, int) else None):
            return job(*args, **kwargs)

    return locked
