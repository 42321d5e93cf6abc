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
    it projects at the measured rate;
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

from profile_models import DATA, load_users, run, summarise  # noqa: E402


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


def _snapshot_count(data: Path) -> int:
    """Snapshots the default policy makes over the whole file (import into a temp workspace)."""
    from models.data.snapshots import DEFAULT_MIN_NEW, plan_snapshots
    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.profiles import interaction_arrays
    from storage.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp, Workspace.open(Path(tmp) / "ws.db") as ws:
        run_import(ws, preset_spec("online-retail", data))
        log = interaction_arrays(ws)
    return len(plan_snapshots(log["user"], log["ts"], "month", DEFAULT_MIN_NEW))


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
    snapshots = _snapshot_count(args.data)

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
          f"projected {hours:.2f} h at {median:.2f} s per profile (target < 2 h: "
          f"{'MET' if hours < 2 else 'NOT MET'})")
    print(f"(load average now {os.getloadavg()[0]:.2f}; timings on a shared machine vary)")
    for result in [r for r in cached if r.ok][:2]:
        print(f"\nexample, customer {result.user_id}: {result.facets.to_dict()}")


if __name__ == "__main__":
    main()
