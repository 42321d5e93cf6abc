"""Rebuild dynllm_tui/data/online_retail_demo.csv.gz from the full Online Retail file.

The slice: 200 customers (seeded draw among those with at least 4 invoices) with every line of
theirs from 2011-09-01 on, plus 1% of the lines without a customer from the same months, so that
the demo shows rejects too. Lines keep their original order and text.

    python scripts/make_demo_slice.py ../shared/data/online-retail/online_retail.csv.gz
"""

from __future__ import annotations

import csv
import gzip
import random
import sys
from collections import defaultdict
from pathlib import Path

START = "2011-09-01"
CUSTOMERS = 200
SEED = 7


def main(source: str) -> None:
    with gzip.open(source, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    recent = [r for r in body if r[4] >= START]
    invoices: dict[str, set[str]] = defaultdict(set)
    for r in recent:
        if r[6]:
            invoices[r[6]].add(r[0])
    eligible = sorted(c for c, inv in invoices.items() if len(inv) >= 4)
    chosen = set(random.Random(SEED).sample(eligible, CUSTOMERS))
    pick = random.Random(SEED + 1)
    kept = [r for r in recent if r[6] in chosen or (not r[6] and pick.random() < 0.01)]
    out = Path(__file__).resolve().parents[1] / "dynllm_tui" / "data" / "online_retail_demo.csv.gz"
    with gzip.GzipFile(out, "wb", mtime=0) as raw:
        with open_text(raw) as text:
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(kept)
    print(f"{out}: {len(kept)} lines, {len(chosen)} customers")


def open_text(raw):
    import io

    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


if __name__ == "__main__":
    main(sys.argv[1])
