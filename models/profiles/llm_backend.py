"""A local GGUF language model behind one small interface (llama-cpp-python).

`resolve_model` turns a spec — a packaged model name or a .gguf path — into a checked file;
`LocalLLM` loads it and answers chat requests constrained by a JSON schema, reporting token counts
and llama.cpp's own prompt/decode timings so that throughput can be measured, not guessed.

Throughput: llama-cpp-python keeps the tokens of the previous request in the KV cache and only
evaluates the part of a new prompt after the longest common prefix. Profiles therefore share one
fixed system message (instructions and a worked example) that is evaluated once per process;
each profile pays only for its own user message and its short answer. `reuse_prefix=False`
switches this off for the naive baseline of the benchmark.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.profiles.errors import ModelLoadError
from models.profiles.gguf_header import GGUFFormatError, read_gguf_metadata
from models.profiles.model_files import PACKAGED_CHAT_FORMATS, PACKAGED_MODELS, packaged_model_path

DEFAULT_MODEL = "smollm2"
# Chat formats of llama-cpp-python that silently drop a system message: the system text is put
# at the start of the first user turn instead, which keeps it a shared, cacheable prefix.
_NO_SYSTEM_ROLE = {"gemma"}


@dataclass(frozen=True)
class ModelSpec:
    """A checked model file: `name` identifies it in profiles and input hashes."""

    name: str
    path: Path
    chat_format: str | None  # None: the file's own chat template


def resolve_model(spec: str | Path = DEFAULT_MODEL, chat_format: str | None = None) -> ModelSpec:
    """Find and check the model file for a packaged name or a local .gguf path.

    Raises ModelLoadError (naming the path and the fix) for a missing file, a file that is not a
    complete GGUF, or a GGUF without a chat template when no chat format is given.
    """
    text = str(spec)
    if text in PACKAGED_MODELS:
        path, name = packaged_model_path(text), text
        chat_format = chat_format or PACKAGED_CHAT_FORMATS[text]
    else:
        path = Path(text).expanduser()
        name = path.name if chat_format is None else f"{path.name}[{chat_format}]"
        if not path.exists():
            raise ModelLoadError(
                f"model file not found: {path}; give an existing .gguf path or one of the "
                f"packaged models ({', '.join(PACKAGED_MODELS)})"
            )
        if not path.is_file():
            raise ModelLoadError(f"model path is not a file: {path}; point it at a .gguf file")
    try:
        meta = read_gguf_metadata(path)
    except GGUFFormatError as exc:
        raise ModelLoadError(
            f"{path} is not a usable GGUF model: {exc}. Download the file again (or reinstall "
            "its package) or choose another model"
        ) from exc
    if chat_format is None and not meta.get("tokenizer.chat_template"):
        raise ModelLoadError(
            f"{path} has no chat template (probably a base model); give a chat format that fits "
            "it, e.g. chat_format='gemma' for Gemma or 'chatml' for ChatML models"
        )
    return ModelSpec(name=name, path=path, chat_format=chat_format)


@dataclass(frozen=True)
class Completion:
    """One answer and what it cost."""

    text: str
    finish_reason: str | None  # "stop", or "length" when max_tokens cut it
    prompt_tokens: int  # the whole prompt
    prompt_tokens_evaluated: int  # those not found in the KV cache
    completion_tokens: int
    prompt_eval_s: float  # llama.cpp's timings; 0.0 if the build does not report them
    decode_s: float
    wall_s: float
    # Of completion_tokens, those the schema forced and the batched engine evaluated in a batch
    # instead of decoding one by one (jump-forward; batched_llm.py); 0 elsewhere.
    forced_tokens: int = 0

    @property
    def cached_tokens(self) -> int:
        return self.prompt_tokens - self.prompt_tokens_evaluated


def default_threads() -> int:
    """Threads for llama.cpp: one core fewer than this process may use, at most 8.

    llama.cpp's threads spin at a barrier after every layer, so when they outnumber the free
    cores they collapse: measured on the 2-core dev machine with one other busy process, 2
    threads decoded SmolLM2 at <1 token/s and 1 thread at ~75 tokens/s. Leaving a core also keeps
    the UI, SQLite and the encoder responsive; decoding is memory bound and gains little past 8.
    """
    return max(1, min(usable_cores() - 1, 8))


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalLLM:
    """A GGUF chat model loaded once and reused for many constrained requests.

    Not thread-safe: one request at a time (a job runs its profiles in one worker thread).
    `n_threads` defaults to `default_threads()`; on a GPU build every layer is offloaded.
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, chat_format: str | None = None,
                 n_ctx: int = 4096, n_threads: int | None = None, seed: int = 0) -> None:
        self.spec = resolve_model(model, chat_format)
        import llama_cpp  # heavy: only when a model is really loaded

        if self.spec.chat_format is not None:
            from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerRegistry

            try:
                LlamaChatCompletionHandlerRegistry().get_chat_completion_handler_by_name(
                    self.spec.chat_format)
            except Exception as exc:  # llama-cpp-python's own not-found type, no ValueError
                raise ModelLoadError(
                    f"unknown chat format {self.spec.chat_format!r} for {self.spec.path}; use "
                    "one that llama-cpp-python registers (e.g. 'chatml', 'gemma', 'llama-3')"
                ) from exc
        self.gpu_offload = bool(llama_cpp.llama_supports_gpu_offload())
        threads = n_threads or default_threads()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(self.spec.path), n_ctx=n_ctx, n_threads=threads,
                n_threads_batch=threads, n_gpu_layers=-1 if self.gpu_offload else 0,
                chat_format=self.spec.chat_format, seed=seed, verbose=False,
            )
        except ValueError as exc:  # llama.cpp's "Failed to load model from file"
            raise ModelLoadError(
                f"llama.cpp could not load {self.spec.path} ({exc}); the file may be damaged "
                "or of an architecture this llama-cpp-python build does not know — download it "
                "again or upgrade llama-cpp-python"
            ) from exc
        self._llama_cpp = llama_cpp
        self._merge_system = self.spec.chat_format in _NO_SYSTEM_ROLE
        self._grammars: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _grammar(self, schema: dict) -> Any:
        # llama-cpp-python falls back to free JSON when a schema does not convert; building the
        # grammar here makes such a schema fail loudly instead. Cached: schemas repeat.
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            if len(self._grammars) > 256:
                self._grammars.clear()
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def chat(self, system: str, user: str, *, schema: dict | None = None, max_tokens: int = 200,
             temperature: float = 0.2, seed: int = 0, repeat_penalty: float = 1.0,
             reuse_prefix: bool = True) -> Completion:
        """One chat turn; with `schema`, the answer is constrained to JSON of that schema."""
        if self._merge_system:
            messages = [{"role": "user", "content": f"{system}\n\n{user}"}]
        else:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if not reuse_prefix:
            self._llm.reset()  # forget the KV cache: the whole prompt is evaluated again
        ctx = self._llm._ctx.ctx  # private, but the only handle to llama.cpp's perf counters
        self._llama_cpp.llama_perf_context_reset(ctx)
        start = time.perf_counter()
        out = self._llm.create_chat_completion(
            messages=messages, grammar=self._grammar(schema) if schema else None,
            max_tokens=max_tokens, temperature=temperature, seed=seed,
            repeat_penalty=repeat_penalty,
        )
        wall = time.perf_counter() - start
        perf = self._llama_cpp.llama_perf_context(ctx)
        choice, usage = out["choices"][0], out["usage"]
        return Completion(
            text=choice["message"]["content"] or "", finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage["prompt_tokens"],
            prompt_tokens_evaluated=int(perf.n_p_eval),
            completion_tokens=usage["completion_tokens"],
            prompt_eval_s=perf.t_p_eval_ms / 1000.0, decode_s=perf.t_eval_ms / 1000.0,
            wall_s=wall,
        )

    def close(self) -> None:
        """Free the model now instead of at garbage collection."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()
