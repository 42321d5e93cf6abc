"""Profiles over HTTP against real servers, no mocks.

llama-cpp-python's own OpenAI-compatible server runs the packaged SmolLM2 on 127.0.0.1; the
profile job writes real customers' snapshots through it, the server is SIGKILLed after a few
commits, and the rerun (through the console command) completes the set without redoing any.
A tiny standard-library server plays the broken endpoints (HTTP 500, a body that is not JSON,
a stuck server, prose instead of JSON).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynllm_tui.jobs.profiles import ServerSettings, profiles_job
from storage.errors import DynllmError
from storage.workspace import Workspace
from tests.conftest import REPO, workspace_fingerprint, write_head
from tests.profiles.llama_server import BrokenServer, LlamaServer, free_port
from tests.profiles.retail_sample import short_history_users

pytestmark = pytest.mark.slow

# The broken servers claim the real server's model name, so the derived categories it named
# are reused and the chat requests they count are the profiles' own.
SERVED = "smollm2-server"
KILL_AFTER = 2  # profiles committed before the server is killed
FAST = ServerSettings(timeout_s=60, retries=1)  # a dead server is given up on in about 1 s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LlamaServer(tmp_path_factory.mktemp("llama"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


SLICE_ROWS = 1_000  # the first real lines: the morning of 2010-12-01, 590 items


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, online_retail_path, server) -> Path:
    """A small real slice imported, its derived categories (Online Retail has none) already
    named by the server's model: the profile job reuses them, so the tests pay for them once.
    Four clusters keep that to four requests."""
    from dynllm_tui.jobs.taxonomy import ensure_taxonomy
    from models.profiles.http_backend import ServerLLM
    from storage.importer import run_import
    from storage.presets import preset_spec

    folder = tmp_path_factory.mktemp("http")
    data = write_head(online_retail_path, folder / "slice.csv", SLICE_ROWS)
    db = folder / "prepared.db"
    llm = ServerLLM(server.url)
    try:
        with Workspace.open(db) as ws:
            run_import(ws, preset_spec("online-retail", data))
            ensure_taxonomy(ws, k=4, backend=llm)
    finally:
        llm.close()
    return db


@pytest.fixture
def workspace(tmp_path, prepared) -> Path:
    db = tmp_path / "ws.db"
    shutil.copy(prepared, db)
    return db


@pytest.fixture(scope="module")
def users(prepared) -> list[str]:
    """Four real customers with short histories (8-20 lines: short prompts); the slice is one
    day, so each gets one snapshot (the final one)."""
    return short_history_users(prepared)


def _profile_rows(db) -> dict[tuple[int, int], tuple]:
    with Workspace.open(db, create=False) as ws:
        cursor = ws.conn.execute("SELECT * FROM profiles ORDER BY user_id, as_of")
        return {(row[1], row[2]): tuple(row) for row in cursor}


def test_server_killed_mid_run_then_the_rerun_completes_without_redoing(server, workspace,
                                                                         users):
    def kill_after_k(done: int, total: int, phase: str) -> None:
        if phase == "profiles" and done >= KILL_AFTER and server.proc is not None:
            server.kill()

    with pytest.raises(DynllmError) as failure:
        profiles_job(workspace, llm=server.url, every="week", min_new=1, users=users,
                     embed=False, concurrency=2, server=FAST, progress=kill_after_k)
    line = str(failure.value)
    assert "\n" not in line and server.url in line and "cannot reach the server" in line, line
    kept = _profile_rows(workspace)
    said = int(re.search(r"(\d+) made in this run are kept", line).group(1))
    # With two requests in flight the one sent before the kill may still have been answered.
    assert len(kept) == said and KILL_AFTER <= said <= KILL_AFTER + 1
    with Workspace.open(workspace, create=False) as ws:
        models = {m for (m,) in ws.conn.execute("SELECT DISTINCT model FROM profiles")}
    assert models == {server.alias}  # the served name, not the URL: stable across restarts

    server.start()
    calls_before = server.requests()
    proc = subprocess.run(
        [sys.executable, "-m", "dynllm_tui.cli", "--db", str(workspace), "profiles",
         "--llm", server.url, "--every", "week", "--min-new", "1", "--users",
         ",".join(users), "--no-embed", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    final = _profile_rows(workspace)
    assert summary["skipped"] == len(kept)
    assert summary["made"] + summary["failed"] == summary["planned"] - len(kept) > 0
    assert len(final) == summary["planned"]
    # Nothing redone: the rows of the first run are byte for byte what they were.
    assert {key: final[key] for key in kept} == kept
    # One or two chat requests (the retry of an invalid answer) per new profile, none for the
    # kept ones.
    calls = server.requests() - calls_before
    new = summary["planned"] - len(kept)
    assert new <= calls <= 2 * new


def test_a_model_the_server_does_not_serve_is_refused(server, workspace, users):
    before = workspace_fingerprint(workspace)
    with pytest.raises(DynllmError, match=r"does not serve model 'gpt-4o'; it serves: "
                       "smollm2-server"):
        profiles_job(workspace, llm=server.url, users=users[:1], embed=False,
                     server=ServerSettings(llm_model="gpt-4o"))
    assert workspace_fingerprint(workspace) == before


def test_an_endpoint_that_is_down(demo_workspace):
    url = f"http://127.0.0.1:{free_port()}/v1"
    before = workspace_fingerprint(demo_workspace)
    with pytest.raises(DynllmError, match=r"cannot reach the server for GET /models \(1 try: "):
        profiles_job(demo_workspace, llm=url, limit=1, embed=False,
                     server=ServerSettings(retries=0))
    assert workspace_fingerprint(demo_workspace) == before


@pytest.mark.parametrize(("mode", "expected"), [
    ("500", r"HTTP 500 for POST /chat/completions after 2 tries: model crashed"),
    ("text", r"the answer to POST /chat/completions is not an OpenAI-compatible response "
             r"\(text 'Service temporarily"),
    ("sleep", r"no answer to POST /chat/completions within 0.5 s \(2 tries\)"),
])
def test_a_broken_endpoint_stops_the_job_with_one_line_and_writes_nothing(
        workspace, users, mode, expected):
    before = workspace_fingerprint(workspace)
    with BrokenServer(mode, model=SERVED) as broken, pytest.raises(DynllmError) as failure:
        profiles_job(workspace, llm=broken.url, users=users[:1], every="week",
                     min_new=1, embed=False, server=ServerSettings(timeout_s=0.5, retries=1))
    line = str(failure.value)
    assert "\n" not in line and broken.url in line and re.search(expected, line), line
    assert broken.chat_requests == (2 if mode != "text" else 1)  # retried: 5xx and timeouts
    assert workspace_fingerprint(workspace) == before


def test_prose_instead_of_json_is_retried_once_then_stored_as_failed(workspace, users):
    with BrokenServer("prose", model=SERVED) as prose:
        summary = profiles_job(workspace, llm=prose.url, users=users[:1], every="week",
                               min_new=1, embed=False)
    assert summary.planned >= 1 and summary.failed == summary.planned and summary.made == 0
    assert prose.chat_requests == 2 * summary.planned  # first answer and its one retry
    with Workspace.open(workspace, create=False) as ws:
        rows = ws.conn.execute("SELECT status, model, raw, error FROM profiles").fetchall()
    assert len(rows) == summary.planned
    assert all(status == "failed" and model == SERVED and "mugs" in raw and error
               for status, model, raw, error in rows)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_concurrency_below_one_is_one_clear_line(demo_workspace, value):
    proc = subprocess.run(
        [sys.executable, "-m", "dynllm_tui.cli", "--db", str(demo_workspace), "profiles",
         "--llm", "http://127.0.0.1:9/v1", "--concurrency", value],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip() == (f"error: --concurrency must be 1 or more (requests in "
                                   f"flight per endpoint), not {value}")


@pytest.mark.parametrize("spec", ["http://:80/v1", "http://host:port/v1",
                                  "http://a:1/v1,http://a:1/v1"])
def test_malformed_endpoints_are_named(demo_workspace, spec):
    with pytest.raises(DynllmError, match="--llm: "):
        profiles_job(demo_workspace, llm=spec)


def test_requests_are_spread_over_every_endpoint(workspace, users):
    # Two endpoints x two requests in flight; each answers prose, so each profile costs exactly
    # two requests (the answer and its retry) wherever they land.
    with BrokenServer("prose", model=SERVED) as one, BrokenServer("prose", model=SERVED) as two:
        summary = profiles_job(workspace, llm=f"{one.url},{two.url}", users=users,
                               every="week", min_new=1, embed=False, concurrency=2)
    assert summary.planned == len(users) and summary.failed == summary.planned
    assert one.chat_requests > 0 and two.chat_requests > 0
    assert one.chat_requests + two.chat_requests == 2 * summary.planned


def test_endpoints_serving_different_models_are_refused(demo_workspace):
    before = workspace_fingerprint(demo_workspace)
    with BrokenServer("prose", model="a") as one, BrokenServer("prose", model="b") as two, \
            pytest.raises(DynllmError, match=r"the endpoints serve different models \(.*: a, "
                          r".*: b\); .* choose it with --llm-model"):
        profiles_job(demo_workspace, llm=f"{one.url},{two.url}", limit=1, embed=False)
    assert workspace_fingerprint(demo_workspace) == before


@pytest.mark.parametrize("dialect", ["json_object", "json_schema"])
def test_the_request_carries_the_in_process_prompt_schema_and_sampling(workspace, users,
                                                                      dialect):
    from dynllm_tui.jobs.profiles import snapshot_history
    from models.profiles.profiler import ATTEMPTS, MAX_TOKENS, REPEAT_PENALTY
    from models.profiles.prompt import build_messages, profile_schema

    with BrokenServer("prose", model=SERVED) as prose:
        profiles_job(workspace, llm=prose.url, users=users[:1], every="week", min_new=1,
                     embed=False, server=ServerSettings(response_format=dialect))
    with Workspace.open(workspace, create=False) as ws:
        user_id, as_of = ws.conn.execute("SELECT user_id, as_of FROM profiles").fetchone()
        system, user, candidates = build_messages(snapshot_history(ws, user_id, as_of))
    schema = profile_schema(candidates)
    assert len(prose.bodies) == 2  # the first answer and its retry
    for body, (temperature, seed) in zip(prose.bodies, ATTEMPTS, strict=True):
        assert body["model"] == SERVED
        assert body["messages"] == [{"role": "system", "content": system},
                                    {"role": "user", "content": user}]
        assert (body["temperature"], body["seed"]) == (temperature, seed)
        assert (body["max_tokens"], body["repeat_penalty"]) == (MAX_TOKENS, REPEAT_PENALTY)
        if dialect == "json_object":
            assert body["response_format"] == {"type": "json_object", "schema": schema}
        else:
            assert body["response_format"] == {"type": "json_schema", "json_schema": {
                "name": "profile", "schema": schema, "strict": True}}


@pytest.mark.parametrize(("settings", "expected"), [
    (ServerSettings(timeout_s=0), "--timeout must be above 0 seconds, not 0"),
    (ServerSettings(retries=-1), "--retries must be 0 or more, not -1"),
])
def test_bad_timeout_or_retries_are_one_line(demo_workspace, settings, expected):
    with pytest.raises(DynllmError, match=expected):
        profiles_job(demo_workspace, llm="http://127.0.0.1:9/v1", server=settings)


def test_a_failing_endpoint_is_dropped_and_the_others_take_its_requests(workspace, users):
    with BrokenServer("500", model=SERVED) as failing, \
            BrokenServer("prose", model=SERVED) as answering:
        summary = profiles_job(workspace, llm=f"{failing.url},{answering.url}", users=users,
                               every="week", min_new=1, embed=False,
                               server=ServerSettings(retries=1))
    # Every snapshot was answered (prose: stored as failed after its retry) by the endpoint
    # that still works; the failing one saw its first request and that request's retry (and
    # at most one more pair sent before it was dropped).
    assert summary.planned == len(users) and summary.failed == summary.planned
    assert answering.chat_requests == 2 * summary.planned
    assert failing.chat_requests in (2, 4)
    assert len(summary.endpoints_dropped) == 1
    assert summary.endpoints_dropped[0].startswith(f"{failing.url}: HTTP 500")
