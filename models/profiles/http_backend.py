"""Profiles and text vectors from OpenAI-compatible servers (llama.cpp's `llama-server`, vLLM,
`python -m llama_cpp.server`), through the maintained `openai` client.

`ServerLLM` answers the same chat requests as `LocalLLM` (same messages, same JSON schema, same
sampling settings), so `Profiler` uses either. `ServerEncoder` calls `/v1/embeddings`.

Failures and what becomes of them:
- connection refused, a timeout, HTTP 408/409/429/5xx: retried by the client with exponential
  back-off (0.5 s, 1 s, 2 s, ... at most 8 s, with jitter; `retries` times), then an
  `EndpointError` naming the endpoint — the job stops, what it committed stays;
- any other HTTP error, or a body that is not an OpenAI answer: `EndpointError` at once;
- an answer that is not JSON or breaks the schema is not an endpoint error: `Profiler` retries
  it once and then stores a failed profile, exactly as for the in-process model.

Structured output: `response_format` is sent in one of two dialects. `json_object` carries the
schema beside the type (`{"type": "json_object", "schema": ...}`), which llama-cpp-python's
server (0.3.x) and llama.cpp's `llama-server` turn into a grammar; `json_schema`
(`{"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}`) is OpenAI's own form,
which vLLM and `llama-server` accept and llama-cpp-python's server refuses.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from models.profiles.errors import EndpointError
from models.profiles.llm_backend import Completion

RESPONSE_FORMATS = ("json_object", "json_schema")
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 3
# A server started with an API key (llama-server --api-key, vLLM --api-key) gets it from this
# environment variable; others accept any key, and the client needs one to build its header.
API_KEY_ENV = "DYNLLM_API_KEY"
_NO_KEY = "not-needed"


def is_endpoint(spec: str) -> bool:
    """True when an --llm / --encoder value names a server rather than a model or file."""
    return spec.strip().lower().startswith(("http://", "https://"))


def parse_endpoints(spec: str, option: str = "--llm") -> list[str]:
    """Comma-separated base URLs (`http://HOST:PORT/v1`), checked, without trailing slashes."""
    urls = [part.strip().rstrip("/") for part in spec.split(",") if part.strip()]
    if not urls:
        raise EndpointError(f"{option}: no endpoint given; write http://HOST:PORT/v1")
    for url in urls:
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise EndpointError(
                f"{option}: bad port in {url!r}; write http://HOST:PORT/v1") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointError(f"{option}: {url!r} is not an http(s) URL; write "
                                "http://HOST:PORT/v1")
    if len(set(urls)) != len(urls):
        raise EndpointError(f"{option}: an endpoint is listed twice in {spec!r}")
    return urls


def _first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Endpoint:
    """One base URL and its client; turns every client failure into one EndpointError line."""

    def __init__(self, url: str, *, timeout_s: float, retries: int) -> None:
        import os

        import openai  # lazily: pydantic and the HTTP stack are not needed to start the CLI

        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self._openai = openai
        self.client = openai.OpenAI(base_url=url, api_key=os.environ.get(API_KEY_ENV) or _NO_KEY,
                                    timeout=timeout_s, max_retries=retries)

    def call(self, what: str, fn, **kwargs) -> Any:
        openai = self._openai
        tries = "1 try" if self.retries == 0 else f"{self.retries + 1} tries"
        try:
            return fn(**kwargs)
        except openai.APITimeoutError:
            raise EndpointError(
                f"{self.url}: no answer to {what} within {self.timeout_s:g} s ({tries}); the "
                "server is overloaded or stuck — raise --timeout or lower --concurrency"
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise EndpointError(
                f"{self.url}: cannot reach the server for {what} ({tries}: "
                f"{_first_line(str(cause)) or type(cause).__name__}); is it running, and is "
                "the URL its /v1 base?"
            ) from None
        except openai.APIStatusError as exc:
            detail = _status_detail(exc)
            hint = {404: "; is the URL the server's /v1 base?",
                    401: f"; the server wants an API key: set {API_KEY_ENV}"}.get(
                        exc.status_code, "")
            retried = f" after {tries}" if exc.status_code >= 500 else ""
            raise EndpointError(f"{self.url}: HTTP {exc.status_code} for {what}{retried}: "
                                f"{detail}{hint}") from None
        except (openai.APIResponseValidationError, ValueError, TypeError, KeyError,
                AttributeError) as exc:
            raise EndpointError(
                f"{self.url}: the answer to {what} is not an OpenAI-compatible response "
                f"({_first_line(str(exc)) or type(exc).__name__}); is this an OpenAI-compatible "
                "server?"
            ) from None

    def served_models(self) -> list[str]:
        page = self.call("GET /models", self.client.models.list)
        ids = [getattr(m, "id", None) for m in getattr(page, "data", None) or []]
        if not ids or not all(isinstance(i, str) for i in ids):
            raise EndpointError(f"{self.url}: GET /models lists no model; is this an "
                                "OpenAI-compatible server?")
        return ids

    def choose_model(self, wanted: str | None, option: str) -> str:
        """The served model to ask for: `wanted` if the server serves it, else its only one.
        Checked here because some servers (llama_cpp.server) silently answer an unknown name
        with their default model, which would store profiles under the wrong name."""
        served = self.served_models()
        if wanted is None:
            if len(served) == 1:
                return served[0]
            raise EndpointError(f"{self.url} serves several models ({', '.join(served)}); "
                                f"choose one with {option}")
        if wanted not in served:
            raise EndpointError(f"{self.url} does not serve model {wanted!r}; it serves: "
                                f"{', '.join(served)} (choose one with {option})")
        return wanted


def _status_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error") or body
        if isinstance(message, dict):
            message = message.get("message") or message
        return _first_line(str(message))
    response = getattr(exc, "response", None)
    text = getattr(response, "text", "") if response is not None else ""
    return _first_line(text) or _first_line(str(exc)) or "no detail"


class ServerLLM:
    """The chat half of `LocalLLM` over HTTP, for one endpoint. Thread-safe: the client keeps a
    connection pool, so several threads may have requests in flight on one endpoint."""

    def __init__(self, url: str, model: str | None = None, *,
                 response_format: str = "json_object", timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES) -> None:
        if response_format not in RESPONSE_FORMATS:
            raise EndpointError(f"unknown response format {response_format!r}; use one of "
                                f"{', '.join(RESPONSE_FORMATS)}")
        if timeout_s <= 0:
            raise EndpointError(f"--timeout must be above 0 seconds, not {timeout_s:g}")
        if retries < 0:
            raise EndpointError(f"--retries must be 0 or more, not {retries}")
        self.endpoint = _Endpoint(url, timeout_s=timeout_s, retries=retries)
        self.model = self.endpoint.choose_model(model, "--llm-model")
        self.response_format = response_format

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def name(self) -> str:
        """The served model's name: the same on every endpoint and across restarts, so it (not
        the URL) is what input hashes and stored profiles carry."""
        return self.model

    def _response_format(self, schema: dict) -> dict:
        if self.response_format == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema",
                "json_schema": {"name": "profile", "schema": schema, "strict": True}}

    def chat(self, system: str, user: str, *, schema: dict | None = None, max_tokens: int = 200,
             temperature: float = 0.2, seed: int = 0, repeat_penalty: float = 1.0,
             reuse_prefix: bool = True) -> Completion:
        """One chat turn, as `LocalLLM.chat`. `reuse_prefix` is the server's business (llama.cpp
        servers keep a prompt cache per slot); it is accepted and ignored."""
        del reuse_prefix
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        kwargs: dict[str, Any] = {
            "model": self.model, "messages": messages, "max_tokens": max_tokens,
            "temperature": temperature, "seed": seed,
            # Not OpenAI fields: llama.cpp's servers read `repeat_penalty`, vLLM reads
            # `repetition_penalty` (same meaning); each ignores the other's.
            "extra_body": {"repeat_penalty": repeat_penalty,
                           "repetition_penalty": repeat_penalty},
        }
        if schema is not None:
            kwargs["response_format"] = self._response_format(schema)
        start = time.perf_counter()
        out = self.endpoint.call("POST /chat/completions",
                                 self.endpoint.client.chat.completions.create, **kwargs)
        wall = time.perf_counter() - start
        if isinstance(out, str) or not getattr(out, "choices", None):
            # The client hands back a body that is not JSON as plain text.
            what = f"text {_first_line(out, 60)!r}" if isinstance(out, str) else "no choices"
            raise EndpointError(f"{self.url}: the answer to POST /chat/completions is not an "
                                f"OpenAI-compatible response ({what}); is this an "
                                "OpenAI-compatible server?")
        choice, usage = out.choices[0], out.usage
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0)
        return Completion(
            text=(choice.message.content if choice.message else None) or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=prompt_tokens, prompt_tokens_evaluated=prompt_tokens - cached,
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            prompt_eval_s=0.0, decode_s=0.0, wall_s=wall,
        )

    def close(self) -> None:
        self.endpoint.client.close()


class ServerEncoder:
    """Text -> float32 vectors from an endpoint's `/v1/embeddings`, L2-normalised like the local
    encoder's. The dimension is whatever the served model gives (learned by one probe). Per-token
    answers (a server without pooling) are mean-pooled here."""

    def __init__(self, url: str, model: str | None = None, *, batch_size: int = 64,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES) -> None:
        self.endpoint = _Endpoint(url, timeout_s=timeout_s, retries=retries)
        self.model = self.endpoint.choose_model(model, "--encoder-model")
        # The probe learns the size, and whether one request may carry several texts: on a
        # model without pooling llama_cpp.server 0.3.x returns wrong vectors for all but the
        # first text of a request (measured: two equal texts, cosine 0.01), so texts then go
        # one per request.
        probe = self._embed(["dimension probe", "dimension probe"])
        self.dim = int(probe.shape[1])
        self.batches = bool(float(probe[0] @ probe[1]) > 0.999)
        self.batch_size = batch_size if self.batches else 1

    @property
    def name(self) -> str:
        """The key vectors are stored under (model, where it ran, pooling)."""
        safe = re.sub(r"[/\\]+", "_", self.model)  # a path-like served name stays one key part
        return f"{safe}/server-l2"

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = self.endpoint.call("POST /embeddings", self.endpoint.client.embeddings.create,
                                 model=self.model, input=texts)
        rows = sorted(getattr(out, "data", None) or [], key=lambda d: d.index)
        if len(rows) != len(texts):
            raise EndpointError(f"{self.endpoint.url}: POST /embeddings gave {len(rows)} "
                                f"vectors for {len(texts)} texts")
        vectors = [np.asarray(r.embedding, dtype=np.float32) for r in rows]
        # A server without pooling (llama_cpp.server on a chat model: it has no pooling option)
        # answers one vector per token; their mean is what `llama-server --pooling mean` sends.
        vectors = [v.mean(axis=0) if v.ndim == 2 and len(v) else v for v in vectors]
        if any(v.ndim != 1 or not v.size for v in vectors):
            raise EndpointError(f"{self.endpoint.url}: POST /embeddings gave something that "
                                "is not one vector per text")
        if len({v.shape[0] for v in vectors}) != 1:
            raise EndpointError(f"{self.endpoint.url}: POST /embeddings gave vectors of "
                                "different sizes in one answer")
        matrix = np.stack(vectors)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of shape (len(texts), dim), unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._embed([t if t.strip() else " " for t in texts[i:i + self.batch_size]])
                 for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts)

    def close(self) -> None:
        self.endpoint.client.close()
