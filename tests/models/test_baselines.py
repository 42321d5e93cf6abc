"""Baselines through the same evaluation as DynLLM, and the model report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.events import EventLog, chronological_split, time_batches
from models.evaluation.baselines import BPRMF, DAY, PopularityScorer, RepeatScorer
from models.evaluation.protocols import (
    evaluate_scorer,
    format_report,
    model_report,
    paper_candidates,
)
from tests.models.conftest import synthetic_log


def test_popularity_ranks_the_dominant_item_first():
    rng = np.random.default_rng(0)
    n = 2000
    items = np.where(rng.random(n) < 0.5, 7, rng.integers(0, 50, n))
    log = EventLog.from_arrays(rng.integers(0, 30, n), items, np.arange(n) * 600.0, 30, 50)
    scorer = PopularityScorer(log, window_days=3)
    scores = scorer.scores(np.array([0, 1]), np.full(2, log.ts[1500]), 1500, log.ts[1500])
    assert scores.shape == (2, 50) and int(scores[0].argmax()) == 7
    split = chronological_split(log)
    metrics = evaluate_scorer(scorer, log, split, batch_size=100)
    # Item 7 is bought in about half of the test events and always ranked first.
    assert metrics["full"]["mrr"] > 0.45


def test_popularity_window_only_counts_recent_events():
    log = EventLog.from_arrays([0, 0, 0, 0], [1, 1, 2, 0], [0.0, 1.0, 20 * DAY, 30 * DAY], 1, 3)
    scores = PopularityScorer(log, window_days=15).scores(np.array([0]), np.array([30 * DAY]), 3,
                                                          30 * DAY)
    assert int(scores[0].argmax()) == 2  # item 1 is more popular overall but not recently
    assert scores[0, 1] > scores[0, 0]  # all-time counts only break the tie


def test_repeat_history_frequency_times_recency():
    # user 0: item 0 twice long ago, item 1 once recently; user 1: nothing yet.
    log = EventLog.from_arrays([0, 0, 0, 1], [0, 0, 1, 2], [0.0, 1.0, 99 * DAY, 100 * DAY], 2, 4)
    scorer = RepeatScorer(log, half_life_days=10)
    scores = scorer.scores(np.array([0, 1]), np.full(2, 100 * DAY), 3, 100 * DAY)
    expected = 2 * 2.0 ** (-(100 * DAY - 0.5) / (10 * DAY))
    assert scores[0, 0] == pytest.approx(expected, rel=1e-3)
    assert scores[0, 1] == pytest.approx(2.0 ** -0.1, rel=1e-4)
    assert int(scores[0].argmax()) == 1
    assert float(scores[1].max()) < 1e-5  # no history: only the popularity tie-breaker


def test_repeat_and_bprmf_beat_random_on_a_repetitive_log():
    log = synthetic_log(n_events=2000)
    split = chronological_split(log)
    known = range(0, split.test.start)
    repeat = evaluate_scorer(RepeatScorer(log), log, split, batch_size=200)
    bpr = evaluate_scorer(BPRMF.fit(log, known, dim=16, epochs=30, lr=2e-2), log, split,
                          batch_size=200)
    random_recall = 10 / log.n_items
    assert repeat["full"]["recall@10"] > 0.9  # users re-buy from 4 items each
    assert bpr["full"]["recall@10"] > 2 * random_recall
    assert repeat["paper"]["n_events"] == len(split.test)


def test_paper_candidates_and_report():
    log = EventLog.from_arrays([0] * 10, [0, 1, 1, 1, 1, 1, 1, 2, 3, 2], np.arange(10.0), 1, 5)
    split = chronological_split(log)
    cand = paper_candidates(log, split)
    assert (split.val, split.test) == (range(7, 8), range(8, 10))
    assert cand.tolist() == [False, False, True, True, False]
    results = {
        "DynLLM": {"full": {"recall@10": 0.2, "ndcg@10": 0.1, "n_events": 9},
                   "paper": {"recall@10": 0.3, "ndcg@10": 0.2, "n_events": 9}},
        "popularity": {"full": {"recall@10": 0.25, "ndcg@10": 0.05, "n_events": 9}},
    }
    rows = model_report(results)
    assert [(r["method"], r["protocol"]) for r in rows] == [
        ("DynLLM", "full"), ("popularity", "full"), ("DynLLM", "paper")]
    text = format_report(rows, columns=("recall@10", "ndcg@10"))
    assert "full ranking (all items), 9 test events" in text
    assert "paper protocol" in text
    line = next(x for x in text.splitlines() if x.startswith("popularity"))
    assert "0.2500*" in line and "0.0500 " in line
    assert torch.is_tensor(cand)


def test_model_report_runs_every_row():
    from models.evaluation.report import run_model_report
    from models.network.dynllm import DynLLMConfig
    from models.training.loop import TrainConfig

    log = synthetic_log(n_events=1200)
    rows = run_model_report(log, None, None, DynLLMConfig(dim=16, time_dim=8, top_k=8),
                            TrainConfig(epochs=1, batch_size=100, device="cpu"),
                            ablations=("no_neighbours", "no_profiles"))
    methods = [r["method"] for r in rows if r["protocol"] == "full"]
    # The paper's model, its counterpart with the repeat term, the ablations, the baselines.
    assert methods[:3] == ["DynLLM (no profiles)", "DynLLM (no profiles) + repeat term",
                           "DynLLM (no profiles) no_neighbours"]
    assert len(methods) == 9 and any(m.startswith("BPR-MF") for m in methods)
    assert {r["n_events"] for r in rows if r["protocol"] != "exclude_seen"} == {
        len(chronological_split(log).test)}
    # Values, not only names: the popularity row equals a count-and-rank written out here.
    popularity = next(r for r in rows if r["protocol"] == "full"
                      and r["method"].startswith("popularity ("))
    window = float(popularity["method"].removeprefix("popularity (").removesuffix("d)")) * DAY
    expected = _popularity_reference(log, chronological_split(log).test, 100, window)
    for name in ("recall@10", "ndcg@10"):
        assert abs(popularity[name] - expected[name]) <= 1e-9, (name, popularity, expected)


def _popularity_reference(log: EventLog, test: range, batch_size: int, window: float) -> dict:
    """Popularity by hand: per batch, items ordered by (purchases in the window before the
    batch start, purchases ever before it); the true item's rank with ties counted half."""
    from tests.reference_ranking import brute_force_metrics

    ranks = []
    for batch in time_batches(log, test, batch_size):
        cut = log.ts[batch.start]
        before = np.arange(batch.start)
        recent = np.bincount(log.item_idx[before[log.ts[before] >= cut - window]],
                             minlength=log.n_items)
        ever = np.bincount(log.item_idx[before], minlength=log.n_items)
        for item in log.item_idx[batch.start:batch.stop]:
            key = (recent[item], ever[item])
            keys = list(zip(recent.tolist(), ever.tolist(), strict=True))
            higher = sum(k > key for k in keys)
            level = sum(k == key for k in keys) - 1
            ranks.append(1 + higher + level / 2)
    return brute_force_metrics(np.array(ranks), ks=(10,))


