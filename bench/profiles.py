"""Profile throughput: the default model on real customers, against the naive way, in one run.

    .venv/bin/python bench/profiles.py [--users 50] [--model smollm2] [--threads N]

Prints, for the same customers (every k-th Online Retail customer with 10+ lines, profiled from
the events before their last basket):
  - seconds per profile (median, p90), prompt and decode tokens/s (llama.cpp's own counters);
  - the naive way measured in the same run: one chat completion per profile with the prompt
    cache cleared, so the shared system prefix is evaluated every time;
  - the bound of this machine for the same work: prompt tokens evaluated / measured prompt rate
    + output tokens / measured decode rate, per profile;
  - targets: >= 2x the naive throughput and >= 70% of the bound;
  - the snapshot count of the default policy over the whole Online Retail history and the time
    it projects at the measured rate; the coverage of the test events (share whose user has a
    snapshot made before the event, median age of that snapshot) with the first-snapshot rule
    and without it;
  - two example profiles.
Candidate selection and per-model summaries are shared with bench/profile_models.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from profile_models import DATA, load_users, run, summarise  # noqa: E402

from models.data.snapshots import DEFAULT_FIRST_AFTER, DEFAULT_MIN_NEW  # noqa: E402


def _bound_s(results) -> float:
    """Median over profiles of evaluated prompt tokens / prompt rate + output / decode rate,
    with the rates measured over the whole run (steady state: the first profile also pays the
    shared prefix)."""
    comps = [c for r in results[1:] for c in r.completions] or [
        c for r in results for c in r.completions]
    prompt_rate = sum(c.prompt_tokens_evaluated for c in comps) / sum(c.prompt_eval_s
                                                                       for c in comps)
    decode_rate = sum(c.completion_tokens for c in comps) / sum(c.decode_s for c in comps)
    per_profile = [r.prompt_tokens_evaluated / prompt_rate + r.completion_tokens / decode_rate
                   for r in results[1:] or results]
    return statistics.median(per_profile)


def _snapshot_policy(data: Path) -> dict:
    """The default policy over the whole file (imported into a temp workspace): snapshots with
    and without the first-snapshot rule, and the coverage of the test part (the last 15% of
    events, as training splits them) each gives."""
    from models.data.events import EventLog, chronological_split
    from models.data.snapshots import plan_snapshots, snapshot_coverage
    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.profiles import interaction_arrays
    from storage.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp, Workspace.open(Path(tmp) / "ws.db") as ws:
        run_import(ws, preset_spec("online-retail", data))
        log = interaction_arrays(ws)
    events = EventLog.from_arrays(log["user"], log["item"], log["ts"])
    test = chronological_split(events).test
    user, ts = events.user_idx[test], events.ts[test].astype(np.int64)
    out = {}
    for name, first_after in (("new", DEFAULT_FIRST_AFTER), ("old", None)):
        plan = plan_snapshots(log["user"], log["ts"], "month", DEFAULT_MIN_NEW, first_after)
        out[name] = (len(plan), snapshot_coverage(plan.user, plan.as_of, user, ts,
                                                  log_user=log["user"], log_ts=log["ts"]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)

    users = load_users(args.data, args.users)
    print(f"{len(users)} real customers, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    cached, cached_load = run(args.model, users, args.threads)
    naive, naive_load = run(args.model, users, args.threads, naive=True)
    rows = [summarise(args.model, cached, cached_load, users),
            summarise(f"{args.model} naive", naive, naive_load, users)]
    bound = _bound_s(cached)
    median = rows[0]["s_per_profile_median"]
    speedup = rows[1]["s_per_profile_median"] / median
    share = bound / median
    policy = _snapshot_policy(args.data)
    snapshots = policy["new"][0]

    keys = ["valid", "valid_first_try", "s_per_profile_median", "s_per_profile_p90",
            "prompt_tokens_mean", "prompt_tokens_evaluated_mean", "completion_tokens_mean",
            "prompt_tok_per_s", "decode_tok_per_s"]
    print(f"\n{'':<30}{rows[0]['model']:>22}{rows[1]['model']:>22}")
    for key in keys:
        print(f"{key:<30}{rows[0][key]!s:>22}{rows[1][key]!s:>22}")
    print(f"\nbound of this machine (tokens / measured rates): {bound:.2f} s per profile")
    print(f"throughput vs naive: {speedup:.2f}x (target >= 2x: "
          f"{'MET' if speedup >= 2 else 'NOT MET'})")
    print(f"share of the bound: {share:.0%} (target >= 70%: "
          f"{'MET' if share >= 0.7 else 'NOT MET'})")
    hours = snapshots * median / 3600
    print(f"default policy on the whole Online Retail history: {snapshots:,} snapshots, "
          f"projected {hours:.2f} h at {median:.2f} s per profile (target < 1 h: "
          f"{'MET' if hours < 1 else 'NOT MET'})")
    for name, label in (("new", f"first snapshot after {DEFAULT_FIRST_AFTER} lines"),
                        ("old", f"first snapshot after {DEFAULT_MIN_NEW} lines")):
        count, cov = policy[name]
        print(f"coverage of test events ({label}, {count:,} snapshots): {cov.share:.1%} "
              f"({cov.covered:,} of {cov.events:,}; {cov.reachable:,} have a user with an "
              f"earlier line, the most any policy covers), median snapshot age "
              f"{cov.median_age_days or 0:.1f} days (target >= 90%: "
              f"{'MET' if cov.share >= 0.9 else 'NOT MET'})")
    print(f"(load average now {os.getloadavg()[0]:.2f}; timings on a shared machine vary)")
    for result in [r for r in cached if r.ok][:2]:
        print(f"\nexample, customer {result.user_id}: {result.facets.to_dict()}")


if __name__ == "__main__":
    main()
