"""CSV exports of a run's recommendations (any of its three lists, optionally with reasons) and
facet weights.

Files are written to a temporary name beside the target and renamed at the end, so a reader
never sees half a file. Text cells that a spreadsheet would run as a formula (leading = + - @,
tab or carriage return) are prefixed with a single quote.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from storage.browse.common import BrowseError
from storage.browse.segments import segment_user_ids
from storage.browse.user_detail import (
    check_list_name,
    group_facet_rows,
    run_has_lists,
    stored_before_lists,
)
from storage.errors import DynllmError
from storage.timeparse import iso_utc
from storage.workspace import Workspace

# The agreed header, then `bought_before` (1 or 0; empty when a hand-written row has none);
# `--reasons` adds REASON_COLUMN after it.
RECOMMENDATION_COLUMNS = ("user_id", "rank", "item_id", "item_title", "score", "run_id", "model",
                          "generated_at", "bought_before")
REASON_COLUMN = "reason"
# The facet-weight export: these two columns, then one per facet the run has.
FACET_KEY_COLUMNS = ("user_id", "as_of")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportError(DynllmError):
    """The export cannot be written (no run, bad target); nothing was written."""


def neutralise(cell: object) -> object:
    """Text that a spreadsheet would evaluate becomes plain text; numbers pass unchanged."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def resolve_run(ws: Workspace, run_id: int | None) -> tuple[int, str, str]:
    """(run id, model name, finished time) of `run_id`, else of the active run, else the latest
    finished run."""
    if run_id is not None:
        row = ws.conn.execute(
            "SELECT id, config, coalesce(finished_at, created_at), status FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise ExportError(f"no run {run_id} in {ws.path}")
    else:
        row = ws.conn.execute(
            "SELECT id, config, coalesce(finished_at, created_at), status FROM runs "
            "WHERE status = 'done' ORDER BY active DESC, id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise ExportError(f"{ws.path} has no finished run yet: train one first "
                              "(dynllm-tui train)")
    config = json.loads(row[1] or "{}")
    return row[0], str(config.get("model_name", "dynllm")), row[2]


@contextmanager
def atomic_csv(path: str | Path) -> Iterator[csv.writer]:
    """A csv.writer onto a temporary file in the target folder, renamed over `path` on success
    and removed on any failure."""
    target = Path(path).expanduser()
    folder = target.parent
    if not folder.is_dir():
        raise ExportError(f"{target}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ExportError(f"{target}: the folder {folder} is not writable")
    if target.is_dir():
        raise ExportError(f"{target}: is a folder, give a file name")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                             dir=folder)
    except OSError as exc:
        raise ExportError(f"{target}: the folder {folder} is not writable ({exc.strerror})") \
            from None
    try:
        # mkstemp makes the file private (0600); an export is meant to be shared like any file
        # the user writes, so it gets the usual mode under the user's umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as fh:
            yield csv.writer(fh)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _user_filter(ws: Workspace, users: Iterable[str] | None) -> tuple[str, list]:
    if users is None:
        return "", []
    keys = list(dict.fromkeys(str(u) for u in users))
    known = {k for (k,) in ws.conn.execute(
        f"SELECT external_id FROM users WHERE external_id IN ({','.join('?' * len(keys))})",
        keys,
    )} if keys else set()
    missing = [k for k in keys if k not in known]
    if missing:
        raise ExportError(f"unknown user id(s): {', '.join(missing[:5])}")
    return f" AND u.external_id IN ({','.join('?' * len(keys))})", keys


def export_recommendations(
    ws: Workspace,
    out: str | Path,
    *,
    k: int = 10,
    run_id: int | None = None,
    users: Iterable[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    list: str = "all",
    reasons: bool = False,
    segment: str | None = None,
) -> int:
    """Write the top-`k` of one of the run's lists ("all", "buy-again" or "discover") for each
    user (of crowd segment `segment` when given), with a `reason` column when `reasons`;
    returns the number of rows written. A run
    stored before the lists and reasons has the "all" list only and no reasons: asking it for
    more is refused with a message that says so, and nothing is written."""
    if k < 1:
        raise ExportError(f"k must be at least 1 (got {k})")
    try:
        name = check_list_name(list)
    except BrowseError as exc:
        raise ExportError(str(exc)) from None
    run, model, _finished = resolve_run(ws, run_id)
    if (name != "all" or reasons) and not run_has_lists(ws, run):
        raise ExportError(stored_before_lists(run))
    where, params = _user_filter(ws, users)
    if segment is not None:
        try:
            segment_user_ids(ws, segment)  # an unknown name is one clear line, not 0 rows
        except BrowseError as exc:
            raise ExportError(str(exc)) from None
        where += " AND r.user_id IN (SELECT user_id FROM user_stats WHERE segment = ?)"
        params = [*params, segment]
    generated_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    total = ws.conn.execute(
        "SELECT count(*) FROM recommendations r JOIN users u ON u.id = r.user_id "
        f"WHERE r.run_id = ? AND r.list = ? AND r.rank <= ?{where}", (run, name, k, *params),
    ).fetchone()[0]
    rows = ws.conn.execute(
        "SELECT u.external_id, r.rank, i.external_id, i.title, r.score, r.bought_before, "
        "r.reason FROM recommendations r "
        "JOIN users u ON u.id = r.user_id JOIN items i ON i.id = r.item_id "
        f"WHERE r.run_id = ? AND r.list = ? AND r.rank <= ?{where} "
        "ORDER BY u.external_id, r.rank",
        (run, name, k, *params),
    )
    header = RECOMMENDATION_COLUMNS + ((REASON_COLUMN,) if reasons else ())
    written = 0
    with atomic_csv(out) as writer:
        writer.writerow(header)
        for user, rank, item, title, score, bought, reason in rows:
            cells = [neutralise(user), rank, neutralise(item), neutralise(title or ""),
                     f"{score:.6f}", run, neutralise(model), generated_at,
                     "" if bought is None else int(bool(bought))]
            if reasons:
                cells.append(neutralise(reason or ""))
            writer.writerow(cells)
            written += 1
            if progress is not None and written % 10_000 == 0:
                progress(written, total, "writing")
        if progress is not None:
            progress(written, total, "writing")
    return written


def run_facets(ws: Workspace, run_id: int, order: Sequence[str] | None = None,
               include: Sequence[str] = ()) -> list[str]:
    """The facets run `run_id` stored weights for, plus `include` (facets of the run that may
    have no weight anywhere: absent for every user, e.g. brands in a catalogue without brands):
    in `order` where given (facets it does not name come after, in storage order), else in the
    order they were first stored."""
    stored = [f for f, _first in ws.conn.execute(
        "SELECT facet, min(rowid) FROM facet_weights WHERE run_id = ? GROUP BY facet "
        "ORDER BY 2", (run_id,))]
    stored += [f for f in include if f not in stored]
    if order is None:
        return stored
    rank = {name: n for n, name in enumerate(order)}
    return sorted(stored, key=lambda f: rank.get(f, len(rank)))  # stable: unknown keep order


def export_facet_weights(
    ws: Workspace,
    out: str | Path,
    *,
    run_id: int | None = None,
    users: Iterable[str] | None = None,
    facets: Sequence[str] | None = None,
    include: Sequence[str] = (),
) -> int:
    """Write the facet weights of a run, one row per user event (`user_id`, `as_of`, then one
    column per facet of the run, ordered as `facets` lists them, else as stored); returns the
    number of rows. A facet the run does not have is not a column; a facet it has (`include`)
    but that is absent at an event (no source: masked, never weighted) is an empty cell."""
    run, _model, _finished = resolve_run(ws, run_id)
    where, params = _user_filter(ws, users)
    columns = run_facets(ws, run, facets, include)
    rows = ws.conn.execute(
        "SELECT u.external_id, f.ts, f.facet, f.weight "
        "FROM facet_weights f JOIN users u ON u.id = f.user_id "
        f"WHERE f.run_id = ?{where} ORDER BY u.external_id, f.ts, f.rowid", (run, *params),
    )
    written = 0
    with atomic_csv(out) as writer:
        writer.writerow((*FACET_KEY_COLUMNS, *columns))
        for user, ts, weights in group_facet_rows(rows):
            # An event missing a facet the run has elsewhere gets an empty cell, never a shift.
            cells = (f"{weights[f]:.6f}" if f in weights else "" for f in columns)
            writer.writerow([neutralise(user), iso_utc(ts), *cells])
            written += 1
    return written
