"""The in-process batched engine: several users' prompts decoded together from one GGUF.

Real parts only: the packaged SmolLM2, real Online Retail customers, a real workspace slice.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from models.profiles.batched_llm import BatchedLLM, EngineClosedError, PromptTooLongError
from models.profiles.output import parse_profile
from models.profiles.profiler import MAX_TOKENS, REPEAT_PENALTY, Profiler
from models.profiles.prompt import build_messages, profile_schema
from storage.workspace import Workspace
from tests.conftest import write_head
from tests.profiles.retail_sample import short_history_users

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    model = BatchedLLM(n_seq=3)
    yield model
    model.close()


def _requests(histories):
    out = []
    for history in histories:
        system, user, candidates = build_messages(history)
        out.append((system, user, candidates))
    return out


def test_concurrent_requests_answer_schema_valid_profiles(engine, real_histories):
    requests = _requests(real_histories[:4])
    with ThreadPoolExecutor(4) as pool:  # one more caller than sequences: one waits its turn
        completions = list(pool.map(
            lambda r: engine.chat(r[0], r[1], schema=profile_schema(r[2]),
                                  max_tokens=MAX_TOKENS, temperature=0.2,
                                  repeat_penalty=REPEAT_PENALTY), requests))
    for (system, user, candidates), c in zip(requests, completions, strict=True):
        facets = parse_profile(c.text, candidates)  # raises on anything off-schema
        assert facets.crowd_segment
        assert c.finish_reason == "stop" and 0 < c.completion_tokens < MAX_TOKENS
        assert c.prompt_tokens == len(engine.render(system, user)[0])
        assert 0 < c.prompt_tokens_evaluated <= c.prompt_tokens
        assert c.prompt_eval_s > 0 and c.decode_s > 0 and c.wall_s >= c.decode_s
    # The ~1,200-token system prefix is evaluated once and shared: requests admitted after the
    # first one evaluate only their own part.
    assert min(c.prompt_tokens_evaluated for c in completions) < 400
    assert engine.decode_calls < sum(c.completion_tokens for c in completions)
    # Jump-forward (on by default): the keys, the punctuation and the rest of each category
    # once its first letters decide it are appended, not decoded one call a token.
    assert all(0 < c.forced_tokens < c.completion_tokens for c in completions)


def test_profiler_over_the_engine(engine, real_histories):
    profilers = [Profiler(engine) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda pair: pair[0].profile(pair[1]),
                                zip(profilers, real_histories[:3], strict=True)))
    assert all(r.ok for r in results), [r.error for r in results]
    assert {r.model for r in results} == {"smollm2"}  # the same name LocalLLM gives: same hashes


def test_greedy_single_sequence_equals_local_llm(llm, real_histories):
    """One sequence: the engine's answers equal LocalLLM's token for token (same prompt
    tokens, sampler chain and kernels). Several sequences in one decode call use other matrix
    kernels (batched rows), whose rounding can flip a near-tie: see the module doc of
    models/profiles/batched_llm.py (5 of 12 greedy answers equal at 4 sequences)."""
    requests = _requests(real_histories[:3])
    single = BatchedLLM(n_seq=1, jump_forward=False)  # every token decoded, as LocalLLM does
    try:
        for system, user, candidates in requests:
            kwargs = {"schema": profile_schema(candidates), "max_tokens": MAX_TOKENS,
                      "temperature": 0.0, "repeat_penalty": REPEAT_PENALTY}
            local = llm.chat(system, user, **kwargs)
            batched = single.chat(system, user, **kwargs)
            assert batched.text == local.text
            assert batched.completion_tokens == local.completion_tokens
            assert batched.prompt_tokens == local.prompt_tokens
            assert batched.finish_reason == local.finish_reason
    finally:
        single.close()


def test_lazy_grammar_gives_the_eager_greedy_answers(real_histories):
    """The grammar consulted only for the sampled token (resampling under it when it refuses)
    picks the same greedy tokens as the grammar applied to the whole vocabulary first: a
    valid argmax is the argmax of the valid tokens."""
    requests = _requests(real_histories[:3])
    lazy = BatchedLLM(n_seq=1, jump_forward=False)  # the eager grammar never jumps
    eager = BatchedLLM(n_seq=1, lazy_grammar=False)
    try:
        for system, user, candidates in requests:
            kwargs = {"schema": profile_schema(candidates), "max_tokens": MAX_TOKENS,
                      "temperature": 0.0, "repeat_penalty": REPEAT_PENALTY}
            assert lazy.chat(system, user, **kwargs).text == eager.chat(system, user,
                                                                        **kwargs).text
        # Every lazy token was checked; the eager engine never needs to.
        assert lazy.grammar_checks > 0 and eager.grammar_checks == 0
    finally:
        lazy.close()
        eager.close()


def test_lazy_grammar_resamples_a_token_the_grammar_refuses(real_histories):
    """A schema the model would never write on its own (an enum of words it has not seen):
    its own first choices are refused, resampled under the grammar, and the answer follows the
    schema exactly."""
    system, user, _ = _requests(real_histories[:1])[0]
    schema = {"type": "object", "properties": {"zq": {"enum": ["xylophone quokka"]}},
              "required": ["zq"], "additionalProperties": False}
    model = BatchedLLM(n_seq=1, jump_forward=False)  # with it, nothing would be sampled
    try:
        for temperature in (0.0, 0.8):
            before = model.grammar_rejects
            answer = model.chat(system, user, schema=schema, max_tokens=40,
                                temperature=temperature, seed=3)
            assert json.loads(answer.text) == {"zq": "xylophone quokka"}
            assert model.grammar_rejects > before
    finally:
        model.close()


def test_jump_forward_writes_what_the_schema_forces_without_decoding_it(real_histories):
    """An answer the schema fixes entirely is written by jump-forward alone: no token is
    sampled, none refused, and the answer is the one the grammar allows. A schema with a free
    phrase: its key and punctuation are forced, the phrase is the model's."""
    system, user, _ = _requests(real_histories[:1])[0]
    fixed = {"type": "object", "properties": {"zq": {"enum": ["xylophone quokka"]}},
             "required": ["zq"], "additionalProperties": False}
    phrase = {"type": "object", "additionalProperties": False, "required": ["a", "zq"],
              "properties": {"zq": {"enum": ["xylophone quokka"]},
                             "a": {"type": "string", "pattern": "^[a-z][a-z ]{1,30}$"}}}
    model = BatchedLLM(n_seq=1)
    try:
        answer = model.chat(system, user, schema=fixed, max_tokens=40, temperature=0.0)
        assert json.loads(answer.text) == {"zq": "xylophone quokka"}
        assert answer.finish_reason == "stop"
        assert answer.forced_tokens == answer.completion_tokens > 0
        assert model.grammar_checks == 0
        answer = model.chat(system, user, schema=phrase, max_tokens=60, temperature=0.0)
        obj = json.loads(answer.text)
        assert list(obj) == ["a", "zq"] and obj["zq"] == "xylophone quokka" and obj["a"]
        assert answer.text.startswith('{"a":"')
        assert 0 < answer.forced_tokens < answer.completion_tokens
        # A cut inside the forced opening is a cut like any other.
        cut = model.chat(system, user, schema=phrase, max_tokens=2, temperature=0.0)
        assert cut.finish_reason == "length" and cut.completion_tokens == 2
    finally:
        model.close()


