"""Compare the candidate profiling LLMs on the same real Online Retail customers.

    .venv/bin/python bench/profile_models.py [--users 30] [--models smollm2,gemma3-270m]
                                             [--naive] [--threads N] [--out results.json]

For each model: how many answers validate (first try, after the retry), how many list entries
the model repeated, how often it copied an example's crowd segment from the system prompt
(a small model's typical failure), how many distinct segments it wrote, and speed — seconds
per profile (median, p90), prompt and decode tokens/s from llama.cpp's own counters, and the
share of prompt tokens served from the KV cache. `--naive` reruns the first model with the
cache cleared before every request, the one-chat-completion-per-profile baseline.

Customers: every k-th customer (by id) of the whole file with at least 10 purchase lines, each
profiled from the events before its last basket. Online Retail, CC BY 4.0 (see
../shared/data/online-retail/SOURCE.md).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.profiles.llm_backend import LocalLLM  # noqa: E402
from models.profiles.output import extract_json_object  # noqa: E402
from models.profiles.profiler import Profiler, ProfileResult  # noqa: E402
from models.profiles.prompt import _EXAMPLES, HistoryEvent, UserHistory  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "online-retail" / (
    "online_retail.csv.gz")
EXAMPLE_SEGMENTS = {json.loads(ex[-1])["crowd_segment"] for ex in _EXAMPLES}
EXAMPLE_INTERESTS = {i for ex in _EXAMPLES for i in json.loads(ex[-1])["interests"]}


def load_users(path: Path, n: int) -> list[UserHistory]:
    events: dict[str, list[HistoryEvent]] = defaultdict(list)
    country: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if not row["CustomerID"] or row["InvoiceNo"].startswith("C"):
                continue
            user = row["CustomerID"].split(".")[0]
            ts = int(datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=UTC).timestamp())
            events[user].append(HistoryEvent(ts, row["StockCode"], row["Description"], None,
                                             None, float(row["Quantity"])))
            country[user] = row["Country"]
    histories = []
    for user in sorted(events):
        as_of = max(e.ts for e in events[user])
        before = [e for e in events[user] if e.ts < as_of]
        if len(before) >= 10:
            histories.append(UserHistory(user, {"country": country[user]}, before, as_of=as_of))
    step = max(1, len(histories) // n)
    return histories[::step][:n]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _grounded(interest: str, history: UserHistory) -> bool:
    """An interest is grounded when one of its words (4+ letters) occurs in the user's own item
    titles or derived categories — a crude check that it was not copied or made up."""
    text = " ".join(f"{e.title} {e.derived_category or ''}"
                    for e in history.events).casefold()
    return any(w in text for w in re.findall(r"[a-z]{4,}", interest.casefold()))


def summarise(name: str, results: list[ProfileResult], load_s: float,
              users: list[UserHistory]) -> dict:
    ok = [r for r in results if r.ok]
    by_user = {h.user_id: h for h in users}
    interests = [(i, by_user[r.user_id]) for r in ok for i in r.facets.interests]
    first_ok = sum(r.ok and r.attempts == 1 for r in results)
    repeated = entries = 0
    for r in results:  # repetition in the raw first answers, before de-duplication
        try:
            obj = extract_json_object(r.raw[0])
        except ValueError:
            continue
        for key in ("interests", "preferred_categories"):
            vals = [str(v).casefold() for v in obj.get(key) or []]
            entries += len(vals)
            repeated += len(vals) - len(set(vals))
    comps = [c for r in results for c in r.completions]
    # Tokens/s over the steady state: the first request also evaluates the shared prefix.
    steady = comps[1:] or comps
    p_tok = sum(c.prompt_tokens_evaluated for c in steady)
    d_tok = sum(c.completion_tokens for c in steady)
    walls = [r.wall_s for r in results[1:]] or [r.wall_s for r in results]
    return {
        "model": name, "users": len(results), "load_s": round(load_s, 2),
        "valid": len(ok), "valid_first_try": first_ok,
        "repeated_list_entries": f"{repeated}/{entries}",
        "copied_example_segment": sum(r.facets.crowd_segment in EXAMPLE_SEGMENTS for r in ok),
        "distinct_segments": len({r.facets.crowd_segment.casefold() for r in ok}),
        "grounded_interests": f"{sum(_grounded(i, h) for i, h in interests)}/{len(interests)}",
        "copied_example_interests": sum(i in EXAMPLE_INTERESTS for i, _ in interests),
        "s_per_profile_median": round(statistics.median(walls), 2),
        "s_per_profile_p90": round(_pct(walls, 0.9), 2),
        "first_profile_s": round(results[0].wall_s, 2),
        "prompt_tokens_mean": round(statistics.mean(c.prompt_tokens for c in steady), 1),
        "prompt_tokens_evaluated_mean": round(p_tok / len(steady), 1),
        "completion_tokens_mean": round(d_tok / len(steady), 1),
        "prompt_tok_per_s": round(p_tok / max(1e-9, sum(c.prompt_eval_s for c in steady)), 1),
        "decode_tok_per_s": round(d_tok / max(1e-9, sum(c.decode_s for c in steady)), 1),
        "llama_share_of_wall": round(sum(c.prompt_eval_s + c.decode_s for c in steady)
                                     / sum(c.wall_s for c in steady), 2),
    }


def run(model: str, users: list[UserHistory], threads: int | None, naive: bool = False):
    t = time.perf_counter()
    llm = LocalLLM(model, n_threads=threads)
    load_s = time.perf_counter() - t
    profiler = Profiler(llm, reuse_prefix=not naive)
    results = []
    for i, h in enumerate(users, 1):
        results.append(profiler.profile(h))
        print(f"  {model}{' naive' if naive else ''}: {i}/{len(users)} "
              f"{results[-1].wall_s:.2f}s", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    llm.close()
    return results, load_s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--models", default="smollm2,gemma3-270m")
    ap.add_argument("--naive", action="store_true", help="also run the first model uncached")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    users = load_users(args.data, args.users)
    print(f"{len(users)} customers, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    rows, profiles = [], {}
    runs = [(m, False) for m in args.models.split(",")]
    if args.naive:
        runs.append((runs[0][0], True))
    for model, naive in runs:
        results, load_s = run(model, users, args.threads, naive)
        label = model + (" (naive: no prefix cache)" if naive else "")
        rows.append(summarise(label, results, load_s, users))
        profiles[label] = [r.to_dict() for r in results]
    keys = list(rows[0])
    width = max(len(k) for k in keys)
    print("\n" + " " * width + "  " + "  ".join(f"{r['model'][:24]:>24}" for r in rows))
    for k in keys[1:]:
        print(f"{k:<{width}}  " + "  ".join(f"{str(r[k]):>24}" for r in rows))
    print(f"(load average now {os.getloadavg()[0]:.2f}; timings on a shared machine vary)")
    for label, res in profiles.items():
        if "naive" in label:
            continue
        print(f"\n{label}, first profiles:")
        for r in res[:4]:
            print(f"  {r['user_id']}: {json.dumps(r['facets']) if r['ok'] else r['error']}")
    if args.out:
        args.out.write_text(json.dumps({"summary": rows, "profiles": profiles}, indent=1))


if __name__ == "__main__":
    main()
