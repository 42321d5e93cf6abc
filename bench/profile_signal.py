"""What the profiles know: per-facet variety and copying, and a probe of next-month categories.

    .venv/bin/python bench/profile_signal.py --db WORKSPACE [--seed 0] [--splits 5] [--json]

The workspace must hold ok profiles (`dynllm-tui profiles`; facet texts without vectors, as an
interrupted job leaves them, are embedded first); the demo workspace (`dynllm-tui demo`) or a
slice profiled with `profiles --limit N` will do. Prints:

1. Per facet, over the ok profiles: distinct values, entropy in bits of the value distribution
   (a list facet counts each entry once per profile), and for interests the share of phrases
   copied verbatim from the user's own titles (a phrase of two or more words found, on word
   boundaries and ignoring case, inside one of the titles the profile was made from; a one-word
   theme like "christmas" is not counted as a copy).
2. A probe: for every snapshot (user, as_of) whose user buys in the 30 days from as_of, the
   target is the set of categories bought then (the catalogue's own, else the derived taxonomy's
   names). Users are split in half (seeded); a ridge regression (closed form, lambda chosen from
   {0.1, 1, 10, 100} by 3-fold cross-validation on the training half, by user) maps a
   snapshot's features to its multi-hot target; the test half is ranked by the predicted
   scores and scored by Recall@5 = |top 5 and target| / |target|, averaged over snapshots.
   Features, each the four facet vectors concatenated (an absent facet is zeros):
     - llm: the stored facet embeddings of the LLM profile;
     - template: the same four facets written without the LLM from the same inputs by the
       template writer (models.profiles.template: segment = frequency, country, order size,
       price level and first category; interests = the most bought titles; categories = the
       candidate categories; brands = the candidate brands), embedded with the same encoder;
   and two guesses without a probe: popularity (the 5 categories most often in the training
   half's targets) and history (the user's own 5 most bought categories before as_of).
   llm against template says whether the LLM adds anything over its inputs. The table shows
   the split of `--seed` and the mean and sd over `--splits` user splits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from models.data.events import DAY  # noqa: E402
from models.vocabulary import PROFILE_FIELDS  # noqa: E402

HORIZON = 30 * DAY
TOP = 5
LAMBDAS = (0.1, 1.0, 10.0, 100.0)


# --- facet statistics --------------------------------------------------------------------------


def entropy_bits(values: Iterable[str]) -> float:
    """Shannon entropy (bits) of the empirical distribution of `values`; 0.0 when empty."""
    counts = Counter(values)
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


def copied_verbatim(phrase: str, titles: Sequence[str]) -> bool:
    """True when a phrase of 2+ words occurs on word boundaries inside one of the titles."""
    words = _norm(phrase)
    if len(words.split()) < 2:
        return False
    return any(f" {words} " in f" {_norm(t)} " for t in titles if t)


def facet_stats(profiles: list[dict], titles_of: dict[tuple[int, int], list[str]]) -> dict:
    """facet -> {profiles, distinct, entropy_bits[, verbatim_share]} (section 1)."""
    out: dict[str, dict] = {}
    for facet in PROFILE_FIELDS:
        values: list[str] = []
        for p in profiles:
            v = p[facet]
            values += [v] if isinstance(v, str) else list(dict.fromkeys(v))
        values = [v for v in values if v]
        out[facet] = {"values": len(values), "distinct": len(set(values)),
                      "entropy_bits": round(entropy_bits(values), 3)}
    phrases = copied = 0
    for p in profiles:
        titles = titles_of.get((p["user_id"], p["as_of"]), [])
        for phrase in p["interests"]:
            phrases += 1
            copied += copied_verbatim(phrase, titles)
    out["interests"]["verbatim_share"] = round(copied / phrases, 3) if phrases else 0.0
    out["interests"]["verbatim"] = copied
    return out


# --- the probe ---------------------------------------------------------------------------------


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Weights [d + 1, c] of ridge regression with an unpenalised intercept (the last row)."""
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc = x - mean_x
    # The dual form: n is a few hundred snapshots, d is 4 x 384.
    gram = xc @ xc.T + lam * np.eye(len(x))
    w = xc.T @ np.linalg.solve(gram, y - mean_y)
    return np.vstack([w, mean_y - mean_x @ w])


