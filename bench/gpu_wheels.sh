#!/usr/bin/env bash
# Downloads, on a machine with a package index, the wheels bench/gpu_check.sh installs on the
# GPU machine (which reaches no index): what training needs beyond the python3 already there
# (3.12 with a CUDA torch, transformers, numpy, pyarrow, pytest). Training imports none of
# platformdirs, textual or llama-cpp; opening a workspace whose schema is older than the code's
# (and creating one) migrates it with sqlite-utils (pure Python, with its dependencies); the
# training job's baselines (TIFU-KNN, item-kNN) need scipy. Total kept under 64 MiB; the
# folder travels with the source tree and is ignored by git.
#
#     bench/gpu_wheels.sh [--workspace DB]
#
# --workspace also copies a prepared workspace (the demo's, with profiles and embeddings,
# e.g. built with `dynllm-tui --db DB demo --no-open --profile-users 30 --epochs 1`) as
# bench/wheels/demo.db for the GPU machine, where no LLM can write profiles.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/wheels
PIP=${PIP:-.venv/bin/pip}
mkdir -p "$OUT"
"$PIP" download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --no-deps \
    --dest "$OUT" "scipy>=1.10"
"$PIP" download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --dest "$OUT" "sqlite-utils>=3.37"
if [[ "${1:-}" == "--workspace" ]]; then
    [[ -f "${2:-}" ]] || { echo "gpu_wheels.sh: no workspace file at '${2:-}'" >&2; exit 2; }
    # Through SQLite's backup, so a workspace in WAL mode arrives whole in one file.
    .venv/bin/python - "$2" "$OUT/demo.db" <<'PY'
import sqlite3
import sys

src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
dst.execute("PRAGMA journal_mode=DELETE")
dst.close()
src.close()
PY
fi
size=$(du -sm "$OUT" | cut -f1)
echo "bench/wheels: ${size} MiB"
if (( size > 64 )); then
    echo "gpu_wheels.sh: bench/wheels is ${size} MiB, over the 64 MiB that travels" >&2
    exit 1
fi