# A tiny hand-made log (3 users, 4 items), times in seconds:
#   user 0 baskets: t=1 {0}, t=2 {1}, t=3 {0, 2};  user 1: t=1 {0}, t=4 {1};  user 2: t=2 {2},
#   and at t=5 user 2 buys item 3 (the event the scores below are made for: cut index 7).
HAND = EventLog.from_arrays([0, 1, 0, 2, 0, 0, 1, 2], [0, 0, 1, 2, 0, 2, 1, 3],
                            [1, 1, 2, 2, 3, 3, 4, 5], 3, 4)


def test_gp_topfreq_against_hand_scores():
    from models.evaluation.baselines import GPTopFreqScorer

    scores = GPTopFreqScorer(HAND).scores(np.array([0, 2]), np.full(2, 5.0), 7, 5.0)
    # Popularity before the cut: item 0 bought 3x, items 1 and 2 2x, item 3 never (max 3 -> /4).
    # User 0 bought item 0 twice, items 1 and 2 once: frequency first, popularity second.
    assert scores[0].tolist() == pytest.approx([2 + 3 / 4, 1 + 2 / 4, 1 + 2 / 4, 0.0])
    assert scores[1].tolist() == pytest.approx([3 / 4, 2 / 4, 1 + 2 / 4, 0.0])


