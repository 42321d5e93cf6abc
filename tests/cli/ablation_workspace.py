"""A workspace made only by the real commands: the first 20,000 lines of the real Online Retail
file imported (2010-12-01..09), real LLM profiles of the six most active customers at weekly
boundaries (`profiles --limit 6 --every week --min-new 20`: a snapshot on Monday 6 December,
so the replay has events after it to weigh the facets at), and a
one-epoch run trained with `--ablation facet:interests`, each step through the console entry
point as a user would type it.

Built once per test session (about a minute on two cores) and shared by the CLI test of the facet
ablation and the app test that browses it; tests copy the file, never write to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, write_head

SLICE_ROWS = 20_000  # 2010-12-01..09: nine days of baskets, a week boundary inside
ABLATION = "facet:interests"
CLI = [sys.executable, "-m", "dynllm_tui.cli"]


@dataclass(frozen=True)
class AblationWorkspace:
    db: Path
    imported: dict  # the JSON summaries each command printed
    profiled: dict
    trained: dict


_BUILT: dict[Path, AblationWorkspace] = {}


def cli(db: Path, *args: str, timeout: float = 600) -> str:
    """Run `dynllm-tui --db DB ARGS...` as a process; its stdout, after checking it exited 0."""
    proc = subprocess.run([*CLI, "--db", str(db), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, (args, proc.stderr[-2000:])
    return proc.stdout


def ablation_workspace(tmp_path_factory, online_retail: Path) -> AblationWorkspace:
    """The workspace of this test session, built on first use."""
    key = tmp_path_factory.getbasetemp()
    if key not in _BUILT:
        folder = tmp_path_factory.mktemp("ablation")
        db = folder / "ws.db"
        data = write_head(online_retail, folder / "slice20k.csv", SLICE_ROWS)
        imported = json.loads(cli(db, "import", str(data), "--preset", "online-retail",
                                  "--json"))
        profiled = json.loads(cli(db, "profiles", "--writer", "llm", "--limit", "6",
                                  "--every", "week",
                                  "--min-new", "20", "--json"))
        trained = json.loads(cli(db, "train", "--epochs", "1", "--ablation", ABLATION,
                                 "--json"))
        _BUILT[key] = AblationWorkspace(db, imported, profiled, trained)
    return _BUILT[key]


# (user, time) events after one of the user's ok snapshots: the only events whose facets a run
# can weigh (a snapshot applies from the batch after its as_of, so this is an upper bound).
EVENTS_AFTER_A_PROFILE = (
    "SELECT count(*) FROM (SELECT DISTINCT user_id, ts FROM interactions x WHERE EXISTS "
    "(SELECT 1 FROM profiles p WHERE p.user_id = x.user_id AND p.status = 'ok' "
    " AND p.as_of < x.ts))")
# Stored facet weights of run ? at an event with no earlier ok snapshot of its user: must be 0.
WEIGHTS_WITHOUT_A_PROFILE = (
    "SELECT count(*) FROM facet_weights f WHERE run_id = ? AND NOT EXISTS "
    "(SELECT 1 FROM profiles p WHERE p.user_id = f.user_id AND p.status = 'ok' "
    " AND p.as_of < f.ts)")
