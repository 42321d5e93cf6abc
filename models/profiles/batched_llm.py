"""Several chat requests decoded together from one loaded GGUF (continuous batching).

`BatchedLLM.chat` has the signature and the return type of `LocalLLM.chat`, but many threads may
call it at once: each call queues a request and blocks; one engine thread owns the llama.cpp
context and, at every step, feeds ONE `llama_decode` call with the next token of every sequence
that is generating plus the prompt tokens of the sequences being admitted (up to `n_batch`
tokens). The weights are read once per call for all the rows it carries: on the 2-core dev
machine (one llama.cpp thread, SmolLM2 Q8_0) a call of 1 token took 12.7 ms, of 4 tokens 35 ms, of
8 tokens 42 ms, of 16 tokens 67 ms (2 tokens: 27 ms; llama.cpp's repacked Q8_0 kernels multiply
rows in groups of 4). What batching cannot share: attention (each token reads its own ~1,400
cached tokens; ~4 ms a token at that length), the grammar sampler (~8 ms a token, over the whole
vocabulary, per sequence) and prompt evaluation (~150 new tokens a profile, already batched).
Measured end to end on that machine the gain was within its noise (bench/profiles.py); it is
larger where a decode call is dominated by overhead (more cores, a GPU build).

How a request is served:
- Prompt. The messages are rendered by llama-cpp-python's own chat handler for the model (the
  one `LocalLLM` uses through `create_chat_completion`; see `_PromptCapture`), so the prompt
  tokens and stop strings are identical to the single-sequence path's.
- Sequences. Each request gets one of `n_seq` sequence ids (its own KV range) for its lifetime;
  its cells are removed (`llama_memory_seq_rm`) when it ends, so the slot is reused.
- Shared prefix. The KV cache is unified (`kv_unified`): cells shared by several sequences are
  stored once. One extra sequence id holds the last prompt admitted (as LocalLLM's single cache
  holds the previous prompt). A new request copies the part of it that it shares — the fixed
  system message and chat template, ~1,200 tokens for the profile prompt — with
  `llama_memory_seq_cp` (metadata only in a unified cache) and evaluates only the rest, under
  its own sequence id and the prefix's, so it becomes the stored prompt for the next one.
  `reuse_prefix=False` evaluates the whole prompt (the naive baseline). While the stored prompt
  is still being evaluated (the first request of a run), the next requests wait for it rather
  than evaluate the shared part again.
- Sampling. Each sequence has its own llama.cpp sampler chain, built exactly as
  `Llama._init_sampler` builds it for `create_chat_completion`: penalties (last 64 tokens,
  `repeat_penalty`), the JSON-schema grammar, then greedy at temperature 0, else top-k 40,
  typical 1.0, top-p 0.95, min-p 0.05, temperature and a distribution seeded with the request's
  `seed`. A sequence stops at an end-of-generation token or a stop string of the chat template
  (finish_reason "stop") or after `max_tokens` tokens ("length").
- Jump-forward (`jump_forward=True`, the default; needs the lazy grammar). Half of a profile
  answer's tokens are fixed by its schema: the braces, the keys in the grammar's order, the
  punctuation, the rest of a category once its first letters rule out the other candidates.
  After each sampled token the request's `AnswerState` (models/profiles/answer_shape.py) says
  which text must follow; its tokens are checked one by one against the grammar (the first it
  refuses ends the forcing), accepted by the grammar and the penalties as sampled tokens would
  be, and evaluated together in the next decode call, with the logits of the last one only; the
  answer's opening goes in with the prompt, and the request ends as soon as the answer is
  complete, without asking the model for an end token. Measured on the 2-core dev machine on 32
  real Online Retail snapshots (bench/profiles.py --db): 50% of the output tokens forced, 2.37
  -> 1.87 s a profile for one engine, 1.24 -> 1.05 s for two. The forced text is the compact
  form of the prompt's examples (no optional spaces), and a batch of tokens rounds otherwise
  than one token a call, so answers are not token-for-token those of the single-sequence path:
  the equality with LocalLLM below holds with `jump_forward=False`.
- Context. One request may use `seq_ctx` tokens (prompt + max_tokens; 4096 by default, the
  n_ctx of LocalLLM, so whatever it serves this serves); a longer one is refused in the
  caller's thread with `PromptTooLongError` and the engine goes on serving the others. The
  unified cache holds seq_ctx + 1024 cells per sequence by default (8,192 for 4 sequences, 189
  MB of f16 KV for SmolLM2), far less than n_seq x seq_ctx because the ~1,200-token prefix is
  stored once and a profile adds ~150 prompt and at most 224 answer tokens. A request is
  admitted only when the cells it may need (its own prompt tokens plus max_tokens) fit beside
  what the others have reserved; otherwise it waits, in order, for sequences to finish. Alone
  it always fits (the stored prefix is dropped if need be).

Timings in `Completion`: `wall_s` is the caller's time from the call to the answer (queueing
included). The engine times every `llama_decode` call and splits it evenly over the tokens the
call carried: a request's prompt tokens add their share to its `prompt_eval_s`, its generated
tokens their share to `decode_s`, plus the time its own sampler took. Summed over all requests
these add up to the engine's busy time, so tokens / seconds computed from them is the engine's
throughput (not one stream's). `prompt_tokens_evaluated` counts the prompt tokens this request
put into a batch (the rest came from the shared prefix).

Equality with `LocalLLM` (`jump_forward=False`). Same prompt tokens, same sampler chain, same
seeds. With one sequence the arithmetic is the same too: greedy answers equalled LocalLLM's on
12 of 12 real Online Retail prompts, and at temperature 0.2 (seed 0) on 8 of 8. With several
sequences in one decode call llama.cpp multiplies a batch of rows with other kernels and the
cells of a sequence sit elsewhere in the cache, so the logits differ by rounding, and
SmolLM2's near-ties flip: at 4 sequences, greedy answers equalled LocalLLM's on 5 of 12 prompts
(the others are other valid answers of the same kind, often only a space after a comma). For
the same reason an answer depends on which other requests shared its decode calls, so a rerun
with N > 1 is not guaranteed to repeat it token for token (the job does not rerun unchanged
snapshots).

Thread-safe. `close()` stops the engine thread (after the `llama_decode` call in progress),
fails the requests still queued or in flight with `EngineClosedError`, and frees the model.
"""

