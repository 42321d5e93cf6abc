"""Baselines through the same evaluation as DynLLM, and the model report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.events import EventLog, chronological_split
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
    assert len(methods) == 6 and any(m.startswith("BPR-MF") for m in methods)
    assert {r["n_events"] for r in rows} == {len(chronological_split(log).test)}
