"""The profile job: plan snapshots, write each (by template or with the local LLM), embed the
facets and items.

Each profile is committed as soon as it is made, so a killed job loses at most the one in
flight; a rerun skips every snapshot whose input (history + prompt or template version + writer)
is unchanged. Facet and item texts are embedded afterwards and only when their text changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.vocabulary import PROFILE_FIELDS
from storage.errors import DynllmError
from storage.profiles import (
    interaction_arrays,
    profile_states,
    save_embeddings,
    save_profile,
    store_lines_before,
    stored_text_hashes,
    user_history,
    user_record,
)
from storage.workspace import Workspace

Progress = Callable[[int, int, str], None]
# In-process `--concurrency N`: N sequences in one batched engine (models/profiles/
# batched_llm.py). Past 16 a 2-8 core machine gains nothing and the KV cache grows by seq_ctx
# cells (~47 MB for SmolLM2) per sequence.
MAX_IN_PROCESS_SEQUENCES = 16
# In-process `--engines E`: E copies of the model, each decoding on its own thread(s). Past 8 a
# laptop has no cores left to give them.
MAX_ENGINES = 8
# Who writes the facets: "template" sets them by rule from the facts and candidates the LLM's
# prompt carries (models/profiles/template.py, ~3 ms a profile with its history read); "llm" asks
# the local model or the endpoints (about a second a profile on two cores). The default is the
# template, chosen on validation: trained on it DynLLM validated level with the LLM's profiles
# with the paper model (mean best validation Recall@10, 3 seeds: Online Retail 0.0267 vs
# 0.0270, Complete Journey 0.0447 vs 0.0454, both less than the seeds' spread) and ahead with
# the text term (0.0410 vs 0.0343, 0.0460 vs 0.0457), at a thousandth of the cost; see README
# "The lift of profiles".
WRITERS = ("template", "llm")
DEFAULT_WRITER = "template"
DEFAULT_LLM = "smollm2"


def default_engines() -> int:
    """In-process engines when `--engines` is not given: one per usable core (at most
    MAX_ENGINES), each with one llama.cpp thread.

    One model on two threads is as fast on a quiet 2-core machine, but its threads spin at a
    barrier after every layer and collapse when another process takes a core (see
    llm_backend.default_threads), which is why a single model is given one core fewer than the
    machine has. Engines of one thread each never wait for one another: on a busy machine each
    just gets less time, and on a quiet one every core decodes."""
    from models.profiles.llm_backend import usable_cores

    return max(1, min(usable_cores(), MAX_ENGINES))


@dataclass
class ProfilesSummary:
    planned: int = 0  # snapshots the policy asks for (within --users / --limit)
    made: int = 0
    failed: int = 0
    skipped: int = 0  # unchanged input, already stored
    cancelled: bool = False
    seconds: float = 0.0
    llm_seconds: float = 0.0
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0
    model: str = ""
    writer: str = ""  # "template" or "llm" (see WRITERS)
    embedded: dict[str, int] = field(default_factory=dict)
    profiling_seconds: float = 0.0  # wall time of the profile phase (with requests in parallel)
    endpoints_dropped: list[str] = field(default_factory=list)  # why each failed endpoint left

    @property
    def profiles_per_second(self) -> float:
        done = self.made + self.failed
        return done / self.profiling_seconds if self.profiling_seconds else 0.0

    @property
    def seconds_per_profile(self) -> float:
        done = self.made + self.failed
        return self.llm_seconds / done if done else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["seconds_per_profile"] = round(self.seconds_per_profile, 3)
        out["profiles_per_second"] = round(self.profiles_per_second, 3)
        return out


def _store_median_price(ws: Workspace, as_of: int) -> float | None:
    """The store's median unit price over its lines strictly before `as_of` (no later price
    may reach a snapshot)."""
    from models.profiles.facts import store_median_price

    lines = store_lines_before(ws, as_of)
    return store_median_price(lines["price"], lines["value"], lines["quantity"])


def snapshot_history(ws: Workspace, user_id: int, as_of: int,
                 medians: dict[int, float | None] | None = None,
                 categories: dict[int, str] | None = None):
    """The history record a snapshot (user_id, as_of) is profiled from. `medians` caches the
    store median per as_of: a job asks for a few boundaries over thousands of snapshots.
    `categories`: item id -> derived category (jobs/taxonomy.py); None reads the stored one."""
    from dynllm_tui.jobs.taxonomy import stored_categories
    from models.profiles.prompt import UserHistory

    if medians is None:
        medians = {}
    if categories is None:
        categories = stored_categories(ws)
    if as_of not in medians:
        medians[as_of] = _store_median_price(ws, as_of)
    record = user_record(ws, user_id)
    events = [(e.ts, e.item_key, e.title, e.category, e.brand,
               1.0 if e.quantity is None else e.quantity, e.price, e.value,
               categories.get(e.item_id))
              for e in user_history(ws, user_id, as_of)]
    return UserHistory(user_id=record.external_id, attributes=record.attributes, events=events,
                       as_of=as_of, store_median_price=medians[as_of])


def _select_users(ws: Workspace, users: list[str] | None, limit: int | None,
                  plan_users: np.ndarray) -> np.ndarray | None:
    """Internal ids to profile: the given external ids, else the `limit` most active users."""
    if users:
        ids = []
        for key in users:
            row = ws.conn.execute("SELECT id FROM users WHERE external_id = ?", (key,)).fetchone()
            if row is None:
                raise DynllmError(f"unknown user id {key!r} in {ws.path}")
            ids.append(row[0])
        return np.array(ids, dtype=np.int64)
    if limit:
        rows = ws.conn.execute(
            "SELECT user_id FROM interactions GROUP BY user_id ORDER BY count(*) DESC, user_id "
            "LIMIT ?", (limit,)
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)
    return None


def stored_writer(ws: Workspace) -> str | None:
    """The writer of the workspace's profiles: "llm" when any stored profile came from a model,
    "template" when all are templates, None when there are none."""
    from models.profiles.template import TEMPLATE_WRITER

    models = {m for (m,) in ws.conn.execute("SELECT DISTINCT model FROM profiles")}
    if not models:
        return None
    return "template" if models == {TEMPLATE_WRITER} else "llm"


def choose_writer(ws: Workspace, writer: str | None, llm: str) -> str:
    """The writer a profile job uses. Given: that one. Not given: "llm" when a model or an
    endpoint was named (`llm` other than the packaged default) or when the workspace's profiles
    came from a model (hours of LLM profiles are never replaced by templates unasked), else
    DEFAULT_WRITER."""
    if writer is not None:
        if writer not in WRITERS:
            raise DynllmError(f"--writer must be one of {', '.join(WRITERS)}, not {writer!r}")
        return writer
    if llm != DEFAULT_LLM:
        return "llm"
    return stored_writer(ws) or DEFAULT_WRITER


def profiles_job(
    db_path: str | Path | None,
    *,
    writer: str | None = None,
    llm: str = DEFAULT_LLM,
    chat_format: str | None = None,
    every: str = "month",
    min_new: int | None = None,
    first_after: int | None = None,
    users: list[str] | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    embed: bool = True,
    concurrency: int = 1,
    engines: int | None = None,
    server: ServerSettings | None = None,
    encoder: str | None = None,
    re_embed: bool = False,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ProfilesSummary:
    """Make the snapshots the policy asks for (models.data.snapshots) that are not stored yet.
    `min_new` / `first_after`: None takes the policy's defaults.

    `llm` is a packaged model, a .gguf path, or comma-separated OpenAI-compatible endpoints
    (http://HOST:PORT/v1) with `concurrency` requests in flight on each; `encoder` is None (the
    packaged encoder) or one endpoint for /v1/embeddings. Servers are checked (reachable, the
    model served, the vector size) before anything is written. In-process, `engines` copies of
    the model (None: `default_engines()`) each decode `concurrency` sequences together.

    `writer`: "template" writes the facets by rule, without the LLM (which then only names the
    derived categories of a catalogue without any, once per workspace); "llm" with the model;
    None chooses as `choose_writer` says."""
    from models.data.snapshots import DEFAULT_FIRST_AFTER, DEFAULT_MIN_NEW, plan_snapshots
    from models.profiles.http_backend import is_endpoint

    server = server or ServerSettings()
    remote = is_endpoint(llm)
    llm_options = engines is not None or concurrency != 1
    if not isinstance(concurrency, int) or concurrency < 1:
        what = ("requests in flight per endpoint" if remote
                else "sequences the in-process model decodes together")
        raise DynllmError(f"--concurrency must be 1 or more ({what}), not {concurrency}")
    if concurrency > MAX_IN_PROCESS_SEQUENCES and not remote:
        raise DynllmError(f"--concurrency {concurrency} is more sequences than the in-process "
                          f"model decodes together (at most {MAX_IN_PROCESS_SEQUENCES})")
    if engines is not None and remote:
        raise DynllmError("--engines is for the in-process model; with --llm servers use "
                          "--concurrency (requests in flight per endpoint)")
    if engines is not None and (not isinstance(engines, int) or not 1 <= engines
                                <= MAX_ENGINES):
        raise DynllmError(f"--engines must be from 1 to {MAX_ENGINES} (copies of the in-process "
                          f"model, one thread each), not {engines}")
    if not remote and engines is None:
        engines = default_engines()
    if not server.timeout_s > 0:
        raise DynllmError(f"--timeout must be above 0 seconds, not {server.timeout_s:g}")
    if server.retries < 0:
        raise DynllmError(f"--retries must be 0 or more, not {server.retries}")
    if re_embed and not embed:
        raise DynllmError("--re-embed replaces the stored text vectors: it cannot go with "
                          "--no-embed")
    report = progress or (lambda done, total, phase: None)
    started = time.perf_counter()
    summary = ProfilesSummary()
    with Workspace.open(db_path, create=False) as ws:
        summary.writer = choose_writer(ws, writer, llm)
        if summary.writer == "template" and llm_options:
            raise DynllmError("--engines and --concurrency are for the LLM writer; the template "
                              "writer needs neither (add --writer llm to profile with the LLM)")
        log = interaction_arrays(ws)
        if not len(log["ts"]):
            raise DynllmError(f"{ws.path} has no interactions: import a purchase log first")
        try:
            plan = plan_snapshots(log["user"], log["ts"], every,
                                  DEFAULT_MIN_NEW if min_new is None else min_new,
                                  DEFAULT_FIRST_AFTER if first_after is None else first_after)
        except ValueError as exc:
            raise DynllmError(str(exc)) from None
        chosen = _select_users(ws, users, limit, plan.user)
        keep = np.ones(len(plan), dtype=bool) if chosen is None else np.isin(plan.user, chosen)
        todo = list(zip(plan.user[keep].tolist(), plan.as_of[keep].tolist(), strict=True))
        summary.planned = len(todo)
        # Every server is asked before anything is written: a wrong URL, model or vector size
        # must not surface hours later.
        text_encoder = _encoder(encoder, server) if embed else None
        if text_encoder is not None and not re_embed:
            _check_dimension(ws, text_encoder, encoder)
        llms = _connect(llm, server) if remote else []
        if summary.writer == "template":
            from models.profiles.template import TEMPLATE_WRITER

            summary.model = TEMPLATE_WRITER
        else:
            summary.model = llms[0].name if remote else _resolve(llm, chat_format).name
        try:
            if text_encoder is not None and re_embed:
                _drop_other_vectors(ws, text_encoder.name)
            if encoder is not None and text_encoder is not None:
                # An endpoint's item vectors go in first: the derived categories (computed
                # before profiling) then see vectors of the endpoint's size in the workspace and
                # do not store the packaged encoder's beside them.
                summary.embedded = _embed(ws, text_encoder, report, cancel, close=False)
            _make_profiles(ws, todo, summary, llm, chat_format, llms, concurrency,
                           engines or 1, retry_failed, report, cancel)
            if text_encoder is not None and not summary.cancelled:
                for kind, n in _embed(ws, text_encoder, report, cancel).items():
                    summary.embedded[kind] = summary.embedded.get(kind, 0) + n
        finally:
            for backend in llms:
                backend.close()
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass(frozen=True)
class ServerSettings:
    """How to talk to OpenAI-compatible endpoints (see models/profiles/http_backend.py)."""

    llm_model: str | None = None  # None: the endpoint's only model
    encoder_model: str | None = None
    response_format: str = "json_object"  # "json_schema" for vLLM
    timeout_s: float = 120.0
    retries: int = 3


def _connect(llm: str, server: ServerSettings) -> list:
    """One ServerLLM per endpoint, all serving the same model name (it enters input hashes)."""
    from models.profiles.errors import EndpointError
    from models.profiles.http_backend import ServerLLM, parse_endpoints

    backends: list = []
    try:
        for url in parse_endpoints(llm, "--llm"):
            backends.append(ServerLLM(url, server.llm_model,
                                      response_format=server.response_format,
                                      timeout_s=server.timeout_s, retries=server.retries))
    except EndpointError as exc:
        for backend in backends:
            backend.close()
        raise DynllmError(str(exc)) from None
    names = {b.name for b in backends}
    if len(names) > 1:
        for backend in backends:
            backend.close()
        raise DynllmError("the endpoints serve different models ("
                          + ", ".join(f"{b.url}: {b.name}" for b in backends)
                          + "); profiles from one run must come from one model: choose it with "
                          "--llm-model")
    return backends


def _encoder(spec: str | None, server: ServerSettings):
    """The packaged encoder (loads on first use) or a checked endpoint encoder."""
    if spec is None:
        from models.profiles.text_encoder import TextEncoder

        return TextEncoder()
    from models.profiles.errors import EndpointError
    from models.profiles.http_backend import ServerEncoder, parse_endpoints

    try:
        urls = parse_endpoints(spec, "--encoder")
        if len(urls) > 1:
            raise EndpointError("--encoder takes one endpoint, not several")
        return ServerEncoder(urls[0], server.encoder_model, timeout_s=server.timeout_s,
                             retries=server.retries)
    except EndpointError as exc:
        raise DynllmError(str(exc)) from None


def _check_dimension(ws: Workspace, encoder, spec: str | None) -> None:
    """Refuse vectors of another size than those stored: training stacks item and facet vectors
    into one matrix, and a workspace with two sizes could not be trained on."""
    rows = ws.conn.execute(
        "SELECT model, dim, count(*) FROM embeddings WHERE dim != ? GROUP BY model, dim",
        (int(encoder.dim),)).fetchall()
    if not rows:
        return
    stored = ", ".join(f"{n:,} of {dim} dimensions from {model}" for model, dim, n in rows)
    source = spec or "the packaged encoder"
    raise DynllmError(
        f"{ws.path} holds text vectors of another size ({stored}) than {source} gives "
        f"({encoder.dim} dimensions from {encoder.name}); refusing to mix them. Keep them by "
        "giving the encoder that made them (--encoder URL for a server's), or replace them: "
        "dynllm-tui profiles "
        + (f"--encoder {spec} " if spec else "") + "--re-embed"
    )


def _embed(ws: Workspace, encoder, report: Progress, cancel: Callable[[], bool] | None, *,
           close: bool = True) -> dict[str, int]:
    from models.profiles.errors import EndpointError

    try:
        return embed_texts(ws, encoder=encoder, progress=report, cancel=cancel)
    except EndpointError as exc:
        raise DynllmError(f"{exc}; the vectors committed so far are kept, rerun to resume "
                          "(profiles already made are not redone)") from None
    finally:
        if close and hasattr(encoder, "close"):
            encoder.close()


def _drop_other_vectors(ws: Workspace, keep_model: str) -> None:
    """--re-embed: forget every vector of another encoder, so one size remains."""
    with ws.transaction() as conn:
        conn.execute("DELETE FROM embeddings WHERE model != ?", (keep_model,))


def _make_profiles(ws: Workspace, todo: list[tuple[int, int]], summary: ProfilesSummary,
                   llm: str, chat_format: str | None, llms: list, concurrency: int,
                   engines: int, retry_failed: bool, report: Progress,
                   cancel: Callable[[], bool] | None) -> None:
    """Profile every snapshot of `todo` whose input changed, committing each as it comes.

    In-process: `engines` BatchedLLMs (loaded when the first profile is needed), each
    decoding `concurrency` sequences together with jump-forward (what the answer's schema
    forces is evaluated in a batch, not decoded a token a call: models/profiles/answer_shape.py),
    fed by a thread pool of engines x concurrency workers (llama.cpp releases the GIL while it
    decodes); one engine of one sequence is the single-model path. Servers: len(llms) x
    concurrency requests in flight. Histories are read and results written here, in the thread
    that owns the SQLite connection. When an endpoint fails for good (or the batched engine
    refuses a request), nothing more is sent, the requests in flight are awaited and
    committed, and the failure is raised."""
    from dynllm_tui.jobs.taxonomy import derived_categories
    from models.profiles.prompt import PROMPT_VERSION, input_hash
    from models.profiles.template import TEMPLATE_VERSION, TemplateWriter

    states = profile_states(ws)
    medians: dict[int, float | None] = {}
    # A catalogue without categories gets the derived taxonomy (computed once, then cached).
    from models.profiles.errors import EndpointError

    try:
        categories = derived_categories(ws, llm=llm, chat_format=chat_format,
                                        backend=llms[0] if llms else None, progress=report)
    except EndpointError as exc:  # the taxonomy's names come from the same endpoint
        raise DynllmError(f"{exc}; naming the derived categories failed, no profile was "
                          "made") from None
    profiling_started = time.perf_counter()
    done = 0
    pool = _ProfilePool(llms, concurrency) if llms else None
    loaded: list = []
    failure: Exception | None = None
    template = TemplateWriter() if summary.writer == "template" else None
    version = TEMPLATE_VERSION if template is not None else PROMPT_VERSION

    def commit(user_id: int, as_of: int, n_events: int, result) -> None:
        nonlocal done
        _store(ws, user_id, as_of, n_events, result)
        summary.made += result.ok
        summary.failed += not result.ok
        summary.llm_seconds += result.wall_s
        summary.prompt_tokens += result.prompt_tokens
        summary.prompt_tokens_evaluated += result.prompt_tokens_evaluated
        summary.completion_tokens += result.completion_tokens
        done += 1
        report(done, len(todo), "profiles")

    try:
        for user_id, as_of in todo:
            if cancel is not None and cancel():
                summary.cancelled = True
                break
            history = snapshot_history(ws, user_id, as_of, medians, categories)
            stored = states.get((user_id, as_of))
            unchanged = stored is not None and stored[1] == input_hash(
                history, version, summary.model)
            if unchanged and not (retry_failed and stored[0] == "failed"):
                summary.skipped += 1
                done += 1
                report(done, len(todo), "profiles")
                continue
            if template is not None:  # no model: written and committed here, in order
                commit(user_id, as_of, len(history.events), template.profile(history))
                continue
            if pool is None:
                loaded.extend(_load_engines(llm, chat_format, concurrency, engines))
                pool = _ProfilePool(loaded, concurrency)
            # Wait for a free worker first (committing what finishes), then look at the
            # cancel flag again: a cancel that came meanwhile must stop this request too.
            pool.wait_for_room(commit)
            if cancel is not None and cancel():
                summary.cancelled = True
                break
            failure = pool.submit((user_id, as_of, len(history.events)), history, commit)
            if failure is not None:
                break
        if pool is not None:
            failure = pool.drain(commit) or failure
            summary.endpoints_dropped = list(pool.dropped)
    finally:
        if pool is not None:
            pool.close()
        for engine in loaded:
            engine.close()
    summary.profiling_seconds = time.perf_counter() - profiling_started
    if failure is not None:
        raise DynllmError(f"{failure}; profiles stopped — {summary.made + summary.failed} made "
                          "in this run are kept, rerun to resume") from None


def _backend_key(backend) -> str:
    """What names a backend in the pool: a server's URL, the in-process engine's model name."""
    return getattr(backend, "url", None) or backend.name


class _ProfilePool:
    """len(llms) x concurrency Profilers, each used by one request at a time, run by a thread
    pool with as many workers; submit() blocks while all are busy, committing what finished.
    `llms` are endpoints (ServerLLM) or the in-process BatchedLLMs, whose `concurrency`
    sequences each the Profilers share.

    An endpoint that fails for good while others still answer is dropped (its Profilers leave
    the pool) and its request is sent again to the others; only the failure of the last one
    ends the run. `dropped` keeps one line per endpoint dropped. A request the batched engine
    refuses (a prompt too long for a sequence, the engine closed) ends the run the same way."""

    def __init__(self, llms: list, concurrency: int) -> None:
        import queue
        from concurrent.futures import ThreadPoolExecutor

        from models.profiles.profiler import Profiler

        self._idle: queue.Queue = queue.Queue()
        # Round-robin over endpoints, so N requests spread over all servers before any gets two.
        for _ in range(concurrency):
            for backend in llms:
                self._idle.put(Profiler(backend))
        self.size = len(llms) * concurrency
        self._alive = {_backend_key(backend) for backend in llms}
        self.dropped: list[str] = []
        self._executor = ThreadPoolExecutor(max_workers=self.size,
                                            thread_name_prefix="profile-request")
        self._in_flight: dict = {}
        self._failure: Exception | None = None

    def _run(self, history):
        from models.profiles.errors import EndpointError

        profiler = self._idle.get()
        while _backend_key(profiler.llm) not in self._alive:  # a dropped endpoint's: leaves
            profiler = self._idle.get()
        try:
            return profiler.profile(history)
        except EndpointError as exc:
            exc.endpoint = _backend_key(profiler.llm)  # which one failed, for the failover
            raise
        finally:
            self._idle.put(profiler)

    def _collect(self, commit, *, block: bool) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        from models.profiles.batched_llm import EngineClosedError, PromptTooLongError
        from models.profiles.errors import EndpointError

        if not self._in_flight:
            return
        finished, _ = wait(list(self._in_flight), timeout=None if block else 0,
                           return_when=FIRST_COMPLETED)
        for future in finished:
            key, history = self._in_flight.pop(future)
            try:
                result = future.result()
            except EndpointError as exc:
                url = getattr(exc, "endpoint", None)
                # The last endpoint is never dropped: its Profilers must stay in the pool so
                # that queued requests fail quickly instead of waiting for one forever.
                if self._failure is None and url in self._alive and len(self._alive) > 1:
                    self._alive.discard(url)
                    self.dropped.append(str(exc))
                if self._failure is None and self._alive - {url}:
                    self._in_flight[self._executor.submit(self._run, history)] = (key, history)
                else:
                    self._failure = self._failure or exc
                continue
            except (PromptTooLongError, EngineClosedError) as exc:
                self._failure = self._failure or type(exc)(
                    f"user {history.user_id}, snapshot at {history.as_of}: {exc}")
                continue
            commit(*key, result)

    def wait_for_room(self, commit) -> None:
        """Block while every worker is busy (or until a failure), committing what finishes."""
        while len(self._in_flight) >= self.size and self._failure is None:
            self._collect(commit, block=True)

    def submit(self, key: tuple[int, int, int], history, commit) -> Exception | None:
        """Queue one history; returns the endpoint failure that ends the run, if any."""
        while len(self._in_flight) >= self.size and self._failure is None:
            self._collect(commit, block=True)
        self._collect(commit, block=False)
        if self._failure is not None:
            return self._failure
        self._in_flight[self._executor.submit(self._run, history)] = (key, history)
        return None

    def drain(self, commit) -> Exception | None:
        while self._in_flight:
            self._collect(commit, block=True)
        return self._failure

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _resolve(llm: str, chat_format: str | None):
    from models.profiles.errors import ModelLoadError
    from models.profiles.llm_backend import resolve_model

    try:
        return resolve_model(llm, chat_format)
    except ModelLoadError as exc:
        raise DynllmError(str(exc)) from None


def _load_engines(llm: str, chat_format: str | None, sequences: int, engines: int) -> list:
    """The in-process batched engines: `engines` copies of the model, each decoding
    `sequences` requests together. One engine takes llm_backend.default_threads(); several
    share the usable cores, one llama.cpp thread each at least (see default_engines)."""
    from models.profiles.batched_llm import BatchedLLM
    from models.profiles.errors import ModelLoadError
    from models.profiles.llm_backend import default_threads

    threads = default_threads() if engines == 1 else max(1, default_engines() // engines)
    loaded: list = []
    try:
        for _ in range(engines):
            loaded.append(BatchedLLM(llm, chat_format=chat_format, n_seq=sequences,
                                     n_threads=threads))
    except ModelLoadError as exc:
        for engine in loaded:
            engine.close()
        raise DynllmError(str(exc)) from None
    return loaded


def _store(ws: Workspace, user_id: int, as_of: int, n_events: int, result) -> None:
    facets = result.facets.to_dict() if result.ok else {}
    save_profile(ws, user_id, as_of, {
        "status": "ok" if result.ok else "failed",
        **{k: facets.get(k) for k in PROFILE_FIELDS},
        "categories_source": result.categories_source,
        "brands_source": result.brands_source,
        "n_events": n_events,
        "model": result.model,
        "prompt_version": result.prompt_version,
        "input_hash": result.input_hash,
        "raw": result.raw[-1] if result.raw else None,
        "error": result.error,
        "prompt_tokens": result.prompt_tokens,
        "output_tokens": result.completion_tokens,
        "seconds": round(result.wall_s, 4),
    })


def stored_encoder_name(ws: Workspace) -> str:
    """The encoder whose vectors training reads: the one that embedded the profile facets when
    only one did, else the one that embedded the items when only one did (after `--re-embed`
    only one remains), else the packaged encoder. Facets first: the derived categories may have
    stored the packaged encoder's item vectors beside an endpoint's of the same size."""
    from models.profiles.text_encoder import TextEncoder

    for kinds in ("kind LIKE 'profile.%'", "kind = 'item'"):
        models = [m for (m,) in ws.conn.execute(
            f"SELECT DISTINCT model FROM embeddings WHERE {kinds}")]
        if len(models) == 1:
            return models[0]
        if models:
            break
    return TextEncoder().name


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def facet_texts(ws: Workspace) -> dict[str, list[tuple[str, str]]]:
    """kind -> [(key, text)] of every text to embed: each facet of each ok profile, each item."""
    out = profile_facet_texts(ws)
    out["item"] = [(str(i), text or "") for i, text in
                   ws.conn.execute("SELECT id, text FROM items ORDER BY id")]
    return out


def profile_facet_texts(ws: Workspace) -> dict[str, list[tuple[str, str]]]:
    """"profile.FIELD" -> [("user@as_of", text)] for each facet of each ok profile, as the
    encoder embeds it (lists joined with '; ')."""
    from models.profiles.output import ProfileFacets

    out: dict[str, list[tuple[str, str]]] = {f"profile.{f}": [] for f in PROFILE_FIELDS}
    for user_id, as_of, *values in ws.conn.execute(
        f"SELECT user_id, as_of, {', '.join(PROFILE_FIELDS)} FROM profiles WHERE status = 'ok'"
    ):
        facets = ProfileFacets(values[0] or "", *(json.loads(v or "[]") for v in values[1:]))
        for facet, text in facets.texts().items():
            out[f"profile.{facet}"].append((f"{user_id}@{as_of}", text))
    return out


def embed_texts(
    ws: Workspace,
    *,
    encoder: Any = None,
    batch_size: int = 64,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Embed every facet and item text whose vector is missing or stale; returns counts by kind.
    Each batch is committed, so an interrupted run resumes where it stopped. `encoder`: anything
    with `name` and `encode(texts)`; None is the packaged TextEncoder.

    Each distinct text is encoded once: the rows are taken in text order and cut into batches
    of `batch_size` distinct texts, so equal texts (an absent facet's empty text, the thousand
    distinct segments of six thousand profiles, repeated category lists) share one vector."""
    if encoder is None:
        from models.profiles.text_encoder import TextEncoder

        encoder = TextEncoder()
    todo: list[tuple[str, str, str, str]] = []
    for kind, rows in facet_texts(ws).items():
        stored = stored_text_hashes(ws, kind, encoder.name)
        todo += [(kind, key, text, _text_hash(text)) for key, text in rows
                 if stored.get(key) != _text_hash(text)]
    todo.sort(key=lambda row: row[2])
    counts: dict[str, int] = {}
    done = 0
    for batch in _distinct_batches(todo, batch_size):
        if cancel is not None and cancel():
            break
        distinct = list(dict.fromkeys(text or " " for _, _, text, _ in batch))
        vector_of = dict(zip(distinct, encoder.encode(distinct), strict=True))
        by_kind: dict[str, list] = {}
        for kind, key, text, digest in batch:
            by_kind.setdefault(kind, []).append((key, digest, vector_of[text or " "]))
        for kind, rows in by_kind.items():
            save_embeddings(ws, kind, encoder.name, rows)
            counts[kind] = counts.get(kind, 0) + len(rows)
        done += len(batch)
        if progress is not None:
            progress(done, len(todo), "embeddings")
    return counts


def _distinct_batches(rows: list[tuple[str, str, str, str]], size: int):
    """Consecutive runs of `rows` ((kind, key, text, digest), sorted by text) holding at most
    `size` distinct texts each: one encoder batch each, however many rows share a text."""
    batch: list = []
    distinct: set[str] = set()
    for row in rows:
        text = row[2] or " "
        if text not in distinct and len(distinct) == size:
            yield batch
            batch, distinct = [], set()
        batch.append(row)
        distinct.add(text)
    if batch:
        yield batch
