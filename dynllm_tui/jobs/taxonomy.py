"""The taxonomy job: categories for a catalogue that has none (models/profiles/taxonomy.py).

Reads every item's text, reuses the item vectors already stored in `embeddings` (kind "item",
the same key and text hash the profile job embeds them under) and embeds only the missing or
stale ones (storing them, so the profile job reuses them in turn), clusters and names the items,
and stores the result under its version. A stored taxonomy of the same version is reused as it
is: no encoder, no LLM. A catalogue with categories of its own gets no taxonomy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import DynllmError
from storage.profiles import load_embeddings, save_embeddings, stored_text_hashes
from storage.taxonomy import (
    catalogue_has_categories,
    item_category_names,
    item_texts,
    save_taxonomy,
    stored_taxonomy,
)
from storage.workspace import Workspace

Progress = Callable[[int, int, str], None]
NAME_MAX_TOKENS = 24  # {"name":"..."} of at most 30 characters fits in ~15 tokens


@dataclass
class TaxonomySummary:
    version: str = ""
    reused: bool = False  # the stored taxonomy matched: nothing recomputed
    catalogue_categories: bool = False  # the catalogue has its own: no taxonomy
    k: int = 0
    k_rule: str = ""
    items: int = 0
    llm_calls: int = 0
    embedded: int = 0  # item vectors computed now (the rest were reused)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _item_vectors(ws: Workspace, keys: list[str], texts: list[str], report: Progress
                  ) -> tuple[np.ndarray, int, str]:
    """(vectors aligned with keys, how many were embedded now, encoder name)."""
    from dynllm_tui.jobs.profiles import _text_hash
    from models.profiles.text_encoder import TextEncoder

    encoder = TextEncoder()
    # Vectors of another size in the workspace (an endpoint encoder's): the profile job
    # refuses to mix sizes, so ours are used here and not stored.
    keep = ws.conn.execute("SELECT 1 FROM embeddings WHERE dim != ? LIMIT 1",
                           (encoder.dim,)).fetchone() is None
    hashes = stored_text_hashes(ws, "item", encoder.name)
    stored_keys, matrix = load_embeddings(ws, "item", encoder.name)
    row_of = {k: i for i, k in enumerate(stored_keys)}
    out = np.zeros((len(keys), encoder.dim), dtype=np.float32)
    missing = []
    for i, (key, text) in enumerate(zip(keys, texts, strict=True)):
        if not text.strip():
            continue  # an empty text is never clustered: no vector needed
        if hashes.get(key) == _text_hash(text) and key in row_of:
            out[i] = matrix[row_of[key]]
        else:
            missing.append(i)
    for start in range(0, len(missing), 256):
        batch = missing[start:start + 256]
        vectors = encoder.encode([texts[i] for i in batch])
        out[batch] = vectors
        if keep:
            save_embeddings(ws, "item", encoder.name,
                            [(keys[i], _text_hash(texts[i]), v)
                             for i, v in zip(batch, vectors, strict=True)])
        report(start + len(batch), len(missing), "item embeddings")
    return out, len(missing), encoder.name


def _summary_of(record: dict[str, Any], reused: bool) -> TaxonomySummary:
    return TaxonomySummary(
        version=record["version"], reused=reused, k=record["k"], k_rule=record["k_rule"],
        items=record["n_items"], notes=list(record["notes"]),
        clusters=[{k: c[k] for k in ("cluster", "name", "name_source", "size",
                                      "central_titles")} for c in record["clusters"]],
    )


def ensure_taxonomy(ws: Workspace, *, k: int | None = None, seed: int | None = None,
                    llm: str = "smollm2", chat_format: str | None = None, backend: Any = None,
                    progress: Progress | None = None) -> TaxonomySummary:
    """The current taxonomy of the workspace, computed and stored only when the stored one
    (if any) is of another version. The clusters are named by `backend` (an object with
    `chat` and `name`, e.g. the profile job's endpoint) or else by the local model `llm`."""
    from models.profiles.taxonomy import (
        DEFAULT_SEED,
        NAME_PROMPT_VERSION,
        NAME_SCHEMA,
        build_taxonomy,
        taxonomy_version,
    )
    from models.profiles.text_encoder import TextEncoder

    report = progress or (lambda done, total, phase: None)
    seed = DEFAULT_SEED if seed is None else seed
    if k is not None and k < 1:
        raise DynllmError(f"taxonomy: --k must be at least 1, got {k}")
    if catalogue_has_categories(ws):
        return TaxonomySummary(catalogue_categories=True)
    rows = item_texts(ws)
    if not rows:
        raise DynllmError(f"{ws.path} has no items: import a purchase log first")
    keys, texts = [str(i) for i, _ in rows], [t for _, t in rows]
    model = backend if backend is not None else _resolve_llm(llm, chat_format)
    encoder_name = TextEncoder().name
    version = taxonomy_version(keys, texts, k, seed, encoder_name, model.name)
    stored = stored_taxonomy(ws, version)
    if stored is not None:
        return _summary_of(stored, reused=True)

    vectors, embedded, _ = _item_vectors(ws, keys, texts, report)
    calls = 0
    loaded: list[Any] = []

    def namer(system: str, user: str) -> str:
        nonlocal calls
        if not loaded:
            loaded.append(backend if backend is not None else _load_llm(llm, chat_format))
        calls += 1
        # Greedy: one name per cluster, the same every time for the same titles.
        return loaded[0].chat(system, user, schema=NAME_SCHEMA, max_tokens=NAME_MAX_TOKENS,
                              temperature=0.0, seed=seed).text

    try:
        taxonomy = build_taxonomy(keys, texts, vectors, namer=namer, k=k, seed=seed,
                                  encoder=encoder_name, llm=model.name, progress=report)
    finally:
        if loaded and backend is None:  # the caller's backend stays open for the caller
            loaded[0].close()
    record = {"version": taxonomy.version, "k": taxonomy.k, "k_rule": taxonomy.k_rule,
              "k_asked": k, "silhouettes": taxonomy.silhouettes, "seed": seed,
              "encoder": encoder_name,
              "llm": model.name, "prompt_version": NAME_PROMPT_VERSION, "notes": taxonomy.notes}
    clusters = [{"cluster": c.index, "name": c.name, "name_source": c.name_source,
                 "size": c.size, "central_titles": c.central_titles, "raw_answer": c.raw_answer}
                for c in taxonomy.clusters]
    save_taxonomy(ws, record, clusters,
                  [(int(key), int(c)) for key, c in zip(keys, taxonomy.assignment, strict=True)])
    summary = _summary_of(stored_taxonomy(ws, taxonomy.version) or {}, reused=False)
    summary.llm_calls, summary.embedded = calls, embedded
    return summary


def _offered(ws: Workspace, version: str) -> dict[int, str]:
    # Items of the UNCATEGORISED cluster (no text) get no category: offering the LLM
    # "uncategorised" as a preferred category would say nothing.
    from models.profiles.taxonomy import UNCATEGORISED

    return {i: n for i, n in item_category_names(ws, version).items() if n != UNCATEGORISED}


def derived_categories(ws: Workspace, *, llm: str = "smollm2", chat_format: str | None = None,
                       backend: Any = None, progress: Progress | None = None) -> dict[int, str]:
    """item id -> derived category name for the profile job (items without a text have
    none); {} when the catalogue has categories of its own (they are used as they are). A
    stored taxonomy is kept with its own k and seed (`taxonomy --k N` is not undone by the
    next profile run) as long as the catalogue is unchanged; otherwise one is computed with
    the k rule."""
    stored = stored_taxonomy(ws)
    k = seed = None
    if stored is not None:
        k, seed = stored["k_asked"], stored["seed"]
    summary = ensure_taxonomy(ws, k=k, seed=seed, llm=llm, chat_format=chat_format,
                              backend=backend, progress=progress)
    if summary.catalogue_categories:
        return {}
    return _offered(ws, summary.version)


def stored_categories(ws: Workspace) -> dict[int, str]:
    """item id -> category name of the stored taxonomy, if any (no computing)."""
    if catalogue_has_categories(ws):
        return {}
    stored = stored_taxonomy(ws)
    return _offered(ws, stored["version"]) if stored else {}


def taxonomy_job(db_path: str | Path | None, *, k: int | None = None, seed: int | None = None,
                 llm: str = "smollm2", chat_format: str | None = None,
                 progress: Progress | None = None) -> TaxonomySummary:
    """Compute (or reuse) the workspace's taxonomy and return its clusters with sizes."""
    with Workspace.open(db_path, create=False) as ws:
        return ensure_taxonomy(ws, k=k, seed=seed, llm=llm, chat_format=chat_format,
                               progress=progress)


def _resolve_llm(llm: str, chat_format: str | None):
    from models.profiles.errors import ModelLoadError
    from models.profiles.llm_backend import resolve_model

    try:
        return resolve_model(llm, chat_format)
    except ModelLoadError as exc:
        raise DynllmError(str(exc)) from None


def _load_llm(llm: str, chat_format: str | None):
    from models.profiles.errors import ModelLoadError
    from models.profiles.llm_backend import LocalLLM

    try:
        return LocalLLM(llm, chat_format=chat_format)
    except ModelLoadError as exc:
        raise DynllmError(str(exc)) from None