def test_tifu_knn_against_hand_scores():
    from models.evaluation.baselines import TIE_BREAK, TIFUKNNScorer

    scorer = TIFUKNNScorer(HAND, group_size=2, r_b=0.5, r_g=0.5, neighbours=1, alpha=0.5)
    # User 0: groups from the most recent, size 2: {t=3, t=2} and {t=1}.
    #   recent group = (1/2)(0.5^0 [1,0,1,0] + 0.5^1 [0,1,0,0]) = [.5, .25, .5, 0]
    #   old group    = [1, 0, 0, 0];  user = (1/2)(0.5^0 recent + 0.5^1 old) = [.5, .125, .25, 0]
    # User 1: one group {t=4, t=1}: (1/2)([0,1,0,0] + 0.5 [1,0,0,0]) = [.25, .5, 0, 0]
    # User 2: one basket: [0, 0, 1, 0].
    vectors = scorer.user_vectors(7).toarray()
    np.testing.assert_allclose(vectors[:, :3], [[.5, .125, .25], [.25, .5, 0], [0, 0, 1]])
    # Nearest (Euclidean) to user 0 is user 1 (0.265625 vs 0.828125 squared); to user 2 user 0.
    scores = scorer.scores(np.array([0, 2]), np.full(2, 5.0), 7, 5.0).numpy()
    tie = TIE_BREAK * np.array([3, 2, 2, 0]) / 3
    np.testing.assert_allclose(scores[0] - tie, [.375, .3125, .125, 0], atol=1e-12)
    np.testing.assert_allclose(scores[1] - tie, [.25, .0625, .625, 0], atol=1e-12)


def test_item_knn_against_hand_scores():
    from models.evaluation.baselines import TIE_BREAK, ItemKNNScorer

    # Known events 0..6: item 0 bought by users {0, 1}, item 1 by {0, 1}, item 2 by {0, 2}:
    # cosine(0, 1) = 2 / (sqrt 2 sqrt 2) = 1, cosine(0, 2) = cosine(1, 2) = 1/2.
    scorer = ItemKNNScorer(HAND, range(0, 7), neighbours=5)
    np.testing.assert_allclose(scorer.similarity.toarray()[:3, :3],
                               [[0, 1, .5], [1, 0, .5], [.5, .5, 0]])
    scores = scorer.scores(np.array([0, 2]), np.full(2, 5.0), 7, 5.0).numpy()
    tie = TIE_BREAK * np.array([3, 2, 2, 0]) / 3
    # User 0 has items {0, 1, 2}; user 2 has {2}: sums of similarities, own item not counted.
    np.testing.assert_allclose(scores - tie, [[1.5, 1.5, 1.0, 0], [.5, .5, 0, 0]], atol=1e-12)
    one = ItemKNNScorer(HAND, range(0, 7), neighbours=1)  # keeps each item's best neighbour
    assert (one.similarity.toarray() > 0).sum(1).tolist() == [1, 1, 1, 0]


def test_bpr_negatives_never_equal_the_positive():
    from models.evaluation.baselines import bpr_negatives

    rng = np.random.default_rng(0)
    positives = rng.integers(0, 5, 20_000)
    negatives = bpr_negatives(rng, positives, 5)
    assert not (negatives == positives).any()
    assert set(negatives[positives == 2].tolist()) == {0, 1, 3, 4}  # every other item drawn


