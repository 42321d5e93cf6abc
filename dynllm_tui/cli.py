"""The `dynllm-tui` command. Every UI action is also a sub-command here. This module dispatches
and prints; the options are in `cli_parser`, the import summary's printing in `cli_output`.

Expected errors (bad input, unusable workspace) print one line `error: ...` and exit 2;
Ctrl-C exits 130 after the running job has rolled back or committed what it finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from dynllm_tui.cli_output import import_summary_json as _summary_json
from dynllm_tui.cli_output import print_import_summary as _print_summary
from dynllm_tui.cli_parser import build_parser
from dynllm_tui.terminal import cancel_on_sigint, progress_bar
from storage.errors import DynllmError, sqlite_error

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    args = _bare_app_args(sys.argv[1:] if argv is None else argv) or build_parser().parse_args(argv)
    try:
        if args.command == "import":
            return _cmd_import(args)
        if args.command == "status":
            return _cmd_status(args)
        if args.command == "taxonomy":
            return _cmd_taxonomy(args)
        if args.command == "profiles":
            return _cmd_profiles(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "evaluate":
            return _cmd_evaluate(args)
        if args.command == "recommend":
            return _cmd_recommend(args)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "segments":
            return _cmd_segments(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "replay":
            return _cmd_replay(args)
        if args.command == "activate":
            return _cmd_activate(args)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "serve":
            return _cmd_serve(args)
        return _open_app(args.db)
    except DynllmError as exc:
        _emit_error(args, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.Error as exc:  # met mid-command: a damaged page, a long lock, a full disk
        message = str(sqlite_error(_workspace_path(args), exc))
        _emit_error(args, message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def _bare_app_args(argv: list[str]) -> argparse.Namespace | None:
    """What the full parser answers for `dynllm-tui`, `dynllm-tui --db PATH` or `--db=PATH` (the
    app, no command), without building it: its ~15 sub-parsers cost the app's start-up more
    than the Home query. Anything else (a command, --help, a malformed --db) goes to the parser."""
    if not argv:
        return argparse.Namespace(db=None, command=None)
    if len(argv) == 1 and argv[0].startswith("--db="):
        return argparse.Namespace(db=argv[0].removeprefix("--db="), command=None)
    if len(argv) == 2 and argv[0] == "--db" and not argv[1].startswith("-"):
        return argparse.Namespace(db=argv[1], command=None)
    return None


def _workspace_path(args: argparse.Namespace) -> Path:
    from storage.workspace import default_workspace_path

    return Path(args.db).expanduser() if args.db else default_workspace_path()


def _emit(event: dict[str, Any]) -> None:
    """One line of `--progress-jsonl` output, flushed at once (a reader waits on it)."""
    sys.stdout.write(json.dumps(event, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return float(value)


def _emit_error(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "progress_jsonl", False):
        try:
            _emit({"event": "error", "message": message})
        except (BrokenPipeError, OSError):
            pass


def _cmd_import(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.imports import import_job
    from storage.errors import ImportCancelled

    preset = args.preset or "generic"
    if args.path is None and preset != "complete-journey":
        raise DynllmError("import needs a PATH (only --preset complete-journey has a default)")
    # One rule for Ctrl-C: before the commit point nothing is written and the exit is 130;
    # after it the import completes and says so.
    try:
        with progress_bar(f"import {Path(args.path).name if args.path else preset}") as bar, \
                cancel_on_sigint() as cancel:
            summary = import_job(
                args.db, args.path, preset=preset, mapping=args.mapping, items=args.items,
                users=args.users, time_format=args.time_format, fmt=args.fmt,
                progress=bar, cancel=cancel, commit_point=cancel.commit_point,
            )
    except ImportCancelled as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if cancel() and not cancel.committing:  # Ctrl-C on a file already imported: nothing written
        print("interrupted: import cancelled; the workspace is unchanged", file=sys.stderr)
        return EXIT_INTERRUPTED
    if cancel.interrupted_while_committing:
        print("finished: the import was committed before Ctrl-C could stop it", file=sys.stderr)
    if getattr(summary, "cells_cleaned", 0):
        print(f"note: removed control characters (NUL, ESC, ...) from {summary.cells_cleaned:,} "
              "text cells", file=sys.stderr)
    if args.json:
        print(json.dumps(_summary_json(summary), indent=2))
    else:
        _print_summary(summary)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.status import status_job

    status = status_job(args.db)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]Workspace[/bold] {status['workspace']} "
                  f"(schema v{status['schema_version']})")
    counts = Table(show_header=False)
    for key in ("users", "items", "interactions", "profiles", "runs", "rejects"):
        counts.add_row(key, f"{status[key]:,}")
    counts.add_row("time span", f"{status['time_min']} .. {status['time_max']}")
    console.print(counts)
    if status["imports"]:
        imports = Table("#", "file", "preset", "read", "kept", "rejected", "imported at")
        for imp in status["imports"]:
            imports.add_row(
                str(imp["id"]), Path(imp["file"]).name, imp["preset"], f"{imp['rows_read']:,}",
                f"{imp['rows_kept']:,}", f"{sum(imp['rows_rejected'].values()):,}",
                imp["imported_at"],
            )
        console.print(imports)
    return 0


def _cmd_taxonomy(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.taxonomy import taxonomy_job

    with progress_bar("taxonomy", phases=True) as bar:
        summary = taxonomy_job(args.db, k=args.k, seed=args.seed, llm=args.llm, progress=bar)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    elif summary.catalogue_categories:
        print("taxonomy: the catalogue has categories of its own; they are used as they are")
    else:
        print(f"taxonomy {summary.version}: {len(summary.clusters)} clusters over "
              f"{summary.items:,} items ({summary.k_rule}); "
              + ("reused" if summary.reused else f"{summary.llm_calls} LLM calls"))
        for c in sorted(summary.clusters, key=lambda c: -c["size"]):
            print(f"{c['size']:>7,}  {c['name']}  ({c['name_source']})")
        for note in summary.notes:
            print(f"note: {note}")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.profiles import ServerSettings, profiles_job

    users = [u.strip() for u in args.users.split(",") if u.strip()] if args.users else None
    server = ServerSettings(llm_model=args.llm_model, encoder_model=args.encoder_model,
                            response_format=args.response_format, timeout_s=args.timeout,
                            retries=args.retries)
    with progress_bar("profiles") as bar, cancel_on_sigint() as cancel:
        summary = profiles_job(
            args.db, writer=args.writer, llm=args.llm, chat_format=args.chat_format,
            every=args.every, min_new=args.min_new, users=users, limit=args.limit,
            retry_failed=args.retry_failed, embed=not args.no_embed,
            concurrency=args.concurrency, engines=args.engines, server=server,
            encoder=args.encoder,
            re_embed=args.re_embed, progress=bar, cancel=cancel,
        )
    for line in summary.endpoints_dropped:  # the run went on with the other endpoints
        print(f"warning: {line}; its requests went to the other endpoints", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(
            f"profiles: {summary.made} made, {summary.failed} failed, {summary.skipped} "
            f"unchanged (of {summary.planned} planned) with {summary.model}; "
            f"{_per_profile(summary.seconds_per_profile)} per profile; "
            f"embedded {sum(summary.embedded.values())} texts; {summary.seconds:.1f} s"
            + ("; cancelled: rerun to resume" if summary.cancelled else "")
        )
    return EXIT_INTERRUPTED if summary.cancelled else 0


def _per_profile(seconds: float) -> str:
    # Template profiles take well under a millisecond: "0.00 s" would say nothing.
    return f"{seconds:.2f} s" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"


def _cmd_train(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.train_settings import check_train_settings
    from dynllm_tui.jobs.training import train_job

    # Refused before the progress bar and before any run is recorded (train_job checks again).
    check_train_settings(name="option", epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, patience=args.patience, seed=args.seed)
    with progress_bar("train") as bar, cancel_on_sigint() as cancel:
        def progress(p: Any) -> None:
            if args.progress_jsonl:
                _emit({"event": "progress", "stage": p.stage, "epoch": p.epoch,
                       "batch": p.batch, "n_batches": p.n_batches, "loss": p.loss,
                       "metrics": p.metrics})
                return
            label = f"epoch {p.epoch} {p.stage}"
            if p.loss is not None:
                label += f" loss {p.loss:.4f}"
            if p.metrics and "recall@10" in p.metrics:
                label += f" val R@10 {p.metrics['recall@10']:.4f}"
            bar(p.batch, p.n_batches, label)

        summary = train_job(
            args.db, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            device=args.device, seed=args.seed, no_profiles=args.no_profiles,
            ablation=args.ablation, resume=args.resume, patience=args.patience,
            exclude_bought=args.exclude_bought, repeat_term=args.repeat_term,
            text_term=args.text_term, progress=progress, cancel=cancel, activate=args.activate,
        )
    if args.progress_jsonl:
        _emit({"event": "done", "summary": summary.__dict__})
    elif args.json:
        print(json.dumps(summary.__dict__, indent=2, default=float))
    else:
        full = summary.test.get("full", {})
        print(f"run {summary.run_id}: {summary.status} after {summary.epochs} epochs "
              f"(best {summary.best_epoch}) on {summary.device}, "
              f"{'with' if summary.with_profiles else 'without'} profiles; test "
              f"Recall@10 {full.get('recall@10', float('nan')):.4f} "
              f"NDCG@10 {full.get('ndcg@10', float('nan')):.4f}; {summary.seconds:.0f} s")
        if summary.activation_note:
            print(summary.activation_note)
    return EXIT_INTERRUPTED if summary.status == "cancelled" else 0


def _cmd_activate(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.activate import activate_job

    run = activate_job(args.db, args.run)
    figure = run.best_validation
    shown = "" if figure is None else f" (val R@10 {figure:.4f})"
    print(f"run {run.id}{shown} is now the active run")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.evaluation import check_protocol, evaluate_job, select_protocol
    from models.evaluation.protocols import format_report

    protocol = check_protocol("exclude-seen" if args.exclude_seen else args.protocol)
    with cancel_on_sigint() as cancel:
        rows = select_protocol(evaluate_job(args.db, run_id=args.run, ablations=args.ablations,
                                            n_seeds=args.seeds, cancel=cancel), protocol)
    if args.json:
        print(json.dumps(rows, indent=2, default=float))
    else:
        print(format_report(rows))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.recommend import recommend

    if args.k < 1:
        raise DynllmError(f"--k must be at least 1 (got {args.k})")
    out = recommend(args.db, args.user, k=args.k, run_id=args.run, list_name=args.list_name)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"user {out['user_id']} — run {out['run_id']} ({out['model']}), list {out['list']}")
    if not out["items"]:
        print(f"no items in the {out['list']} list of run {out['run_id']} for this user")
    for item in out["items"]:
        seen = "bought before" if item["bought_before"] else "new"
        print(f"{item['rank']:>3}  {item['score']:>9.4f}  {item['item_id']:<10} "
              f"{(item['title'] or '')[:50]:<50}  {seen}"
              + (f"  — {item['reason']}" if item.get("reason") else ""))
    if out["k"] > out["stored"]:
        print(f"note: run {out['run_id']} stored {out['stored']} recommendations for user "
              f"{out['user_id']}; all {out['stored']} shown (asked for {out['k']:,})")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.replay import replay_job

    with progress_bar("replay") as bar:
        run_id, count = replay_job(args.db, args.run,
                                   progress=lambda done, total: bar(done, total, ""))
    print(f"run {run_id}: replayed, {count:,} recommendations stored (all, buy-again, "
          "discover, with reasons)")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.check import check_job

    report = check_job(args.db)
    if args.json:
        print(json.dumps(report, indent=2))
    elif report["ok"]:
        counts = ", ".join(f"{table} {count:,}" for table, count in report["counts"].items())
        print(f"{report['workspace']}: ok (integrity check passed; {counts})")
    else:
        for problem in report["problems"][:10]:  # SQLite's own words, for whoever repairs it
            print(f"  {problem}")
    if report["ok"]:
        return 0
    print(f"error: {report['message']}", file=sys.stderr)
    return EXIT_ERROR


def _cmd_export(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.export import export_job

    users = [u.strip() for u in args.users.split(",") if u.strip()] if args.users else None
    with progress_bar("export") as bar:
        count = export_job(args.db, args.what, args.out, k=args.k, run_id=args.run, users=users,
                           progress=bar, list_name=args.list_name, reasons=args.reasons,
                           segment=args.segment)
    print(f"wrote {count:,} rows to {args.out}")
    return 0


def _cmd_segments(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from dynllm_tui.jobs import segments as job

    if args.limit < 1:
        raise DynllmError(f"--limit must be at least 1 (got {args.limit})")
    if args.name is not None:
        detail = job.segment_info(args.db, args.name, run_id=args.run)
        lines = job.segment_detail_text(detail)
        data: Any = asdict(detail)
    else:
        page = job.segments_table(args.db, limit=args.limit, run_id=args.run)
        lines = job.segments_text(page)
        data = asdict(page)
    print(json.dumps(data, indent=2) if args.json else "\n".join(lines))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.demo import default_demo_workspace, demo_job

    db = args.db or default_demo_workspace()
    options = {"profile_limit": args.profile_users}
    if args.writer is not None:
        options["writer"] = args.writer
    if args.epochs is not None:
        from dynllm_tui.jobs.train_settings import check_train_settings

        check_train_settings(name="option", epochs=args.epochs)  # before the build starts
        options["epochs"] = args.epochs
    if args.progress_jsonl:
        return _demo_jsonl(db, options)
    if not args.no_open:
        # The app opens at once and builds in a background worker, with progress on Home, so
        # the analyst can browse what exists while profiles and training run.
        from dynllm_tui.app import WorkbenchApp
        from storage.workspace import Workspace

        Workspace.open(db).close()  # a clear error here rather than inside the UI
        WorkbenchApp(str(db), build_demo=True, demo_options=options).run()
        return 0
    with progress_bar("demo", phases=True) as bar, cancel_on_sigint() as cancel:
        summary = demo_job(db, progress=bar, cancel=cancel, **options)
    if summary.imported is not None and not summary.imported.already_imported:
        _print_summary(summary.imported)
    if summary.profiles is not None:
        p = summary.profiles
        print(f"profiles: {p.made} made, {p.skipped} already there, {p.failed} failed "
              f"({_per_profile(p.seconds_per_profile)} each, {p.model})")
    if summary.training is not None:
        t = summary.training
        full = t.test.get("full", {})
        print(f"run {t.run_id}: {t.status} after {t.epochs} epochs, test Recall@10 "
              f"{full.get('recall@10', float('nan')):.4f}")
    elif summary.run_id is not None:
        print(f"run {summary.run_id} was already trained")
    phases = ", ".join(f"{name} {sec:.0f} s" for name, sec in summary.seconds.items())
    print(f"demo workspace: {db} ({phases})", file=sys.stderr)
    if summary.cancelled:
        print("demo build stopped; run `dynllm-tui demo` again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _demo_jsonl(db: Any, options: dict[str, Any]) -> int:
    """`demo --progress-jsonl`: the build with one JSON line per progress report."""
    from dynllm_tui.jobs.demo import demo_job

    def progress(done: int, total: int, phase: str) -> None:
        _emit({"event": "progress", "done": done, "total": total, "phase": phase})

    with cancel_on_sigint() as cancel:
        summary = demo_job(db, progress=progress, cancel=cancel, **options)
    training = summary.training
    _emit({"event": "done", "summary": {
        "db": summary.db, "run_id": summary.run_id, "cancelled": summary.cancelled,
        "seconds": summary.seconds,
        "training_status": None if training is None else training.status,
    }})
    return EXIT_INTERRUPTED if summary.cancelled else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from dynllm_tui.serve import serve

    serve(_workspace_path(args), host=args.host, port=args.port)
    return 0


def _open_app(db: str | None) -> int:
    from dynllm_tui.ui.home.home_queries import HOME_QUERIES
    from dynllm_tui.ui.reader import WorkspaceReader
    from storage.workspace import Workspace, default_workspace_path

    path = Path(db).expanduser() if db else default_workspace_path()
    if db is None and not os.environ.get("DYNLLM_DB") and not path.exists():
        Workspace.open(path).close()  # a first run: the default workspace, Home offers the demo
    else:  # a --db or DYNLLM_DB that names nothing is refused: a typo must not create a file
        Workspace.open_for_browsing(path).close()  # fail here, with a clear message
    # Home's queries start now, in a thread, and run while Python imports Textual and the app
    # (SQLite lets go of the GIL): the first screen waits for neither alone (bench/ui.py).
    reader = WorkspaceReader(db)
    reader.prefetch(*HOME_QUERIES)
    # Importing Textual and the app makes ~60k long-lived objects: collecting them as they come
    # costs ~15 ms of start-up for nothing, and freezing them afterwards keeps later full
    # collections (pauses in the running app) from rescanning them.
    gc.disable()
    try:
        from dynllm_tui.app import WorkbenchApp
    finally:
        gc.freeze()
        gc.enable()
    WorkbenchApp(db, reader=reader).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