def ridge_predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ w[:-1] + w[-1]


def recall_at(scores: np.ndarray, targets: np.ndarray, k: int = TOP) -> float:
    """Mean over rows of |top k of scores and targets| / |targets| (rows with a target only).
    Ties broken by column order (stable), so a constant score is a fixed guess."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(targets, top, axis=1).sum(1)
    size = targets.sum(1)
    keep = size > 0
    return float((hits[keep] / size[keep]).mean()) if keep.any() else 0.0


def probe(x: np.ndarray, y: np.ndarray, users: np.ndarray, train: np.ndarray,
          seed: int) -> tuple[float, float]:
    """(test Recall@5, lambda): ridge with lambda chosen by 3-fold CV over training users."""
    rng = np.random.default_rng(seed)
    train_users = np.unique(users[train])
    fold_of = dict(zip(train_users.tolist(), rng.integers(0, 3, len(train_users)).tolist(),
                       strict=True))
    folds = np.array([fold_of.get(u, -1) for u in users.tolist()])
    best = (-1.0, LAMBDAS[0])
    for lam in LAMBDAS:
        scores = []
        for f in range(3):
            fit, held = train & (folds != f), train & (folds == f)
            if fit.sum() < 2 or not held.any():
                continue
            w = ridge_fit(x[fit], y[fit], lam)
            scores.append(recall_at(ridge_predict(w, x[held]), y[held]))
        if scores and np.mean(scores) > best[0]:
            best = (float(np.mean(scores)), lam)
    w = ridge_fit(x[train], y[train], best[1])
    return recall_at(ridge_predict(w, x[~train]), y[~train]), best[1]


# --- reading the workspace ---------------------------------------------------------------------


def template_texts(history, candidates) -> dict[str, str]:
    """The four facets written without the LLM from the inputs the LLM gets (the template
    writer's, models.profiles.template), one text each as the encoder embeds them."""
    from models.profiles.template import template_facets

    return template_facets(history, candidates).texts()


def write_template_workspace(src: Path, dst: Path) -> int:
    """A copy of workspace `src` at `dst` in which every ok profile's facets are replaced by
    its template (`template_texts`, the same facts and candidates without the LLM), then
    embedded: training on it says whether the LLM's words lift the model more than the facts
    they come from. Returns the profiles replaced."""
    import sqlite3

    from dynllm_tui.jobs.profiles import embed_texts, snapshot_history
    from dynllm_tui.jobs.taxonomy import stored_categories
    from models.profiles.prompt import build_candidates
    from models.profiles.template import TEMPLATE_WRITER, template_facets
    from storage.profiles import save_profile
    from storage.workspace import Workspace

    if dst.exists():
        raise SystemExit(f"{dst} exists; give a new path for the template workspace")
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
    with Workspace.open(dst, create=False) as ws:
        rows = ws.conn.execute("SELECT user_id, as_of FROM profiles WHERE status = 'ok'"
                               ).fetchall()
        derived, medians = stored_categories(ws), {}
        for user_id, as_of in rows:
            h = snapshot_history(ws, user_id, as_of, medians, derived)
            facets = template_facets(h, build_candidates(h)).to_dict()
            cursor = ws.conn.execute("SELECT * FROM profiles WHERE user_id = ? AND as_of = ?",
                                     (user_id, as_of))
            record = dict(zip([d[0] for d in cursor.description], cursor.fetchone(),
                              strict=True))
            record.update({**facets, "model": TEMPLATE_WRITER, "raw": None})
            save_profile(ws, user_id, as_of, record)
        embed_texts(ws)
    return len(rows)


def load(db: Path) -> dict:
    """Profiles, their vectors, titles, templates and next-month targets from one workspace."""
    from dynllm_tui.jobs.profiles import embed_texts, snapshot_history
    from dynllm_tui.jobs.taxonomy import stored_categories
    from dynllm_tui.jobs.workspace_data import load_profile_vectors
    from models.profiles.prompt import build_candidates
    from models.profiles.text_encoder import TextEncoder
    from storage.workspace import Workspace

    encoder = TextEncoder()
    with Workspace.open(db, create=False) as ws:
        # Profiles of an interrupted job have no vectors yet: embed what is missing (only that).
        embed_texts(ws, encoder=encoder)
        vectors = load_profile_vectors(ws, encoder.name)
        cursor = ws.conn.execute(
            "SELECT user_id, as_of, crowd_segment, interests, preferred_categories, "
            "favored_brands FROM profiles WHERE status = 'ok' ORDER BY user_id, as_of")
        profiles = [{"user_id": u, "as_of": a, "crowd_segment": s or "",
                     "interests": json.loads(i or "[]"),
                     "preferred_categories": json.loads(c or "[]"),
                     "favored_brands": json.loads(b or "[]")}
                    for u, a, s, i, c, b in cursor]
        derived = stored_categories(ws)
        item_category = {i: (c or derived.get(i)) for i, c in
                         ws.conn.execute("SELECT id, category FROM items")}
        events = np.array(ws.conn.execute(
            "SELECT user_id, item_id, ts FROM interactions ORDER BY ts").fetchall(),
            dtype=np.int64).reshape(-1, 3)
        medians: dict = {}
        titles_of, templates, history_top = {}, [], []
        for p in profiles:
            h = snapshot_history(ws, p["user_id"], p["as_of"], medians, derived)
            cands = build_candidates(h)
            titles_of[(p["user_id"], p["as_of"])] = [e.title or "" for e in h.events]
            templates.append(template_texts(h, cands))
            cats = Counter(e.category or e.derived_category for e in h.events)
            cats.pop(None, None)
            history_top.append([c for c, _ in cats.most_common(TOP)])
    row = {(int(u), int(a)): n for n, (u, a) in
           enumerate(zip(vectors["user"], vectors["as_of"], strict=True))}
    keep = [n for n, p in enumerate(profiles) if (p["user_id"], p["as_of"]) in row]
    profiles = [profiles[n] for n in keep]
    templates = [templates[n] for n in keep]
    history_top = [history_top[n] for n in keep]
    llm_x = vectors["vectors"][[row[(p["user_id"], p["as_of"])] for p in profiles]]
    present = vectors["present"][[row[(p["user_id"], p["as_of"])] for p in profiles]]
    llm_x = np.where(present[:, :, None], llm_x, 0.0).reshape(len(profiles), -1)
    flat = [t[f] for t in templates for f in PROFILE_FIELDS]
    tmpl = encoder.encode([t or " " for t in flat]).reshape(len(profiles), len(PROFILE_FIELDS), -1)
    tmpl_present = np.array([[bool(t[f]) for f in PROFILE_FIELDS] for t in templates])
    tmpl_x = np.where(tmpl_present[:, :, None], tmpl, 0.0).reshape(len(profiles), -1)
    # Targets: the categories of each snapshot's user in [as_of, as_of + 30 days).
    targets = []
    for p in profiles:
        mask = ((events[:, 0] == p["user_id"]) & (events[:, 2] >= p["as_of"])
                & (events[:, 2] < p["as_of"] + HORIZON))
        targets.append({item_category.get(int(i)) for i in events[mask, 1]} - {None})
    return {"profiles": profiles, "titles_of": titles_of, "llm_x": llm_x, "tmpl_x": tmpl_x,
            "templates": templates, "targets": targets, "history_top": history_top}


def evaluate(data: dict, seed: int = 0) -> dict:
    """Sections 1 and 2 of the module docstring on loaded data."""
    profiles, targets = data["profiles"], data["targets"]
    out: dict = {"profiles": len(profiles),
                 "facets": facet_stats(profiles, data["titles_of"]),
                 "template_facets": facet_stats(
                     [{**p, **{f: (t[f] if f == "crowd_segment" else
                                   [v for v in t[f].split("; ") if v])
                               for f in PROFILE_FIELDS}}
                      for p, t in zip(profiles, data["templates"], strict=True)],
                     data["titles_of"])}
    has = np.array([bool(t) for t in targets])
    cats = sorted(set().union(*targets)) if targets else []
    out["probe"] = {"snapshots_with_target": int(has.sum()), "categories": len(cats)}
    if has.sum() < 8 or len(cats) < 2:
        out["probe"]["note"] = "too few snapshots with a next-month purchase to probe"
        return out
    col = {c: n for n, c in enumerate(cats)}
    y = np.zeros((len(profiles), len(cats)))
    for n, t in enumerate(targets):
        y[n, [col[c] for c in t]] = 1.0
    users = np.array([p["user_id"] for p in profiles])
    rng = np.random.default_rng(seed)
    all_users = np.unique(users[has])
    train_users = set(rng.permutation(all_users)[: len(all_users) // 2].tolist())
    train = np.array([u in train_users for u in users.tolist()])
    x_llm, x_tmpl, y_, u_ = data["llm_x"][has], data["tmpl_x"][has], y[has], users[has]
    tr = train[has]
    llm_r, llm_lam = probe(x_llm, y_, u_, tr, seed)
    tmpl_r, tmpl_lam = probe(x_tmpl, y_, u_, tr, seed)
    popular = y_[tr].sum(0)
    pop_r = recall_at(np.tile(popular, (int((~tr).sum()), 1)), y_[~tr])
    hist = np.zeros_like(y_)
    for n, top in enumerate(t for t, h in zip(data["history_top"], has, strict=True) if h):
        for rank, c in enumerate(top):
            if c in col:
                hist[n, col[c]] = TOP - rank
    hist_r = recall_at(hist[~tr] + 1e-6 * popular, y_[~tr])  # ties: popularity
    out["probe"].update({
        "train_snapshots": int(tr.sum()), "test_snapshots": int((~tr).sum()),
        "recall@5": {"llm": round(llm_r, 4), "template": round(tmpl_r, 4),
                     "popularity": round(pop_r, 4), "history": round(hist_r, 4)},
        "lambda": {"llm": llm_lam, "template": tmpl_lam},
    })
    return out


def render(result: dict) -> str:
    lines = [f"profiles: {result['profiles']} ok snapshots",
             "", f"{'facet':<30}{'values':>8}{'distinct':>10}{'entropy':>10}{'verbatim':>10}"]
    for label, stats in (("llm", result["facets"]), ("template", result["template_facets"])):
        for facet in PROFILE_FIELDS:
            s = stats[facet]
            verb = f"{s['verbatim_share']:.1%}" if "verbatim_share" in s else ""
            lines.append(f"{label + ' ' + facet:<30}{s['values']:>8}{s['distinct']:>10}"
                         f"{s['entropy_bits']:>10.2f}{verb:>10}")
    p = result["probe"]
    lines += ["", f"probe: {p['snapshots_with_target']} snapshots with a purchase in the next 30 "
              f"days, {p['categories']} categories"]
    if "recall@5" in p:
        lines.append(f"  train {p['train_snapshots']} / test {p['test_snapshots']} snapshots "
                     f"(users split in half); ridge lambda {p['lambda']}")
        spread = p.get("recall@5_over_splits", {})
        for name, value in p["recall@5"].items():
            extra = ""
            if name in spread:
                extra = (f"   over {spread[name]['splits']} splits: {spread[name]['mean']:.4f} "
                         f"+- {spread[name]['sd']:.4f}")
            lines.append(f"  Recall@5 {name:<11}{value:.4f}{extra}")
    else:
        lines.append(f"  {p['note']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="a workspace with profiles and their vectors")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", type=int, default=5,
                    help="user splits (seeds seed..seed+N-1) for the probe's mean and sd")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write-templates", type=Path, metavar="COPY",
                    help="instead: copy the workspace to COPY with every ok profile replaced "
                    "by its template (embedded), to train on and compare with the LLM's")
    args = ap.parse_args(argv)
    if args.write_templates:
        n = write_template_workspace(Path(args.db), args.write_templates)
        print(f"{args.write_templates}: {n} profiles replaced by their templates, embedded")
        return 0
    data = load(Path(args.db))
    result = evaluate(data, args.seed)
    if "recall@5" in result["probe"] and args.splits > 1:
        # One half-split of a few hundred snapshots is noisy: the spread over splits says how
        # far apart two rows must be to mean anything.
        runs = [result] + [evaluate(data, args.seed + n) for n in range(1, args.splits)]
        result["probe"]["recall@5_over_splits"] = {
            name: {"splits": len(runs),
                   "mean": round(float(np.mean([r["probe"]["recall@5"][name] for r in runs])), 4),
                   "sd": round(float(np.std([r["probe"]["recall@5"][name] for r in runs],
                                            ddof=1)), 4)}
            for name in result["probe"]["recall@5"]}
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
