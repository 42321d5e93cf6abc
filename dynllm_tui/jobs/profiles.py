"""The profile job: plan snapshots, write each with the local LLM, embed the facets and items.

Each profile is committed as soon as it is made, so a killed job loses at most the one in
flight; a rerun skips every snapshot whose input (history + prompt version + model) is
unchanged. Facet and item texts are embedded afterwards and only when their text changed.
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
    embedded: dict[str, int] = field(default_factory=dict)

    @property
    def seconds_per_profile(self) -> float:
        done = self.made + self.failed
        return self.llm_seconds / done if done else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["seconds_per_profile"] = round(self.seconds_per_profile, 3)
        return out


def _store_median_price(ws: Workspace, as_of: int) -> float | None:
    """The store's median unit price over its lines strictly before `as_of` (no later price
    may reach a snapshot)."""
    from models.profiles.facts import store_median_price

    lines = store_lines_before(ws, as_of)
    return store_median_price(lines["price"], lines["value"], lines["quantity"])


def _history_for(ws: Workspace, user_id: int, as_of: int,
                 medians: dict[int, float | None] | None = None):
    """The history record a snapshot (user_id, as_of) is profiled from. `medians` caches the
    store median per as_of: a job asks for a few boundaries over thousands of snapshots."""
    from models.profiles.prompt import UserHistory

    if medians is None:
        medians = {}
    if as_of not in medians:
        medians[as_of] = _store_median_price(ws, as_of)
    record = user_record(ws, user_id)
    events = [(e.ts, e.item_key, e.title, e.category, e.brand,
               1.0 if e.quantity is None else e.quantity, e.price, e.value)
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


def profiles_job(
    db_path: str | Path | None,
    *,
    llm: str = "smollm2",
    chat_format: str | None = None,
    every: str = "month",
    min_new: int | None = None,
    first_after: int | None = None,
    users: list[str] | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    embed: bool = True,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ProfilesSummary:
    """Make the snapshots the policy asks for (models.data.snapshots) that are not stored yet.
    `min_new` / `first_after`: None takes the policy's defaults."""
    from models.data.snapshots import DEFAULT_FIRST_AFTER, DEFAULT_MIN_NEW, plan_snapshots

    report = progress or (lambda done, total, phase: None)
    started = time.perf_counter()
    summary = ProfilesSummary()
    with Workspace.open(db_path, create=False) as ws:
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
        states = profile_states(ws)
        from models.profiles.prompt import PROMPT_VERSION, input_hash

        model_name = _resolve(llm, chat_format).name  # checks the file; loads nothing yet
        summary.model = model_name
        profiler = None
        medians: dict[int, float | None] = {}
        for position, (user_id, as_of) in enumerate(todo):
            if cancel is not None and cancel():
                summary.cancelled = True
                break
            history = _history_for(ws, user_id, as_of, medians)
            stored = states.get((user_id, as_of))
            unchanged = stored is not None and stored[1] == input_hash(
                history, PROMPT_VERSION, model_name)
            if unchanged and not (retry_failed and stored[0] == "failed"):
                summary.skipped += 1
                report(position + 1, len(todo), "profiles")
                continue
            if profiler is None:
                profiler = _load_profiler(llm, chat_format)
            result = profiler.profile(history)
            _store(ws, user_id, as_of, len(history.events), result)
            summary.made += result.ok
            summary.failed += not result.ok
            summary.llm_seconds += result.wall_s
            summary.prompt_tokens += result.prompt_tokens
            summary.prompt_tokens_evaluated += result.prompt_tokens_evaluated
            summary.completion_tokens += result.completion_tokens
            report(position + 1, len(todo), "profiles")
        if profiler is not None:
            profiler.llm.close()
        if embed and not summary.cancelled:
            summary.embedded = embed_texts(ws, progress=report, cancel=cancel)
    summary.seconds = time.perf_counter() - started
    return summary


def _resolve(llm: str, chat_format: str | None):
    from models.profiles.errors import ModelLoadError
    from models.profiles.llm_backend import resolve_model

    try:
        return resolve_model(llm, chat_format)
    except ModelLoadError as exc:
        raise DynllmError(str(exc)) from None


def _load_profiler(llm: str, chat_format: str | None):
    from models.profiles.errors import ModelLoadError
    from models.profiles.llm_backend import LocalLLM
    from models.profiles.profiler import Profiler

    try:
        return Profiler(LocalLLM(llm, chat_format=chat_format))
    except ModelLoadError as exc:
        raise DynllmError(str(exc)) from None


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
    batch_size: int = 64,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Embed every facet and item text whose vector is missing or stale; returns counts by kind.
    Each batch is committed, so an interrupted run resumes where it stopped."""
    from models.profiles.text_encoder import TextEncoder

    encoder = TextEncoder()
    todo: list[tuple[str, str, str, str]] = []
    for kind, rows in facet_texts(ws).items():
        stored = stored_text_hashes(ws, kind, encoder.name)
        todo += [(kind, key, text, _text_hash(text)) for key, text in rows
                 if stored.get(key) != _text_hash(text)]
    counts: dict[str, int] = {}
    for start in range(0, len(todo), batch_size):
        if cancel is not None and cancel():
            break
        batch = todo[start : start + batch_size]
        vectors = encoder.encode([text or " " for _, _, text, _ in batch])
        by_kind: dict[str, list] = {}
        for (kind, key, _text, digest), vector in zip(batch, vectors, strict=True):
            by_kind.setdefault(kind, []).append((key, digest, vector))
        for kind, rows in by_kind.items():
            save_embeddings(ws, kind, encoder.name, rows)
            counts[kind] = counts.get(kind, 0) + len(rows)
        if progress is not None:
            progress(start + len(batch), len(todo), "embeddings")
    return counts