def test_a_forced_token_the_grammar_refuses_stops_jump_forward(real_histories):
    """The grammar has the last word: given a shape that disagrees with it (keys in another
    order), the first refused token ends the forcing, the shape is dropped when the model's own
    text leaves it, and the answer still follows the schema."""
    from models.profiles.answer_shape import AnswerShape

    system, user, _ = _requests(real_histories[:1])[0]
    schema = {"type": "object", "additionalProperties": False, "required": ["a", "b"],
              "properties": {"a": {"enum": ["yes", "no"]}, "b": {"enum": ["red", "blue"]}}}
    swapped = {**schema, "properties": {"b": schema["properties"]["b"],
                                        "a": schema["properties"]["a"]}}
    model = BatchedLLM(n_seq=1)
    try:
        grammar, _ = model._grammar(schema)
        model._grammars[json.dumps(schema, sort_keys=True)] = (
            grammar, AnswerShape.from_schema(swapped))
        answer = model.chat(system, user, schema=schema, max_tokens=40, temperature=0.0)
        obj = json.loads(answer.text)
        assert list(obj) == ["a", "b"] and obj["a"] in ("yes", "no") and obj["b"] in (
            "red", "blue")
        assert answer.forced_tokens == 1  # '{"' only: the next forced token ('b') was refused
    finally:
        model.close()