def test_new_baselines_ignore_the_future():
    from models.evaluation.baselines import GPTopFreqScorer, ItemKNNScorer, TIFUKNNScorer

    log = synthetic_log(seed=4, n_events=800)
    start = 500
    while log.ts[start - 1] == log.ts[start]:
        start += 1
    rng = np.random.default_rng(1)
    changed = log.item_idx.copy()
    changed[start:] = rng.integers(0, log.n_items, len(log) - start)
    other = log.with_events(log.user_idx, changed, log.ts)
    users, times = log.user_idx[start:start + 50], log.ts[start:start + 50]
    makes = (GPTopFreqScorer, lambda lg: TIFUKNNScorer(lg, neighbours=5),
             lambda lg: ItemKNNScorer(lg, range(0, start)))
    for make in makes:
        a = make(log).scores(users, times, start, float(log.ts[start]))
        b = make(other).scores(users, times, start, float(log.ts[start]))
        assert torch.equal(a, b)


def test_tuned_baselines_choose_on_validation_and_carry_repeat_explore():
    from models.evaluation.protocols import format_report, model_report
    from models.evaluation.tuning import tuned_baseline_results

    log = synthetic_log(n_events=1500)
    split = chronological_split(log)
    results = tuned_baseline_results(log, split, batch_size=150, ks=(10, 20), n_seeds=2)
    assert set(results) >= {"GP-TopFreq", "BPR-MF", "TIFU-KNN", "item-kNN"}
    bpr = results["BPR-MF"]
    assert bpr["full"]["n_seeds"] == 2 and "recall@10_sd" in bpr["full"]
    assert len(bpr["choice"]["grid"]) == 8 and bpr["choice"]["protocol"] == "full"
    assert bpr["choice"]["validation"] == max(g["value"] for g in bpr["choice"]["grid"])
    assert "repeat:recall@20" in results["TIFU-KNN"]["full"]
    text = format_report(model_report(results))
    assert "BPR-MF: chose dim=" in text and "seeds: 2" in text and "pooled sd" in text


def test_report_halves_merge_into_the_whole_report(tmp_path):
    """bench/quality.py --only dynllm / --only baselines: the two halves, saved and merged, give
    the rows of the one-process report."""
    import json
    import subprocess
    import sys

    from models.evaluation.protocols import dataset_summary, model_report
    from models.evaluation.report import baseline_results, run_model_report
    from models.network.dynllm import DynLLMConfig
    from models.training.loop import TrainConfig
    from tests.conftest import REPO

    log = synthetic_log(n_events=1200)
    model, train = DynLLMConfig(dim=16, time_dim=8, top_k=8), TrainConfig(
        epochs=1, batch_size=100, device="cpu")
    whole = run_model_report(log, None, None, model, train, ablations=())
    dynllm = run_model_report(log, None, None, model, train, ablations=(),
                              with_baselines=False)
    baselines = model_report(baseline_results(log, train),
                             dataset_summary(log, chronological_split(log)))
    assert not any(r["method"].startswith("GP-TopFreq") for r in dynllm)
    key = lambda rows: sorted((r["method"], r["protocol"], r["recall@10"]) for r in rows)  # noqa: E731
    assert key(dynllm + baselines) == key(whole)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(dynllm, default=str))
    b.write_text(json.dumps(baselines, default=str))
    out = subprocess.run([sys.executable, str(REPO / "bench" / "quality.py"), "--merge",
                          f"{a},{b}"], capture_output=True, text=True, check=True).stdout
    assert "DynLLM (no profiles) + repeat term" in out and "GP-TopFreq" in out
    assert "full ranking (all items) [default]" in out or "exclude-seen" in out
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "quality.py"), "--merge",
                          f"{a},{tmp_path / 'missing.json'}"], capture_output=True, text=True)
    assert bad.returncode != 0 and "cannot read report rows from" in bad.stderr
