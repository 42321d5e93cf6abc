"""Seeds with spread: each method's figures as mean ± sd over seeds, and the rule by which a
difference is called significant.

Rule (stated in every report): two rows differ significantly on a column when their means are
more than 2 pooled standard deviations apart, pooled sd = sqrt((sd_a**2 + sd_b**2) / 2). With
one seed there is no spread, and nothing is called significant. Deterministic methods (the
popularity and history baselines) have sd 0 by construction; the pooled sd then comes from the
other row alone.
"""

from __future__ import annotations

import math

import numpy as np

MAX_SEEDS = 10
SIGNIFICANCE_RULE = ("'+' marks a best value more than 2 pooled sd (sqrt((sd_a^2 + sd_b^2) / 2)) "
                     "above the runner-up; no '+' means the difference is not significant")


def check_seeds(n: int, where: str = "--seeds") -> int:
    """`n` if it is a usable number of seeds (1..10), else one clear error."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SEEDS:
        raise ValueError(f"{where} must be a whole number from 1 to {MAX_SEEDS}, not {n!r}")
    return n


def seed_list(first: int, n: int) -> list[int]:
    """The seeds of an n-seed run starting at the run's own seed."""
    return [first + s for s in range(check_seeds(n))]


def aggregate(per_seed: list[dict]) -> dict:
    """One metrics dict from several seeds' dicts of the same keys: each number is the mean and
    gets a "<key>_sd" (sample sd, 0 for one seed); None stays None if any seed has None;
    "n_seeds" says how many. Counts (n_*) are equal across seeds and kept as they are."""
    if not per_seed:
        raise ValueError("no seeds to aggregate")
    out: dict = {}
    for key in per_seed[0]:
        values = [m.get(key) for m in per_seed]
        if key.startswith("n_") or not all(isinstance(v, int | float) for v in values):
            out[key] = values[0] if all(v == values[0] for v in values) else values
            continue
        arr = np.asarray(values, dtype=np.float64)
        out[key] = float(arr.mean())
        out[f"{key}_sd"] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    out["n_seeds"] = len(per_seed)
    return out


def aggregate_results(per_seed: list[dict[str, dict]]) -> dict[str, dict]:
    """{protocol: metrics} per seed -> {protocol: mean/sd metrics}."""
    return {protocol: aggregate([r[protocol] for r in per_seed if protocol in r])
            for protocol in per_seed[0]}


def pooled_sd(sd_a: float, sd_b: float) -> float:
    return math.sqrt((sd_a ** 2 + sd_b ** 2) / 2)


def significantly_above(a: dict, b: dict, key: str) -> bool:
    """Is a[key] above b[key] by more than 2 pooled sd? False unless both have seeds >= 2 or a
    known spread (an sd of 0 from a deterministic method counts as known)."""
    va, vb = a.get(key), b.get(key)
    sa, sb = a.get(f"{key}_sd"), b.get(f"{key}_sd")
    if not all(isinstance(x, int | float) for x in (va, vb, sa, sb)):
        return False
    if max(a.get("n_seeds", 1), b.get("n_seeds", 1)) < 2:
        return False
    pooled = pooled_sd(sa, sb)
    return va - vb > 2 * pooled if pooled > 0 else False
