"""Real servers for the HTTP tests: llama-cpp-python's own OpenAI-compatible server on the
packaged SmolLM2 file, and a tiny misbehaving server (standard library http.server) that answers
what a broken endpoint answers. Both listen on 127.0.0.1 and a free port; the test stops them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on the packaged SmolLM2 (the Q8_0 file the in-process path
    uses), started and stopped by the test. `kill()` is SIGKILL: the server dies mid-request as
    it would on a crash; `start()` again serves on the same port."""

    def __init__(self, log_dir: Path, *, alias: str = "smollm2-server", embedding: bool = False,
                 port: int | None = None) -> None:
        from models.profiles.model_files import packaged_model_path

        self.model_path = packaged_model_path("smollm2")
        self.alias = alias
        self.embedding = embedding
        self.port = port or free_port()
        self.log = log_dir / f"llama_server_{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 60.0) -> LlamaServer:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
               "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", "4096", "--verbose", "false",
               # One thread for prompts too (the server's default is every core): spinning
               # llama.cpp threads collapse on a busy 2-core machine (see default_threads).
               "--n_threads", "1", "--n_threads_batch", "1"]
        if self.embedding:
            cmd += ["--embedding", "true"]
        with self.log.open("a") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone (its port is then refused)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def requests(self, path: str = "POST /v1/chat/completions") -> int:
        """How many requests of this kind the server logged (uvicorn's access log)."""
        return self.log.read_text().count(path) if self.log.exists() else 0


class BrokenServer:
    """An endpoint that lists one model and answers chat requests with `mode`:
    "500" (HTTP 500), "text" (200 with a body that is not JSON), "sleep" (no answer for
    `sleep_s`) or "prose" (a well-formed chat completion whose content is not JSON)."""

    def __init__(self, mode: str, *, model: str = "broken-model", sleep_s: float = 3.0) -> None:
        self.mode, self.model, self.sleep_s = mode, model, sleep_s
        self.chat_requests = 0
        self.bodies: list[dict] = []  # every chat request, as sent
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except BrokenPipeError:  # the client timed out first, as the test intends
                    pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": server.model, "object": "model", "owned_by": "test"}]}).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                server.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                server.chat_requests += 1
                if server.mode == "500":
                    self._send(500, b'{"error": {"message": "model crashed"}}')
                elif server.mode == "text":
                    self._send(200, b"Service temporarily replaced by a static page",
                               "text/plain")
                elif server.mode == "sleep":
                    time.sleep(server.sleep_s)
                    self._send(200, b"{}")
                else:
                    self._send(200, json.dumps({
                        "id": "x", "object": "chat.completion", "created": 0,
                        "model": server.model,
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant", "content": "Sure! This customer loves mugs."}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 7,
                                  "total_tokens": 17}}).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> BrokenServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