from __future__ import annotations

import collections
import ctypes
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.profiles.answer_shape import AnswerShape, AnswerState, ShapeMismatch
from models.profiles.errors import ModelLoadError
from models.profiles.llm_backend import (
    _NO_SYSTEM_ROLE,
    DEFAULT_MODEL,
    Completion,
    default_threads,
    resolve_model,
)

# Sampling settings create_chat_completion uses when not given (llama-cpp-python's defaults),
# so that a batched answer is sampled like LocalLLM's.
_TOP_K, _TOP_P, _MIN_P, _TYPICAL_P = 40, 0.95, 0.05, 1.0
_PENALTY_LAST_N = 64  # Llama(last_n_tokens_size=64)
DEFAULT_SEQ_CTX = 4096  # LocalLLM's n_ctx: every request it serves, the engine serves
# A queued request waits for the stored prompt's evaluation when it would otherwise evaluate
# this many more of the same tokens itself.
_WAIT_FOR_PREFIX = 64
CELLS_PER_SEQUENCE = 1024  # cache cells per sequence beyond one seq_ctx (see "Context")


class EngineClosedError(RuntimeError):
    """The engine was closed before this request was answered."""


class PromptTooLongError(ValueError):
    """A prompt plus its max_tokens does not fit in one sequence's share of the context."""


