"""`dynllm-tui serve`: the real command as a subprocess on a free port. The page answers over
HTTP, a websocket client (what the page's script does) gets the app itself on the workspace,
and bad input (a port in use, a port out of range, a missing workspace) is one line, rc 2."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp

from tests.conftest import REPO

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_cmd(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dynllm_tui.cli", "--db", str(db), "serve", *args]


def fetch_page(url: str, server: subprocess.Popen) -> str:
    """GET `url` until it answers 200 (the server takes a moment to listen)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise AssertionError(f"serve exited with {server.returncode}: "
                                 f"{server.stderr.read() if server.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                assert answer.status == 200
                return answer.read().decode("utf-8")
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def served_screen(url: str, wanted: tuple[str, ...], timeout: float = 60) -> str:
    """What the served app writes to a browser tab of 110x32, until every `wanted` text has
    appeared (or the timeout)."""
    seen = ""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        deadline = time.monotonic() + timeout
        while not all(w in seen for w in wanted) and time.monotonic() < deadline:
            try:
                message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.TEXT:
                seen += message.data
            elif message.type == aiohttp.WSMsgType.BINARY:
                seen += message.data.decode("utf-8", "replace")
            else:
                break
    return seen


async def test_serve_answers_the_page_and_runs_the_app_on_the_workspace(demo_workspace):
    port = free_port()
    server = subprocess.Popen(serve_cmd(demo_workspace, "--port", str(port)), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = await asyncio.to_thread(fetch_page, f"http://127.0.0.1:{port}/", server)
        assert "dynllm-tui" in page
        assert f"ws://127.0.0.1:{port}/ws" in page  # where the page's script connects
        screen = await served_screen(f"ws://127.0.0.1:{port}/ws?width=110&height=32",
                                     ("Pipeline", demo_workspace.name))
        assert "Pipeline" in screen and demo_workspace.name in screen, screen[-2000:]
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_serve_on_a_port_in_use_is_one_line(demo_workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(serve_cmd(demo_workspace, "--port", str(port)), cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: serve: port {port} on 127.0.0.1 is already in use: choose another with "
        "--port N"]


def test_serve_refuses_a_bad_port_and_a_missing_workspace(demo_workspace, tmp_path):
    done = subprocess.run(serve_cmd(demo_workspace, "--port", "70000"), cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: serve: --port 70000 is not a port number (1 to 65535)"
    missing = tmp_path / "nope.db"
    done = subprocess.run(serve_cmd(missing, "--port", str(free_port())), cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert str(missing) in done.stderr and not missing.exists()
