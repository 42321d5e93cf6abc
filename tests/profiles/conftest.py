"""Fixtures for the profile tests: the default LLM loaded once, real customers, the encoder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never touch the network


@pytest.fixture(scope="session")
def llm():
    """The default packaged model, loaded once: its KV cache then holds the shared system
    prefix for every test that profiles."""
    from models.profiles.llm_backend import LocalLLM

    model = LocalLLM()
    yield model
    model.close()


@pytest.fixture(scope="session")
def profiler(llm):
    from models.profiles.profiler import Profiler

    return Profiler(llm)


@pytest.fixture(scope="session")
def real_histories(online_retail_path):
    from tests.profiles.retail_sample import load_histories

    return load_histories(online_retail_path, 5)


@pytest.fixture(scope="session")
def encoder():
    from models.profiles.text_encoder import TextEncoder

    return TextEncoder()
