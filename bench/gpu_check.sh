#!/usr/bin/env bash
# The GPU path in one script (issue #14 item 5): trains the app's training job for 2 epochs
# with --device cuda on a prepared workspace, runs bench/train.py on CUDA, does the same on the
# CPU, and prints ONE table (epoch s, events/s, evaluation s, peak GPU memory, CPU/GPU ratio).
#
#     PYTHON=python3 bench/gpu_check.sh [--device cuda|cpu] [--db WORKSPACE] [--epochs N]
#
# Runs the code from this source tree with $PYTHON (default python3), never installed, and
# imports neither the UI nor the LLM. Whatever training needs that $PYTHON lacks (scipy for
# the job's baselines, sqlite-utils to migrate or create a workspace) is pip-installed
# offline, into a throwaway folder, from the wheels in
# bench/wheels/ (downloaded beforehand with bench/gpu_wheels.sh; ignored by git, travels with
# the tree). The workspace: --db, else bench/wheels/demo.db (the demo's, with profiles and
# embeddings, prepared where the LLM runs), else one imported here from the shipped demo slice
# without profiles (said so). Nothing is written to the given workspace: the job trains on
# copies. --device cpu (for machines without a GPU, and the test) measures the CPU only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-bench/wheels}
DEVICE=cuda
DB=""
EPOCHS=2
while (( $# )); do
    case "$1" in
        --device) DEVICE=${2:-}; shift 2 ;;
        --db) DB=${2:-}; shift 2 ;;
        --epochs) EPOCHS=${2:-}; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in
    cuda) DEVICES=cuda,cpu ;;
    cpu) DEVICES=cpu ;;
    *) echo "gpu_check.sh: --device must be cuda or cpu, not '$DEVICE'" >&2; exit 2 ;;
esac
[[ "$EPOCHS" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_check.sh: --epochs must be a positive" \
    "integer, not '$EPOCHS'" >&2; exit 2; }
command -v "$PYTHON" > /dev/null || { echo "gpu_check.sh: no python at '$PYTHON'" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# 1. What training needs and $PYTHON lacks, from the wheels, into a throwaway target:
#    "wheel name prefix:module" pairs (scipy for the baselines; sqlite-utils and its
#    dependencies to migrate or create a workspace).
NEEDED="scipy:scipy sqlite_utils:sqlite_utils click:click click_default_group:click_default_group
pluggy:pluggy python_dateutil:dateutil sqlite_fts4:sqlite_fts4 tabulate:tabulate tzdata:tzdata"
"$PYTHON" -c 'import numpy, torch' 2> /dev/null || {
    echo "gpu_check.sh: $PYTHON has no numpy or torch; they must come with the interpreter" >&2
    exit 2
}
wheels=()
for pair in $NEEDED; do
    prefix=${pair%%:*}
    module=${pair##*:}
    "$PYTHON" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$module') is None)" \
        && continue
    wheel=$(ls "$WHEELS"/"$prefix"-*.whl 2> /dev/null | head -n 1 || true)
    if [[ -z "$wheel" ]]; then
        echo "gpu_check.sh: $PYTHON has no $module and $WHEELS has no wheel of it;" \
            "run bench/gpu_wheels.sh where a package index is reachable" >&2
        exit 2
    fi
    wheels+=("$wheel")
done
if (( ${#wheels[@]} )); then
    echo "installing into a throwaway folder: ${wheels[*]##*/}"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --disable-pip-version-check \
        --root-user-action=ignore --target "$WORK/site" "${wheels[@]}"
fi
export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

# 2. The workspace.
if [[ -z "$DB" && -f "$WHEELS/demo.db" ]]; then
    DB="$WHEELS/demo.db"
fi
if [[ -z "$DB" ]]; then
    echo "no prepared workspace: importing the shipped demo slice (no profiles: the LLM that" \
        "writes them is not used here)"
    DB="$WORK/demo.db"
    "$PYTHON" - "$DB" <<'PY'
import sys

from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace

with Workspace.open(sys.argv[1]) as ws:
    run_import(ws, preset_spec("online-retail", "dynllm_tui/data/online_retail_demo.csv.gz"))
PY
elif [[ ! -f "$DB" ]]; then
    echo "gpu_check.sh: no workspace at '$DB'" >&2
    exit 2
fi
echo "workspace: $DB"

# 3. Measure and print the table.
"$PYTHON" bench/gpu_check.py --db "$DB" --work "$WORK" --devices "$DEVICES" --epochs "$EPOCHS"
