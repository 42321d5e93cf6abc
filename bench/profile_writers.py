"""Profiling a whole store with the default settings: the template writer against the LLM
writer, measured in one run.

    .venv/bin/python bench/profile_writers.py [--data CSV] [--preset online-retail]
                                              [--llm-sample 33] [--no-llm]

On a fresh workspace of `--data` (default: the whole Online Retail file), every snapshot of
the default policy (models.data.snapshots), as the profile job makes them:
  - import, then the catalogue's derived taxonomy (item vectors, clusters, one LLM name per
    cluster; once per workspace, reused after), timed on their own;
  - the template writer (the default, models/profiles/template.py) over every snapshot:
    `profiles_job(writer="template", embed=False)`, the real job;
  - the embedding of every facet text as the job does it now (one vector per distinct text),
    and the baseline of the same run: the same texts encoded one vector per row, as the job did
    before (vectors not stored);
  - the LLM writer: `--llm-sample` snapshots of the same plan (every k-th, the first one
    warming the engines' shared prefix), with the job's in-process default (one BatchedLLM
    engine of one thread per core, jump-forward), its rate projected to every snapshot.
Prints one table: each path's wall time, seconds per snapshot and the whole store's time
(measured for the template path, projected for the LLM writer), against the target of the
profiles issue (#12): the whole Online Retail store in under 1 hour on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from profile_models import DATA  # noqa: E402

TARGET_H = 1.0


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _encode_times(db: Path) -> tuple[int, int, float, float]:
    """The encoder's time alone for every facet text of every profile, in the job's batch
    size: one vector a row (the job before) and one a distinct text (the job now: batches of
    `_distinct_batches`); returns (rows, distinct texts, seconds a row, seconds distinct)."""
    from dynllm_tui.jobs.profiles import _distinct_batches, profile_facet_texts
    from models.profiles.text_encoder import TextEncoder
    from storage.workspace import Workspace

    with Workspace.open(db, create=False) as ws:
        rows = sorted(((kind, key, text, "") for kind, pairs in profile_facet_texts(ws).items()
                       for key, text in pairs), key=lambda row: row[2])
    texts = [text or " " for _, _, text, _ in rows]
    encoder = TextEncoder()
    encoder.encode(["warm up"])
    start = time.perf_counter()
    for begin in range(0, len(texts), 64):
        encoder.encode(texts[begin:begin + 64])
    every_row_s = time.perf_counter() - start
    start = time.perf_counter()
    distinct = 0
    for batch in _distinct_batches(rows, 64):
        unique = list(dict.fromkeys(text or " " for _, _, text, _ in batch))
        distinct += len(unique)
        encoder.encode(unique)
    return len(rows), distinct, every_row_s, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--preset", default="online-retail")
    ap.add_argument("--llm-sample", type=int, default=33,
                    help="snapshots the LLM writer profiles (the first warms up; 0: none)")
    ap.add_argument("--no-llm", action="store_true", help="skip the LLM writer row")
    args = ap.parse_args(argv)

    from dynllm_tui.jobs.profiles import default_engines, embed_texts, profiles_job
    from dynllm_tui.jobs.taxonomy import taxonomy_job
    from storage.importer import run_import
    from storage.presets import preset_spec
    from storage.workspace import Workspace

    rows: list[tuple[str, int, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ws.db"
        with Workspace.open(db) as ws:
            _, import_s = _timed(lambda: run_import(ws, preset_spec(args.preset, args.data)))
        taxonomy, taxonomy_s = _timed(lambda: taxonomy_job(db))
        summary, write_s = _timed(lambda: profiles_job(db, writer="template", embed=False))
        n = summary.planned
        n_rows, n_distinct, every_row_s, distinct_s = _encode_times(db)
        with Workspace.open(db, create=False) as ws:
            embedded, embed_s = _timed(lambda: embed_texts(ws))
        rows += [
            ("import", 0, import_s, f"{args.data.name}"),
            ("derived taxonomy", 0, taxonomy_s,
             f"{len(taxonomy.clusters)} clusters, {taxonomy.llm_calls} LLM calls; once per "
             "workspace"),
            ("template writer: profiles", n, write_s, "histories read, facets set by rule"),
            ("encoder, one vector a row", n, every_row_s,
             f"baseline (the job before): {n_rows:,} facet texts encoded"),
            ("encoder, one a distinct text", n, distinct_s,
             f"now: {n_distinct:,} distinct texts encoded for the same {n_rows:,}"),
            ("embedding step of the job", n, embed_s,
             f"encode + store {sum(embedded.values()):,} vectors (items: "
             f"{embedded.get('item', 0):,}, done by the taxonomy)"),
        ]
        template_total = taxonomy_s + write_s + embed_s
        rows.append(("template writer, whole job", n, template_total,
                     "taxonomy + profiles + embeddings (the default `profiles`)"))
        if not args.no_llm and args.llm_sample > 1:
            from profiles import _engine_rows, load_snapshots

            histories = load_snapshots(db, args.llm_sample)
            engines = default_engines()
            row = _engine_rows("smollm2", histories, [(engines, 1, 1, True, True)])[0]
            per = row["wall_s"] / row["n"]
            rows.append((f"LLM writer ({row['path']})", row["n"], row["wall_s"],
                         f"{row['valid']}/{row['n']} valid; projected to {n:,} snapshots "
                         f"+ the same taxonomy and embedding"))
            rows.append(("LLM writer, whole job (projected)", n,
                         taxonomy_s + per * n + embed_s, "taxonomy + profiles + embeddings"))
    print(f"\n{'path':<40}{'snapshots':>10}{'wall s':>10}{'s/snapshot':>12}{'whole store':>13}"
          "  note")
    for path, count, seconds, note in rows:
        per = f"{seconds / count:.4f}" if count else ""
        whole = ""
        if "whole job" in path:
            whole = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
        print(f"{path:<40}{count or '':>10}{seconds:>10.1f}{per:>12}{whole:>13}  {note}")
    for path, _count, seconds, _note in rows:
        if "whole job" in path:
            verdict = "met" if seconds / 3600 < TARGET_H else "NOT MET"
            print(f"{path}: {seconds / 3600:.2f} h against the target < {TARGET_H:g} h: "
                  f"{verdict}")


if __name__ == "__main__":
    main()
