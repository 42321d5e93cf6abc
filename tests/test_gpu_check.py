"""bench/gpu_check.sh runs to the end on the CPU (--device cpu) with a given interpreter, on a
workspace imported from a slice of the shipped demo file: one table with the training job's
and bench/train.py's figures, the given workspace untouched; bad arguments get one clear line.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, REPO, write_head

SCRIPT = REPO / "bench" / "gpu_check.sh"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def tiny_workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gpu_check")
    db = folder / "tiny.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", write_head(DEMO_SLICE,
                                                               folder / "head.csv", 2500)))
    return db


def test_runs_to_the_end_on_the_cpu_and_prints_one_table(tiny_workspace):
    before = hashlib.sha256(tiny_workspace.read_bytes()).hexdigest()
    done = _run("--device", "cpu", "--db", str(tiny_workspace), "--epochs", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    table = out[out.index("training job (2 epochs"):]
    assert re.search(r"^\s+cpu$", out[:out.index("training job (2 epochs")].splitlines()[-1])
    for row in ("training job (2 epochs", "bench/train.py, ours (2 epochs",
                "bench/train.py, before #14 (2 epochs"):
        assert row in table
    # Every figure is a positive number; no GPU figure on the CPU.
    for label in ("epoch s", "events/s", "evaluation s (test part)"):
        values = re.findall(rf"^  {re.escape(label)}\s+([\d,.]+)$", table, re.M)
        assert len(values) == 3, label
        assert all(float(v.replace(",", "")) > 0 for v in values), (label, values)
    assert "peak GPU memory" not in table
    assert hashlib.sha256(tiny_workspace.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(("args", "message"), [
    (("--device", "tpu"), "--device must be cuda or cpu, not 'tpu'"),
    (("--epochs", "0"), "--epochs must be a positive integer, not '0'"),
    (("--db", "/nonexistent/ws.db", "--device", "cpu"), "no workspace at '/nonexistent/ws.db'"),
    (("--fast",), "unknown argument '--fast' (see --help)"),
])
def test_bad_arguments_get_one_clear_line(args, message):
    done = _run(*args, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"gpu_check.sh: {message}"]


def test_cuda_asked_for_without_a_gpu_is_refused_in_one_line(tiny_workspace):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal cannot happen here")
    done = _run("--device", "cuda", "--db", str(tiny_workspace), timeout=60)
    assert done.returncode != 0
    assert "--device cuda was asked for but torch sees no GPU" in done.stderr