class _PromptCapture:
    """Stands in for `Llama` when llama-cpp-python's chat handler renders messages: the handler
    tokenizes the rendered prompt and calls `create_completion(prompt=tokens, stop=...)`; this
    records both instead of generating. Every other attribute is the real model's, so the
    rendering is exactly the one `Llama.create_chat_completion` does."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.prompt: list[int] | None = None
        self.stop: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, *, prompt: Any, stop: Any = None, **_: Any) -> dict:
        if isinstance(prompt, str):  # handlers that pass text: tokenized as _create_completion
            prompt = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        self.prompt = list(prompt)
        self.stop = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        return {"id": "capture", "object": "text_completion", "created": 0, "model": "",
                "choices": [{"text": "", "index": 0, "logprobs": None,
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


@dataclass
class _Request:
    tokens: list[int]
    stops: list[bytes]
    max_tokens: int
    temperature: float
    seed: int
    repeat_penalty: float
    grammar: Any  # LlamaGrammar or None
    reuse_prefix: bool
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    # engine state
    slot: int = -1
    n_past: int = 0  # positions of this sequence in the KV cache
    share_until: int = 0  # positions below this are also tagged with the prefix sequence
    evaluated: int = 0  # prompt tokens put into a batch
    cached: int = 0  # prompt tokens shared with the stored prefix
    reserve: int = 0  # KV cells this request may hold beyond the stored prefix
    sampler: Any = None  # the chain without the grammar (see _sample)
    grammar_sampler: Any = None
    grammar_checks: int = 0  # tokens checked against the grammar...
    grammar_rejects: int = 0  # ...and of those, resampled under it
    shape: AnswerState | None = None  # jump-forward: where the answer stands in its schema
    shape_chars: int = 0  # characters of the answer text fed to `shape`
    forced: int = 0  # output tokens appended by jump-forward
    pending: int = 0  # output tokens at the end of `out` not in the KV cache yet
    out: list[int] = field(default_factory=list)
    text: bytes = b""
    multibyte_fix: int = 0
    finish: str | None = None
    answer: str = ""
    prompt_eval_s: float = 0.0
    decode_s: float = 0.0

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.tokens)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _multibyte_skip(text: bytes) -> int:
    """How many more tokens Llama._create_completion lets pass unchecked (no stop string, no
    max_tokens test) when `text` ends inside a multi-byte UTF-8 character; its rule, kept as
    it is so that the two paths stop at the same token."""
    skip = 0
    for k, char in enumerate(text[-3:]):
        k = 3 - k
        for num, pattern in ((2, 192), (3, 224), (4, 240)):
            if num > k and pattern & char == pattern:
                skip = num - k
    return skip


class BatchedLLM:
    """One GGUF chat model serving up to `n_seq` chat requests at once (see the module doc).

    `seq_ctx`: the most prompt + max_tokens tokens one request may use (LocalLLM's n_ctx plays
    that part there). `kv_cells`: the size of the shared cache (default seq_ctx +
    CELLS_PER_SEQUENCE per sequence; at least seq_ctx). `flash_attn` stays off by default, as
    in LocalLLM, so that one sequence computes exactly what LocalLLM computes."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, n_seq: int = 4,
                 chat_format: str | None = None, seq_ctx: int = DEFAULT_SEQ_CTX,
                 kv_cells: int | None = None, n_threads: int | None = None,
                 n_batch: int = 512, flash_attn: bool = False, seed: int = 0,
                 lazy_grammar: bool = True, jump_forward: bool = True) -> None:
        if not isinstance(n_seq, int) or n_seq < 1:
            raise ValueError(f"n_seq must be 1 or more, not {n_seq!r}")
        if seq_ctx < 64:
            raise ValueError(f"seq_ctx must be at least 64 tokens, not {seq_ctx}")
        kv_cells = kv_cells or seq_ctx + n_seq * CELLS_PER_SEQUENCE
        if kv_cells < seq_ctx:
            raise ValueError(f"kv_cells ({kv_cells}) must hold one request of seq_ctx "
                             f"({seq_ctx}) tokens")
        self.spec = resolve_model(model, chat_format)
        import llama_cpp  # heavy: only when a model is really loaded
        from llama_cpp import _internals
        from llama_cpp._utils import suppress_stdout_stderr

        if self.spec.chat_format is not None:
            from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerRegistry

            try:
                LlamaChatCompletionHandlerRegistry().get_chat_completion_handler_by_name(
                    self.spec.chat_format)
            except Exception as exc:  # llama-cpp-python's own not-found type
                raise ModelLoadError(
                    f"unknown chat format {self.spec.chat_format!r} for {self.spec.path}; use "
                    "one that llama-cpp-python registers (e.g. 'chatml', 'gemma', 'llama-3')"
                ) from exc
        self._lib = llama_cpp
        self.gpu_offload = bool(llama_cpp.llama_supports_gpu_offload())
        threads = self.threads = n_threads or default_threads()
        try:
            # The Llama object loads the weights and gives the tokenizer and the chat handler;
            # its own context is minimal and never decodes. The engine's context is made on the
            # same weights below with several sequences and a unified KV cache.
            self._llm = llama_cpp.Llama(
                model_path=str(self.spec.path), n_ctx=256, n_batch=32, n_ubatch=32,
                n_threads=threads, n_threads_batch=threads,
                n_gpu_layers=-1 if self.gpu_offload else 0,
                chat_format=self.spec.chat_format, seed=seed, verbose=False,
            )
        except ValueError as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {self.spec.path} ({exc}); the file may be damaged "
                "or of an architecture this llama-cpp-python build does not know — download it "
                "again or upgrade llama-cpp-python"
            ) from exc
        self.n_seq = n_seq
        self.seq_ctx = seq_ctx
        self._prefix_seq = n_seq  # the extra sequence id that holds the shared prefix
        self._n_batch = max(n_batch, n_seq)
        params = type(self._llm.context_params).from_buffer_copy(self._llm.context_params)
        params.n_ctx = kv_cells
        params.n_batch = self._n_batch
        params.n_ubatch = self._n_batch
        params.n_seq_max = n_seq + 1
        params.kv_unified = True
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        try:
            # Quiet, as Llama(verbose=False) is: llama.cpp would warn that n_ctx exceeds the
            # training context, but each sequence's positions stay within seq_ctx.
            with suppress_stdout_stderr(disable=False):
                self._ctx = _internals.LlamaContext(model=self._llm._model, params=params,
                                                    verbose=False)
        except ValueError as exc:
            self._llm.close()
            raise ModelLoadError(
                f"llama.cpp could not make a context of {params.n_ctx} tokens for {n_seq} "
                f"sequences of {self.spec.path} ({exc}); use fewer sequences or a smaller "
                "cache") from exc
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx.ctx)
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._vocab = self._llm._model.vocab
        self._n_vocab = self._llm.n_vocab()
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 2)
        self.lazy_grammar = lazy_grammar
        # Jump-forward needs the grammar apart from the chain (it checks forced tokens one by
        # one against it), i.e. the lazy grammar.
        self.jump_forward = jump_forward and lazy_grammar
        self.forced_tokens = 0  # output tokens appended by jump-forward, over all requests
        # Candidate buffers for _sample: the whole vocabulary (ids fixed, logits copied in per
        # token) and the one-token array a sampled token is checked with.
        self._candidates = (llama_cpp.llama_token_data * self._n_vocab)()
        self._candidate_view = np.frombuffer(
            self._candidates, dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]))
        self._vocab_ids = np.arange(self._n_vocab, dtype=np.int32)
        self._one = (llama_cpp.llama_token_data * 1)()
        self.grammar_checks = 0
        self.grammar_rejects = 0
        self._piece = ctypes.create_string_buffer(64)
        self._merge_system = self.spec.chat_format in _NO_SYSTEM_ROLE
        self._grammars: dict[str, tuple[Any, AnswerShape | None]] = {}
        self._render_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: collections.deque[_Request] = collections.deque()
        self._closing = False
        self._closed = False
        self._free = list(range(n_seq - 1, -1, -1))
        self._active: list[_Request] = []
        self._prefix: list[int] = []  # tokens held by the prefix sequence...
        self._prefix_ready = 0  # ...of which this many are in the KV cache already
        self.busy_s = 0.0  # time spent in llama_decode and sampling, for the benchmark
        self.decode_calls = 0  # llama_decode calls...
        self.batch_tokens = 0  # ...the tokens they carried...
        self.sample_s = 0.0  # ...and the time the samplers took after them
        self._thread = threading.Thread(target=self._serve, name="batched-llm", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    def count_tokens(self, text: str) -> int:
        with self._render_lock:
            if self._closed:
                raise EngineClosedError(f"the batched engine for {self.name} is closed")
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def render(self, system: str, user: str) -> tuple[list[int], list[str]]:
        """The prompt tokens and stop strings `Llama.create_chat_completion` would use for these
        messages (llama-cpp-python's own chat handler for this model renders them)."""
        if self._merge_system:
            messages = [{"role": "user", "content": f"{system}\n\n{user}"}]
        else:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        llm = self._llm
        handler = (llm.chat_handler or llm._chat_handlers.get(llm.chat_format)
                   or self._lib.llama_chat_format.get_chat_completion_handler(llm.chat_format))
        capture = _PromptCapture(llm)
        with self._render_lock:  # the model must not be freed meanwhile (close)
            if self._closed:
                raise EngineClosedError(f"the batched engine for {self.name} is closed")
            handler(llama=capture, messages=messages)
        if capture.prompt is None:
            raise RuntimeError(f"the chat handler of {self.name} did not produce a prompt")
        return capture.prompt, capture.stop

    def _grammar(self, schema: dict) -> tuple[Any, AnswerShape | None]:
        """The grammar of `schema` and the shape jump-forward follows (None: not followed).
        As LocalLLM: a schema that does not convert fails loudly here; cached, schemas repeat.
        Both are made from the same JSON text, so the shape has the grammar's property order."""
        key = json.dumps(schema, sort_keys=True)
        with self._render_lock:
            made = self._grammars.get(key)
            if made is None:
                from llama_cpp.llama_grammar import LlamaGrammar

                if len(self._grammars) > 256:
                    self._grammars.clear()
                made = self._grammars[key] = (LlamaGrammar.from_json_schema(key, verbose=False),
                                              AnswerShape.from_schema(key))
        return made

    def chat(self, system: str, user: str, *, schema: dict | None = None, max_tokens: int = 200,
             temperature: float = 0.2, seed: int = 0, repeat_penalty: float = 1.0,
             reuse_prefix: bool = True) -> Completion:
        """One chat turn, answered together with the other callers' (see the module doc);
        with `schema`, the answer is constrained to JSON of that schema. Blocks until done."""
        start = time.perf_counter()
        if self._closing:
            raise EngineClosedError(f"the batched engine for {self.name} is closed")
        tokens, stops = self.render(system, user)
        if max_tokens is None or max_tokens <= 0:
            raise ValueError(f"max_tokens must be 1 or more, not {max_tokens}")
        if len(tokens) + max_tokens > self.seq_ctx:
            raise PromptTooLongError(
                f"the prompt is {len(tokens)} tokens and up to {max_tokens} more are asked for: "
                f"{len(tokens) + max_tokens} > {self.seq_ctx}, the tokens one sequence of the "
                f"batched engine may use (the single-sequence model's context); shorten the "
                f"input")
        grammar, shape = self._grammar(schema) if schema else (None, None)
        request = _Request(tokens=tokens, stops=[s.encode("utf-8") for s in stops],
                           max_tokens=max_tokens, temperature=temperature, seed=seed,
                           repeat_penalty=repeat_penalty, grammar=grammar,
                           reuse_prefix=reuse_prefix,
                           shape=shape.start() if shape and self.jump_forward else None)
        with self._cond:
            if self._closing:
                raise EngineClosedError(f"the batched engine for {self.name} is closed")
            self._queue.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return Completion(
            text=request.answer, finish_reason=request.finish,
            prompt_tokens=len(tokens), prompt_tokens_evaluated=request.evaluated,
            completion_tokens=len(request.out), prompt_eval_s=request.prompt_eval_s,
            decode_s=request.decode_s, wall_s=time.perf_counter() - start,
            forced_tokens=request.forced,
        )

    def close(self) -> None:
        """Stop the engine (requests not answered yet fail with EngineClosedError) and free
        the model."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._render_lock:  # no caller is rendering with the model while it is freed
            self._closed = True
            self._lib.llama_batch_free(self._batch)
            self._ctx.close()
            self._llm.close()

    def __enter__(self) -> BatchedLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine thread ---------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not self._queue and not self._active:
                    self._cond.wait()
                if self._closing:
                    break
            try:
                self._admit_waiting()
                self._step()
            except Exception as exc:  # noqa: BLE001 - the engine must outlive a bad step
                self._fail_active(RuntimeError(f"the batched engine failed a step: {exc}"))
        closed = EngineClosedError(f"the batched engine for {self.name} was closed before "
                                   "this request was answered")
        with self._cond:
            waiting = list(self._queue)
            self._queue.clear()
        for request in waiting:
            request.error = closed
            request.done.set()
        self._fail_active(closed)

    def _fail_active(self, error: BaseException) -> None:
        """Fail every sequence in flight and start from an empty cache (a failed decode may
        have left cells half-written)."""
        for request in self._active:
            self._release(request)
            request.error = error
            request.done.set()
        self._active = []
        self._lib.llama_memory_clear(self._mem, True)
        self._prefix, self._prefix_ready = [], 0

    def _release(self, request: _Request) -> None:
        if request.sampler is not None:
            self._lib.llama_sampler_free(request.sampler)
            request.sampler = None
        if request.grammar_sampler is not None:
            self._lib.llama_sampler_free(request.grammar_sampler)
            request.grammar_sampler = None
        if request.slot >= 0:
            self._lib.llama_memory_seq_rm(self._mem, request.slot, -1, -1)
            self._free.append(request.slot)
            request.slot = -1

    def _make_sampler(self, request: _Request) -> Any:
        """The chain Llama._init_sampler builds for create_chat_completion; with the lazy
        grammar (the default) the grammar is kept apart, in `request.grammar_sampler`."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(
            self._n_vocab, _PENALTY_LAST_N, request.repeat_penalty, 0.0, 0.0))
        if request.grammar is not None:
            grammar = lib.llama_sampler_init_grammar(
                self._vocab, request.grammar._grammar.encode("utf-8"),
                request.grammar._root.encode("utf-8"))
            if self.lazy_grammar:
                request.grammar_sampler = grammar
            else:
                lib.llama_sampler_chain_add(chain, grammar)
        if request.temperature < 0.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(request.seed))
        elif request.temperature == 0.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(_TOP_K))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_typical(_TYPICAL_P, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(_TOP_P, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(_MIN_P, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(request.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(request.seed))
        return chain

    def _apply_to_vocabulary(self, index: int, samplers: list[Any]) -> int:
        """The token `samplers` select, applied in order to every token's logit at output
        `index` of the last decode call."""
        lib = self._lib
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(self._ctx.ctx, index),
                                       shape=(self._n_vocab,))
        view = self._candidate_view
        view["id"] = self._vocab_ids  # the samplers sort the array in place
        view["logit"] = logits
        view["p"] = 0.0
        array = lib.llama_token_data_array(
            data=ctypes.cast(self._candidates, lib.llama_token_data_p),
            size=self._n_vocab, selected=-1, sorted=False)
        for sampler in samplers:
            lib.llama_sampler_apply(sampler, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise RuntimeError("the sampler chain selected no token")
        return int(array.data[array.selected].id)

    def _sample(self, request: _Request, index: int) -> int:
        """The next token of `request` from output `index` of the last decode call.

        Without a grammar, or with the eager one, this is `llama_sampler_sample`. The lazy
        grammar (llama.cpp's own common sampler does the same): sample without it, then ask the
        grammar about that one token only; only when it refuses is the grammar applied to the
        whole vocabulary and the token sampled again under it. Checking one candidate instead
        of ~49k is what saves the time (the grammar was ~8 ms a token over the vocabulary),
        and on a JSON answer the model's own choice is nearly always allowed. Greedy answers
        are unchanged (a valid argmax is the argmax of the valid tokens); sampled ones follow
        the same seeds but may differ where the grammar used to renormalise the top tokens."""
        lib = self._lib
        if request.grammar_sampler is None:
            return lib.llama_sampler_sample(request.sampler, self._ctx.ctx, index)
        token = self._apply_to_vocabulary(index, [request.sampler])
        request.grammar_checks += 1
        self.grammar_checks += 1
        if not self._grammar_allows(request, token):
            request.grammar_rejects += 1
            self.grammar_rejects += 1
            token = self._apply_to_vocabulary(index, [request.grammar_sampler, request.sampler])
        lib.llama_sampler_accept(request.grammar_sampler, token)
        lib.llama_sampler_accept(request.sampler, token)
        return token

    def _cached(self, request: _Request) -> int:
        """Prompt tokens the request can take from the stored prefix."""
        if not request.reuse_prefix:
            return 0
        shared = _common_prefix(request.tokens, self._prefix[: self._prefix_ready])
        return min(shared, len(request.tokens) - 1)  # the last prompt token gives the logits

    def _cells_in_use(self) -> int:
        """An upper bound of the KV cells held: the stored prompt plus every active request's
        reservation (its own prompt tokens, its max_tokens, and any prefix cells it still holds
        after the stored prompt moved on)."""
        return len(self._prefix) + sum(r.reserve for r in self._active)

    def _admit_waiting(self) -> None:
        """Admit queued requests, in order, while a sequence is free and the cache has room for
        the cells each may need; the first that does not fit waits for others to finish. Alone
        it always fits (seq_ctx <= the cache), once the stored prompt is dropped."""
        while self._free:
            with self._cond:
                if not self._queue:
                    return
                request = self._queue[0]
                if (request.reuse_prefix and self._prefix_ready < len(self._prefix)
                        and _common_prefix(request.tokens, self._prefix)
                        > self._cached(request) + _WAIT_FOR_PREFIX):
                    # The stored prompt is still being evaluated and this one shares more of
                    # it than is in the cache yet (the first requests of a run): waiting a few
                    # steps costs less than evaluating the shared part again.
                    return
                need = len(request.tokens) + request.max_tokens - self._cached(request)
                if self._cells_in_use() + need > self.n_ctx:
                    if self._active:
                        return
                    self._lib.llama_memory_seq_rm(self._mem, self._prefix_seq, -1, -1)
                    self._prefix, self._prefix_ready = [], 0
                self._queue.popleft()
            self._active.append(request)  # failed with the others if anything below fails
            self._admit(request)

    def _admit(self, request: _Request) -> None:
        """Give the request a sequence, share what it can of the stored prefix, and decide
        whether its prompt extends that prefix."""
        request.slot = self._free.pop()
        request.sampler = self._make_sampler(request)
        tokens = request.tokens
        self._lib.llama_memory_seq_rm(self._mem, request.slot, -1, -1)
        cached = self._cached(request)
        request.cached = cached
        request.reserve = len(tokens) + request.max_tokens - cached
        if request.reuse_prefix and self._prefix_ready == len(self._prefix):
            # This prompt becomes the stored one (as the previous prompt stays in LocalLLM's
            # cache): the prefix sequence drops what it does not share and tags along while
            # this request evaluates the rest; not while another prompt is still being tagged
            # (its cells are not all there yet). Prefix cells that active requests still hold
            # past the cut are theirs alone now: counted in their reservations.
            self._lib.llama_memory_seq_rm(self._mem, self._prefix_seq, cached, -1)
            for other in self._active:
                if other is not request and other.cached > cached:
                    other.reserve += other.cached - cached
                    other.cached = cached
            self._prefix = tokens
            self._prefix_ready = cached
            request.share_until = len(tokens)
        if cached:
            self._lib.llama_memory_seq_cp(self._mem, self._prefix_seq, request.slot, 0, cached)
        request.n_past = cached
        if request.shape is not None:
            # The answer's opening ({"key":") goes in with the prompt; a whole answer forced, or
            # max_tokens reached, sets `finish` (see _step).
            self._jump(request)

    def _step(self) -> None:
        """One llama_decode call: a token for every generating sequence, then prompt tokens
        of the admitted ones while the batch has room; then sample every sequence that has
        new logits."""
        lib, batch = self._lib, self._batch
        n = 0
        outputs: list[tuple[_Request, int]] = []
        share: dict[int, tuple[_Request, int, int]] = {}  # request id -> (req, prompt, decode)

        def add(request: _Request, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = request.n_past
            batch.seq_id[n][0] = request.slot
            if request.n_past < request.share_until:
                batch.seq_id[n][1] = self._prefix_seq
                batch.n_seq_id[n] = 2
            else:
                batch.n_seq_id[n] = 1
            batch.logits[n] = logits
            if logits:
                outputs.append((request, n))
            n += 1

        def add_pending(request: _Request) -> int:
            # The output tokens not in the cache yet: the last sampled one, and the ones
            # jump-forward appended after it; the logits of the last one only.
            take = min(request.pending, self._n_batch - n)
            first = len(request.out) - request.pending
            for j in range(take):
                add(request, request.out[first + j], j == request.pending - 1)
                request.n_past += 1
            request.pending -= take
            return take

        # A request with `finish` set at admission (jump-forward wrote its whole answer) only
        # has its prompt evaluated, so that the stored prefix it holds is complete.
        generating = [r for r in self._active if not r.prefilling and r.finish is None]
        for request in generating:
            taken = add_pending(request)
            if taken:
                share[id(request)] = (request, 0, taken)
        for request in self._active:
            if not request.prefilling or n >= self._n_batch:
                continue
            take = min(len(request.tokens) - request.n_past, self._n_batch - n)
            for _ in range(take):
                last = (request.n_past == len(request.tokens) - 1 and not request.pending
                        and request.finish is None)
                add(request, request.tokens[request.n_past], last)
                request.n_past += 1
            request.evaluated += take
            # A prompt done in this call: its forced opening follows in the same call.
            forced = (add_pending(request)
                      if not request.prefilling and request.finish is None else 0)
            share[id(request)] = (request, take, forced)
        batch.n_tokens = n
        if n == 0:
            return
        started = time.perf_counter()
        rc = lib.llama_decode(self._ctx.ctx, batch)
        elapsed = time.perf_counter() - started
        self.decode_calls += 1
        self.batch_tokens += n
        self.busy_s += elapsed
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {n} tokens")
        per_token = elapsed / n
        for request, prompt_n, decode_n in share.values():
            request.prompt_eval_s += prompt_n * per_token
            request.decode_s += decode_n * per_token
        # The prefix sequence now holds every shared position evaluated so far.
        for request in self._active:
            if request.share_until:
                self._prefix_ready = max(self._prefix_ready,
                                         min(request.n_past, request.share_until))
                if request.n_past >= request.share_until:
                    request.share_until = 0
        finished = [r for r in self._active if r.finish is not None and not r.prefilling]
        sample_started = time.perf_counter()
        for request, index in outputs:
            started = time.perf_counter()
            token = self._sample(request, index)
            if self._accept(request, token):
                finished.append(request)
            spent = time.perf_counter() - started
            request.decode_s += spent
            self.busy_s += spent
        self.sample_s += time.perf_counter() - sample_started
        for request in finished:
            self._active.remove(request)
            self._release(request)
            request.answer = self._answer(request)
            request.done.set()

    def _answer(self, request: _Request) -> str:
        """The answer text as Llama._create_completion makes it: the completion detokenized,
        cut at the first stop string it holds. Made here, in the thread that owns the model, so
        that close() never frees it under a caller."""
        text = self._llm.detokenize(request.out, prev_tokens=request.tokens)
        for stop in request.stops:
            if stop in text:
                text = text[: text.index(stop)]
                break
        return text.decode("utf-8", errors="ignore")

    def _accept(self, request: _Request, token: int) -> bool:
        """Record a sampled token; True when the sequence is done. The checks and their order
        are Llama._create_completion's."""
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            request.finish = "stop"
            return True
        self._append(request, token)
        if self._check_end(request):
            return True
        return request.shape is not None and self._jump(request)

    def _append(self, request: _Request, token: int) -> None:
        request.out.append(token)
        request.pending += 1
        # The piece as LlamaModel.detokenize writes it (special tokens not rendered).
        n = self._lib.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece),
                                           0, False)
        request.text += self._piece.raw[:n]

    def _check_end(self, request: _Request) -> bool:
        """After a token: True when a stop string or max_tokens ends the sequence."""
        fix = _multibyte_skip(request.text)
        if fix:
            request.multibyte_fix = fix
        if request.multibyte_fix > 0:
            request.multibyte_fix -= 1
            return False
        return self._ends(request, any(stop in request.text for stop in request.stops))

    @staticmethod
    def _ends(request: _Request, stop: bool) -> bool:
        """Finish the request with "stop" when `stop`, else with "length" at max_tokens."""
        if stop or len(request.out) >= request.max_tokens:
            request.finish = "stop" if stop else "length"
            return True
        return False

    def _grammar_allows(self, request: _Request, token: int) -> bool:
        """Whether the grammar, in its present state, accepts `token` (one candidate only)."""
        one = self._one
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
        single = self._lib.llama_token_data_array(
            data=ctypes.cast(one, self._lib.llama_token_data_p), size=1, selected=-1,
            sorted=False)
        self._lib.llama_sampler_apply(request.grammar_sampler, ctypes.byref(single))
        return one[0].logit != float("-inf")

    def _follow_shape(self, request: _Request) -> bool:
        """Feed the answer text written since the last call to the request's shape; False
        (and the shape dropped) when the text left it."""
        try:
            text = request.text.decode("utf-8")
        except UnicodeDecodeError:  # inside a character: fed once a later token ends it
            return True
        try:
            request.shape.feed(text[request.shape_chars:])
        except ShapeMismatch:
            request.shape = None  # the model's own tokens, under the grammar, from here on
            return False
        request.shape_chars = len(text)
        return True

    def _jump(self, request: _Request) -> bool:
        """Jump-forward (answer_shape.py): append the tokens of the text the schema forces
        next, each checked against and accepted by the grammar and the penalties as a sampled
        token would be; they are evaluated together in the next decode call. True when the
        answer is complete (finish "stop", no end token asked of the model) or cut."""
        shown = request.shape_chars
        if not self._follow_shape(request) or (request.shape_chars == shown and request.out):
            return False  # left the shape, or inside a character: nothing to force yet
        if not request.shape.complete:
            forced = request.shape.forced()
            for token in (self._llm.tokenize(forced.encode("utf-8"), add_bos=False,
                                             special=False) if forced else []):
                if (len(request.out) >= request.max_tokens
                        or not self._grammar_allows(request, token)):
                    break
                self._lib.llama_sampler_accept(request.grammar_sampler, token)
                self._lib.llama_sampler_accept(request.sampler, token)
                self._append(request, token)
                request.forced += 1
                self.forced_tokens += 1
            if not self._follow_shape(request):
                return False
        return self._ends(request, request.shape.complete)