def test_seeded_sampling_is_repeatable(real_histories):
    """The same request with the same seed, on engines in the same state, gives the same answer.

    Fresh engines, not one engine asked twice: the second ask would take all but the last
    prompt token from the stored prefix, and a prompt split otherwise into decode calls rounds
    its logits otherwise (see the module doc), which a sampled answer may follow (CI saw it)."""
    system, user, candidates = _requests(real_histories[:1])[0]
    kwargs = {"schema": profile_schema(candidates), "max_tokens": MAX_TOKENS,
              "temperature": 0.8, "seed": 7, "repeat_penalty": REPEAT_PENALTY}
    answers = []
    for _ in range(2):
        model = BatchedLLM(n_seq=1)
        try:
            answers.append(model.chat(system, user, **kwargs).text)
        finally:
            model.close()
    assert answers[0] == answers[1]
    assert parse_profile(answers[0], candidates).crowd_segment


def test_a_prompt_too_long_is_refused_and_the_next_is_served(engine, real_histories):
    system, user, candidates = _requests(real_histories[:1])[0]
    with pytest.raises(PromptTooLongError, match=r"the prompt is \d+ tokens and up to 224 more "
                       r"are asked for: \d+ > 4096, the tokens one sequence"):
        engine.chat(system, user + " lots of words" * 1500, max_tokens=MAX_TOKENS)
    c = engine.chat(system, user, schema=profile_schema(candidates), max_tokens=MAX_TOKENS)
    assert parse_profile(c.text, candidates).crowd_segment


def test_a_small_cache_admits_requests_as_room_frees(real_histories):
    """A cache of 2,048 cells holds the ~1,400-token stored prompt and one request's own
    tokens: the other requests wait for room instead of failing a decode, and a prompt that
    shares nothing with the stored one gets the cache to itself."""
    requests = _requests(real_histories[:3])
    small = BatchedLLM(n_seq=3, seq_ctx=2048, kv_cells=2048)
    try:
        with ThreadPoolExecutor(3) as pool:
            completions = list(pool.map(
                lambda r: small.chat(r[0], r[1], schema=profile_schema(r[2]),
                                     max_tokens=MAX_TOKENS, repeat_penalty=REPEAT_PENALTY),
                requests))
        for (_, _, candidates), c in zip(requests, completions, strict=True):
            assert parse_profile(c.text, candidates).crowd_segment
        system, user, candidates = requests[0]
        other = small.chat("Answer in JSON. " + "Be brief and exact. " * 250, user,
                           schema=profile_schema(candidates), max_tokens=MAX_TOKENS)
        assert other.prompt_tokens_evaluated > 1000 and other.text.startswith("{")
    finally:
        small.close()


def test_max_tokens_cuts_with_finish_reason_length(engine, real_histories):
    system, user, candidates = _requests(real_histories[:1])[0]
    c = engine.chat(system, user, schema=profile_schema(candidates), max_tokens=5)
    assert c.finish_reason == "length" and c.completion_tokens == 5


def test_close_with_requests_in_flight_does_not_hang(real_histories):
    model = BatchedLLM(n_seq=2)
    requests = _requests(real_histories[:4])
    outcomes: list = []

    def ask(r) -> None:
        try:
            outcomes.append(model.chat(r[0], r[1], schema=profile_schema(r[2]),
                                       max_tokens=MAX_TOKENS))
        except EngineClosedError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=ask, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while model.decode_calls < 2 and time.monotonic() < deadline:  # decoding has started
        time.sleep(0.05)
    started = time.monotonic()
    model.close()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert time.monotonic() - started < 30
    assert len(outcomes) == 4
    assert any(isinstance(o, EngineClosedError) for o in outcomes)  # two at least were waiting
    with pytest.raises(EngineClosedError, match="closed"):
        model.chat("system", "user")
    model.close()  # twice is harmless


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="n_seq must be 1 or more, not 0"):
        BatchedLLM(n_seq=0)
    with pytest.raises(ValueError, match="seq_ctx must be at least 64"):
        BatchedLLM(seq_ctx=10)
    with pytest.raises(ValueError, match=r"kv_cells \(1000\) must hold one request of "
                       r"seq_ctx \(2048\) tokens"):
        BatchedLLM(seq_ctx=2048, kv_cells=1000)


# -- the profile job with --concurrency N in-process -------------------------------------

