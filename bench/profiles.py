"""Profile throughput: the default model on real customers, against the naive way, in one run.

    .venv/bin/python bench/profiles.py [--users 50] [--model smollm2] [--threads N]
                                       [--concurrency 1,2,4] [--engines E,E] [--server-only]
                                       [--no-server] [--db WORKSPACE] [--jump both|on|off]

Prints, for the same customers (every k-th Online Retail customer with 10+ lines, profiled from
the events before their last basket, with the country only; or, with `--db`, every k-th
snapshot of the default policy in that workspace, its history built as the profile job builds
it: derived categories, prices, the store's median price — the prompts the job really sends,
~215 user tokens on Online Retail against ~150 for the plain customers):
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
  - two example profiles;
  - the in-process engines beside LocalLLM (one `create_chat_completion` at a time), on the same
    customers in the same run, as profiles/s and s/profile of wall time: `BatchedLLM`
    (models/profiles/batched_llm.py) with one sequence and the grammar applied to the whole
    vocabulary at every token, the same with the lazy grammar (only the sampled token is
    checked; resampled under the grammar when refused), E engines of one sequence side by side
    with the cores shared among them (`--engines`; the profile job's default is one engine of
    one thread per core), and one engine decoding N sequences together (`--concurrency`),
    each row with the share of tokens the lazy grammar resampled, the tokens a llama_decode
    call carried and the share of time in sampling; each in-process engine row without and with
    jump-forward (`--jump`: the text the schema forces evaluated in a batch, not decoded;
    models/profiles/answer_shape.py), with the share of output tokens forced, and what the
    answers are like (distinct segments, segments and interests copied from the prompt's
    examples, interests grounded in the customer's titles), so a faster row is seen to write
    profiles as good;
  - the server path beside them: `python -m llama_cpp.server` on the same GGUF with the same
    thread count, profiled through `ServerLLM` with 1, 2 and 4 requests in flight
    (`--concurrency`; `--no-server` skips these rows);
  - the projection of the whole store (the default policy's snapshots) at the best measured
    rate of each path (`--server-only` skips the naive run, the coverage and the examples).
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


def load_snapshots(db: Path, n: int) -> list:
    """`n` snapshots of the default policy in workspace `db` (every k-th of the plan, which is
    in time order), each history built exactly as the profile job builds it: the derived
    categories of the stored taxonomy, prices, the store's median price before as_of."""
    from dynllm_tui.jobs.profiles import snapshot_history
    from dynllm_tui.jobs.taxonomy import stored_categories
    from models.data.snapshots import plan_snapshots
    from storage.profiles import interaction_arrays
    from storage.workspace import Workspace

    with Workspace.open(db, create=False) as ws:
        log = interaction_arrays(ws)
        plan = plan_snapshots(log["user"], log["ts"], "month", DEFAULT_MIN_NEW,
                              DEFAULT_FIRST_AFTER)
        step = max(1, len(plan) // n)
        categories, medians = stored_categories(ws), {}
        return [snapshot_history(ws, int(u), int(a), medians, categories)
                for u, a in zip(plan.user[::step][:n], plan.as_of[::step][:n], strict=True)]


def _start_server(model_path: Path, threads: int, port: int, log: Path):
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1:port; returns the process once
    GET /v1/models answers."""
    import subprocess
    import time
    import urllib.request

    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
             "--model_alias", "bench", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads),
             "--verbose", "false"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited: {log.read_text()[-1000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start within 120 s")


def _server_rows(model: str, users, threads: int | None, levels: list[int]) -> list[dict]:
    """Profiles/s and s/profile (wall) through the server at each concurrency level."""
    import socket
    import time

    from models.profiles.http_backend import ServerLLM
    from models.profiles.llm_backend import default_threads, resolve_model
    from models.profiles.profiler import Profiler

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = _start_server(resolve_model(model).path, threads or default_threads(), port,
                             Path(tmp) / "server.log")
        rows = []
        try:
            llm = ServerLLM(f"http://127.0.0.1:{port}/v1")
            Profiler(llm).profile(users[0])  # warm the server's prompt cache, as in-process
            for level in levels:
                start = time.perf_counter()
                results = _profile_concurrently([Profiler(llm) for _ in range(level)],
                                                users[1:])
                wall = time.perf_counter() - start
                rows.append({"path": f"server, concurrency {level}", "wall_s": wall,
                             "valid": sum(r.ok for r in results), "n": len(results)})
            llm.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return rows


def _profile_concurrently(profilers: list, histories: list) -> list:
    """Every history profiled by one of `profilers`, as many requests in flight as there are
    profilers, each request taking whichever profiler is idle (the profile job's pool does the
    same, so no engine waits while another idles)."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    idle: queue.Queue = queue.Queue()
    for profiler in profilers:
        idle.put(profiler)

    def one(history):
        profiler = idle.get()
        try:
            return profiler.profile(history)
        finally:
            idle.put(profiler)

    with ThreadPoolExecutor(len(profilers)) as pool:
        return list(pool.map(one, histories))


def _quality(results, users) -> str:
    """What the answers are like, so that a faster path is seen to write profiles as good:
    distinct segments, segments and interests copied from the prompt's examples, interests
    grounded in the customer's own titles (bench/profile_models.py's measures)."""
    row = summarise("", results, 0.0, users)
    return (f"{row['distinct_segments']} distinct segments, {row['copied_example_segment']} "
            f"copied; interests grounded {row['grounded_interests']}, "
            f"{row['copied_example_interests']} copied")


def _engine_rows(model: str, users, configs: list[tuple[int, int, int | None, bool, bool]]
                 ) -> list[dict]:
    """Profiles/s and s/profile (wall) through in-process batched engines, for each config
    (engines, sequences per engine, llama.cpp threads per engine, lazy grammar, jump-forward):
    engines x sequences requests in flight, each with a Profiler of its own (the profile job's
    pool)."""
    import time

    from models.profiles.batched_llm import BatchedLLM
    from models.profiles.profiler import Profiler

    rows = []
    for n_engines, n_seq, threads, lazy, jump in configs:
        engines = [BatchedLLM(model, n_seq=n_seq, n_threads=threads, lazy_grammar=lazy,
                              jump_forward=jump)
                   for _ in range(n_engines)]
        try:
            for engine in engines:  # the shared prefix into each cache, as in-process
                Profiler(engine).profile(users[0])
            before = [(e.decode_calls, e.batch_tokens, e.sample_s, e.grammar_checks,
                       e.grammar_rejects) for e in engines]
            start = time.perf_counter()
            results = _profile_concurrently(
                [Profiler(e) for e in engines for _ in range(n_seq)], users[1:])
            wall = time.perf_counter() - start
            after = [(e.decode_calls, e.batch_tokens, e.sample_s, e.grammar_checks,
                      e.grammar_rejects) for e in engines]
            calls, tokens, sampling, checks, rejects = (
                sum(a[k] - b[k] for a, b in zip(after, before, strict=True)) for k in range(5))
            grammar = (f"lazy grammar, {rejects / checks:.0%} of tokens resampled"
                       if lazy and checks else "grammar over the vocabulary every token")
            output = sum(c.completion_tokens for r in results for c in r.completions)
            forced = sum(c.forced_tokens for r in results for c in r.completions)
            if jump:
                grammar += f"; {forced / max(1, output):.0%} of {output} output tokens forced"
            rows.append({
                "path": f"{n_engines} engine{'s' * (n_engines > 1)} x {n_seq} seq x "
                        f"{engines[0].threads} thr{' +jump' if jump else ''}",
                "wall_s": wall, "valid": sum(r.ok for r in results), "n": len(results),
                "note": f"{grammar}; {tokens / calls:.1f} tokens a decode call; sampling "
                        f"{sampling / wall / n_engines:.0%} of each engine's wall; "
                        f"{_quality(results, users[1:])}"})
        finally:
            for engine in engines:
                engine.close()
    return rows


def _print_throughput(rows: list[dict], snapshots: int | None = None) -> None:
    print(f"\n{'path':<32}{'profiles':>9}{'valid':>7}{'wall s':>9}{'profiles/s':>12}"
          f"{'s/profile':>11}{'whole store h':>15}  note")
    for row in rows:
        per = row["wall_s"] / row["n"]
        hours = f"{snapshots * per / 3600:.2f}" if snapshots else "-"
        print(f"{row['path']:<32}{row['n']:>9}{row['valid']:>7}{row['wall_s']:>9.1f}"
              f"{row['n'] / row['wall_s']:>12.3f}{per:>11.2f}{hours:>15}  {row.get('note', '')}")
    best = min(rows, key=lambda r: r["wall_s"] / r["n"])
    base = rows[0]["wall_s"] / rows[0]["n"]
    per = best["wall_s"] / best["n"]
    line = (f"best: {best['path']}, {per:.2f} s/profile, {base / per:.2f}x the "
            f"{rows[0]['path']} row")
    if snapshots:
        hours = snapshots * per / 3600
        line += (f"; whole Online Retail store ({snapshots:,} snapshots of the default policy) "
                 f"projected {hours:.2f} h (target < 1 h: {'MET' if hours < 1 else 'NOT MET'})")
    print(line)


def _engine_specs(text: str) -> list[tuple[int, int]]:
    """"2,2x3" -> [(2, 1), (2, 3)]: engines, and sequences decoded together by each."""
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            engines, _, seqs = part.partition("x")
            specs.append((int(engines), int(seqs or 1)))
    return specs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--concurrency", default="1,2,4", metavar="N,N",
                        help="server rows: requests in flight; batched rows: sequences "
                        "(empty: neither)")
    parser.add_argument("--server-only", action="store_true",
                        help="only the throughput rows (in-process, batched, server) and the "
                        "projection")
    parser.add_argument("--no-server", action="store_true", help="no server rows")
    parser.add_argument("--engines", default=None, metavar="E,ExN",
                        help="rows of E in-process engines, the usable cores shared among "
                        "them, each decoding N sequences together (default N 1; default "
                        "row: the profile job's default, one engine per core; empty: none)")
    parser.add_argument("--db", type=Path, default=None,
                        help="take the customers from this workspace instead: snapshots of "
                        "the default policy, each history built as the profile job builds it "
                        "(derived categories, prices, the store's median price)")
    parser.add_argument("--jump", choices=("both", "on", "off"), default="both",
                        help="in-process rows with jump-forward, without it, or both")
    args = parser.parse_args(argv)

    users = load_snapshots(args.db, args.users) if args.db else load_users(args.data, args.users)
    print(f"{len(users)} real customers{f' (snapshots of {args.db})' if args.db else ''}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    cached, cached_load = run(args.model, users, args.threads)
    levels = [int(n) for n in args.concurrency.split(",") if n.strip()]
    # Both paths are timed on users[1:]: the first profile warms the prompt cache of each.
    from dynllm_tui.jobs.profiles import default_engines
    from models.profiles.llm_backend import default_threads

    threads = args.threads or default_threads()
    cores = default_engines()
    throughput = [{"path": f"LocalLLM x {threads} thr", "wall_s": sum(r.wall_s for r in cached[1:]),
                   "valid": sum(r.ok for r in cached[1:]), "n": len(cached) - 1,
                   "note": "grammar over the vocabulary every token (create_chat_completion)"}]
    engines = (_engine_specs(args.engines) if args.engines is not None else [(cores, 1)])
    # Each in-process path without jump-forward (every output token decoded) and with it.
    jumps = (False, True) if args.jump == "both" else (args.jump == "on",)
    configs = [(1, 1, threads, False, False)]
    configs += [(1, 1, threads, True, j) for j in jumps]
    configs += [(e, n, max(1, cores // e), True, j) for e, n in engines for j in jumps]
    configs += [(1, n, threads, True, j) for n in levels if n > 1 for j in jumps]
    throughput += _engine_rows(args.model, users, list(dict.fromkeys(configs)))
    if levels and not args.no_server:
        throughput += _server_rows(args.model, users, args.threads, levels)
    policy = _snapshot_policy(args.data)
    _print_throughput(throughput, policy["new"][0])
    if args.server_only:
        print(f"(load average now {os.getloadavg()[0]:.2f}; timings on a shared machine vary)")
        return
    naive, naive_load = run(args.model, users, args.threads, naive=True)
    rows = [summarise(args.model, cached, cached_load, users),
            summarise(f"{args.model} naive", naive, naive_load, users)]
    bound = _bound_s(cached)
    median = rows[0]["s_per_profile_median"]
    speedup = rows[1]["s_per_profile_median"] / median
    share = bound / median
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