SLICE_ROWS = 1_000  # the first real lines: the morning of 2010-12-01


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, online_retail_path) -> Path:
    """A real slice with its derived categories already named (4 clusters, so 4 requests):
    each job run below pays only for its profiles."""
    from dynllm_tui.jobs.taxonomy import ensure_taxonomy
    from storage.importer import run_import
    from storage.presets import preset_spec

    folder = tmp_path_factory.mktemp("batched")
    data = write_head(online_retail_path, folder / "slice.csv", SLICE_ROWS)
    db = folder / "prepared.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", data))
        ensure_taxonomy(ws, k=4)
    return db


@pytest.fixture(scope="module")
def users(prepared) -> list[str]:
    """Four real customers with short histories; one snapshot each (the slice is one day)."""
    return short_history_users(prepared)


def _snapshots(db) -> dict[tuple[int, int], tuple]:
    with Workspace.open(db, create=False) as ws:
        return {(u, a): (h, m, v) for u, a, h, m, v in ws.conn.execute(
            "SELECT user_id, as_of, input_hash, model, prompt_version FROM profiles")}


def test_job_with_two_in_process_sequences_stores_what_one_does(tmp_path, prepared, users):
    from dynllm_tui.jobs.profiles import profiles_job

    one, two = tmp_path / "one.db", tmp_path / "two.db"
    shutil.copy(prepared, one)
    shutil.copy(prepared, two)
    kwargs = {"writer": "llm", "every": "week", "min_new": 1, "users": users, "embed": False}
    first = profiles_job(one, concurrency=1, engines=1, **kwargs)  # one engine, one sequence
    second = profiles_job(two, concurrency=2, engines=2, **kwargs)  # 2 engines x 2 sequences
    assert first.planned == second.planned == len(users)
    assert second.made + second.failed == second.planned
    assert _snapshots(one) == _snapshots(two)  # same snapshots, inputs, model, prompt version
    again = profiles_job(two, concurrency=2, **kwargs)
    assert again.skipped == again.planned and again.made == again.failed == 0


@pytest.mark.parametrize(("engines", "sequences"), [(1, 2), (2, 1)])
def test_job_cancelled_then_resumed_with_two_sequences(tmp_path, prepared, users, engines,
                                                       sequences):
    from dynllm_tui.jobs.control import CancelFlag
    from dynllm_tui.jobs.profiles import profiles_job

    db = tmp_path / "ws.db"
    shutil.copy(prepared, db)
    flag = CancelFlag()

    def stop_after_one(done, total, phase):
        if phase == "profiles" and done >= 1:
            flag.set()

    kwargs = {"writer": "llm", "every": "week", "min_new": 1, "users": users, "embed": False,
              "concurrency": sequences, "engines": engines}  # 2 in flight, 4 users
    first = profiles_job(db, progress=stop_after_one, cancel=flag, **kwargs)
    kept = _snapshots(db)
    # Cancelled: nothing more was sent, the requests in flight were committed.
    assert first.cancelled and 1 <= first.made + first.failed == len(kept) < len(users)
    second = profiles_job(db, **kwargs)
    assert second.skipped == len(kept)
    assert second.made + second.failed == len(users) - len(kept)
    final = _snapshots(db)
    assert len(final) == len(users) and {k: final[k] for k in kept} == kept


def test_job_refuses_too_many_in_process_sequences(demo_workspace):
    from dynllm_tui.jobs.profiles import profiles_job
    from storage.errors import DynllmError

    with pytest.raises(DynllmError, match="--concurrency 17 is more sequences than the "
                       "in-process model decodes together"):
        profiles_job(demo_workspace, concurrency=17)
    with pytest.raises(DynllmError, match=r"--concurrency must be 1 or more \(sequences the "
                       r"in-process model decodes together\), not 0"):
        profiles_job(demo_workspace, concurrency=0)


@pytest.mark.parametrize("engines", [0, 9, -1])
def test_job_refuses_an_engine_count_out_of_range(demo_workspace, engines):
    from dynllm_tui.jobs.profiles import profiles_job
    from storage.errors import DynllmError

    with pytest.raises(DynllmError, match=rf"--engines must be from 1 to 8 \(copies of the "
                       rf"in-process model, one thread each\), not {engines}$"):
        profiles_job(demo_workspace, engines=engines)


def test_engines_with_a_server_is_one_clear_line(demo_workspace):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "dynllm_tui.cli", "--db", str(demo_workspace), "profiles",
         "--llm", "http://127.0.0.1:9/v1", "--engines", "2"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip() == ("error: --engines is for the in-process model; with --llm "
                                   "servers use --concurrency (requests in flight per endpoint)")
