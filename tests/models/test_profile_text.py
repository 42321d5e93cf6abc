"""The profile-text scorer (models.evaluation.profile_text) on the real demo slice: real Online
Retail events and titles, real vectors from the packaged text encoder, facet texts written for a
few real customers. No leak across the batch start, masked facets contribute nothing, the top
items are the nearest texts (checked against a brute-force loop), shapes and ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.events import EventLog, chronological_split, time_batches
from models.data.profile_index import ProfileIndex
from models.evaluation.baselines import PopularityScorer
from models.evaluation.profile_text import (
    COMBINATIONS,
    MIX_GRID,
    MIX_METHOD,
    TEXT_METHOD,
    PopularityTextScorer,
    profile_coverage,
    profile_similarity,
    tuned_profile_text_results,
)
from models.vocabulary import FACETS

N_ITEMS = 300  # the demo slice's most bought items: embedding 300 titles takes seconds
# Facet texts in FACETS order (crowd segment, interests, categories, brands); "" = absent, as
# for every Online Retail customer's brands.
FACET_TEXTS = [
    ("small gift shop owner", "christmas decorations and candles", "christmas", ""),
    ("home baker", "cake cases and baking sets", "kitchen and baking", ""),
    ("party planner", "paper bunting and party bags", "party supplies", ""),
    ("parent of young children", "children's toys and lunch boxes", "toys", ""),
]


@pytest.fixture(scope="module")
def slice_data(demo_workspace_file):
    """(log over the N_ITEMS most bought items, their unit text vectors, profiles, encoder)."""
    from dynllm_tui.jobs.workspace_data import load_workspace_data
    from models.profiles.text_encoder import TextEncoder
    from storage.workspace import Workspace

    with Workspace.open(demo_workspace_file, create=False) as ws:
        data = load_workspace_data(ws, use_profiles=False)
        titles = dict(ws.conn.execute("SELECT id, title FROM items"))
    full = data.log
    top = np.argsort(-np.bincount(full.item_idx, minlength=full.n_items), kind="stable")[:N_ITEMS]
    new_index = np.full(full.n_items, -1)
    new_index[top] = np.arange(N_ITEMS)
    keep = new_index[full.item_idx] >= 0
    log = EventLog.from_arrays(full.user_idx[keep], new_index[full.item_idx[keep]],
                               full.ts[keep], full.n_users, N_ITEMS, full.group[keep])
    encoder = TextEncoder()
    item_text = torch.from_numpy(encoder.encode([titles[int(i)] or "" for i in
                                                 data.item_ids[top]]))
    # Four of the busiest customers, each with a snapshot at 40% and at 80% of the timeline;
    # the later one swaps in the next customer's texts so the two snapshots differ.
    users = np.argsort(-np.bincount(log.user_idx, minlength=log.n_users), kind="stable")[:4]
    t0, t1 = log.ts[0], log.ts[-1]
    early, late = int(t0 + 0.4 * (t1 - t0)), int(t0 + 0.8 * (t1 - t0))
    texts = [FACET_TEXTS[n] for n in range(4)] + [FACET_TEXTS[(n + 1) % 4] for n in range(4)]
    flat = encoder.encode([t for facets in texts for t in facets])
    vectors = torch.from_numpy(flat).view(len(texts), len(FACETS), -1)
    present = torch.tensor([[bool(t) for t in facets] for facets in texts])
    profiles = ProfileIndex(np.concatenate([users, users]),
                            np.array([early] * 4 + [late] * 4, dtype=np.int64),
                            vectors, facet_mask=present)
    return log, item_text, profiles, users, (early, late), encoder


def _cut(log: EventLog, at: float) -> tuple[int, float]:
    index = int(np.searchsorted(log.ts, at, side="left"))
    return index, float(log.ts[index])


def test_no_snapshot_before_the_batch_start_means_popularity(slice_data):
    log, item_text, profiles, users, (early, late), _ = slice_data
    scorer = PopularityTextScorer(log, item_text, profiles)
    popularity = PopularityScorer(log)
    # A batch starting exactly at the early snapshot's time: as_of < t fails, so no profile.
    at_snapshot = float(early)
    index = int(np.searchsorted(log.ts, at_snapshot, side="left"))
    got = scorer.scores(users, np.full(4, at_snapshot), index, at_snapshot)
    assert not scorer.last_has.any()
    assert torch.equal(got, popularity.scores(users, np.full(4, at_snapshot), index,
                                              at_snapshot))
    # One second later the early snapshot applies, and later snapshots change nothing.
    later = at_snapshot + 1
    index = int(np.searchsorted(log.ts, later, side="left"))
    before = scorer.scores(users, np.full(4, later), index, later)
    assert scorer.last_has.all()
    negated_late = ProfileIndex(profiles.user_idx, profiles.as_of,
                            torch.cat([profiles.vectors[:4], -profiles.vectors[4:]]),
                            facet_mask=profiles.facet_mask)
    after = PopularityTextScorer(log, item_text, negated_late).scores(users, np.full(4, later),
                                                                  index, later)
    assert torch.equal(before, after)


def test_a_masked_facet_contributes_nothing(slice_data):
    log, item_text, profiles, users, (early, late), encoder = slice_data
    index, cut_time = _cut(log, late + 1)
    # Overwrite the absent brands facet with a real, very different text: nothing changes.
    vectors = profiles.vectors.clone()
    vectors[:, FACETS.index("brands")] = torch.from_numpy(encoder.encode(["cake cases"]))[0]
    altered = ProfileIndex(profiles.user_idx, profiles.as_of, vectors,
                           facet_mask=profiles.facet_mask)
    for combine in ("max", "mean"):
        a = PopularityTextScorer(log, item_text, profiles, combine=combine)
        b = PopularityTextScorer(log, item_text, altered, combine=combine)
        assert torch.equal(a.scores(users, np.full(4, cut_time), index, cut_time),
                           b.scores(users, np.full(4, cut_time), index, cut_time))
    # Only the absent facet chosen: every row falls back to popularity.
    brands = PopularityTextScorer(log, item_text, altered, combine="facet:brands")
    got = brands.scores(users, np.full(4, cut_time), index, cut_time)
    assert not brands.last_has.any()
    assert torch.equal(got, PopularityScorer(log).scores(users, np.full(4, cut_time), index,
                                                         cut_time))


def test_top_items_are_the_nearest_texts_by_brute_force(slice_data):
    log, item_text, profiles, users, (early, late), _ = slice_data
    index, cut_time = _cut(log, late + 1)
    items = item_text.numpy().astype(np.float64)
    for combine in ("max", "mean", "facet:interests"):
        scores = PopularityTextScorer(log, item_text, profiles, combine=combine).scores(
            users, np.full(4, cut_time), index, cut_time)
        for b, user in enumerate(users):
            row = profiles.rows(np.array([user]), np.array([cut_time]))[0]
            assert profiles.as_of[row] == late
            facets = profiles.vectors[row].numpy().astype(np.float64)
            present = profiles.facet_mask[row].numpy()
            if combine.startswith("facet:"):
                present = present & (np.array(FACETS) == combine.removeprefix("facet:"))
            expected = np.empty(log.n_items)
            for i in range(log.n_items):  # the slow, obvious way
                cos = [items[i] @ facets[f] / (np.linalg.norm(items[i]) *
                                               np.linalg.norm(facets[f]))
                       for f in range(len(FACETS)) if present[f]]
                expected[i] = max(cos) if combine == "max" else sum(cos) / len(cos)
            np.testing.assert_allclose(scores[b].numpy(), expected, atol=1e-5)
            top = set(np.argsort(-scores[b].numpy(), kind="stable")[:20])
            assert top == set(np.argsort(-expected, kind="stable")[:20])


def test_shapes_duplicates_and_ties(slice_data):
    log, item_text, profiles, users, (early, late), _ = slice_data
    index, cut_time = _cut(log, late + 1)
    # Two items given one text: equal cosines, so popularity alone orders them.
    popular = PopularityScorer(log).scores(users[:1], np.full(1, cut_time), index, cut_time)[0]
    a, b = int(popular.argmax()), int(popular.argmin())
    twins = item_text.clone()
    twins[b] = twins[a]
    scorer = PopularityTextScorer(log, twins, profiles)
    query = np.array([users[0], users[0], users[1]])
    scores = scorer.scores(query, np.full(3, cut_time), index, cut_time)
    assert scores.shape == (3, log.n_items) and scores.dtype == torch.float64
    assert torch.equal(scores[0], scores[1])  # one user asked twice: one answer
    assert scores[0, a] > scores[0, b]  # the tie goes to the more popular item
    assert float(scores[0, a] - scores[0, b]) < 1e-5  # ... and only breaks the tie
    # No users at all: an empty answer of the right width.
    empty = scorer.scores(np.zeros(0, np.int64), np.zeros(0), index, cut_time)
    assert empty.shape == (0, log.n_items)
    sim, has = profile_similarity(scorer.item_unit, torch.zeros(0, len(FACETS), 384),
                                  torch.zeros(0, len(FACETS), dtype=torch.bool))
    assert sim.shape == (0, log.n_items) and has.shape == (0,)


def test_mix_with_lambda_zero_ranks_like_popularity(slice_data):
    log, item_text, profiles, users, (early, late), _ = slice_data
    index, cut_time = _cut(log, late + 1)
    mix = PopularityTextScorer(log, item_text, profiles, mix=0.0)
    got = mix.scores(users, np.full(4, cut_time), index, cut_time)
    popular = PopularityScorer(log).scores(users, np.full(4, cut_time), index, cut_time)
    assert torch.equal(got.argsort(dim=1, stable=True),
                       popular.argsort(dim=1, stable=True))
    strong = mix.variant("max", 1000.0).scores(users, np.full(4, cut_time), index, cut_time)
    text = mix.variant("max", None).scores(users, np.full(4, cut_time), index, cut_time)
    # A huge text weight puts the text scorer's first item first.
    assert torch.equal(strong.argmax(1), text.argmax(1))


def test_tuned_rows_choose_on_validation_and_count_the_fallback(slice_data):
    log, item_text, profiles, users, _, _ = slice_data
    split = chronological_split(log)
    results = tuned_profile_text_results(log, split, item_text, profiles, batch_size=512,
                                         ks=(10, 20))
    assert set(results) == {TEXT_METHOD, MIX_METHOD}
    text, mix = results[TEXT_METHOD], results[MIX_METHOD]
    assert {"full", "paper", "exclude_seen"} <= set(text)
    # No snapshot has a brands text: "brands alone" would be popularity itself, not offered.
    options = [g["option"] for g in text["choice"]["grid"]]
    assert options == [c for c in COMBINATIONS if c != "facet:brands"]
    assert len(mix["choice"]["grid"]) == len(options) * len(MIX_GRID)
    assert mix["choice"]["grid"][0]["option"] == str({"combine": "max", "lambda": 0.0})
    assert text["choice"]["validation"] == max(g["value"] for g in text["choice"]["grid"])
    coverage = text["choice"]["coverage"]["test"]
    assert coverage["n_events"] == len(split.test) == text["full"]["n_events"]
    # Only four customers have profiles: most test events fall back to popularity.
    expected = sum(int(np.isin(log.user_idx[e.start:e.stop], users).sum())
                   for e in time_batches(log, split.test, 512))
    assert coverage["n_with_profile"] == expected
    assert coverage == profile_coverage(log, profiles, split.test, 512)
    assert f"for {coverage['n_fallback']} of {coverage['n_events']}" in (
        text["choice"]["fallback"])


def test_bad_inputs_are_refused_with_a_reason(slice_data):
    log, item_text, profiles, _, _, _ = slice_data
    with pytest.raises(ValueError, match="384-d but profile facet vectors are 12-d"):
        PopularityTextScorer(log, item_text, ProfileIndex(
            profiles.user_idx, profiles.as_of, profiles.vectors[..., :12]))
    with pytest.raises(ValueError, match=r"n_items=300"):
        PopularityTextScorer(log, item_text[:10], profiles)
    with pytest.raises(ValueError, match="unknown combination 'median'"):
        PopularityTextScorer(log, item_text, profiles, combine="median")
    nothing = ProfileIndex(profiles.user_idx, profiles.as_of, profiles.vectors,
                           facet_mask=torch.zeros_like(profiles.facet_mask))
    with pytest.raises(ValueError, match="no profile snapshot has any facet text"):
        tuned_profile_text_results(log, chronological_split(log), item_text, nothing)
    with pytest.raises(ValueError, match="finite number >= 0"):
        PopularityTextScorer(log, item_text, profiles, mix=float("nan"))


def test_the_report_lists_the_text_rows_only_with_profiles_and_item_text(slice_data):
    from models.evaluation.report import baseline_results
    from models.training.loop import TrainConfig

    log, item_text, profiles, _, _, _ = slice_data
    config = TrainConfig(batch_size=512, ks=(10, 20), device="cpu")
    without = baseline_results(log, config)
    assert TEXT_METHOD not in without and MIX_METHOD not in without
    with_text = baseline_results(log, config, item_text=item_text, profiles=profiles)
    assert set(with_text) == set(without) | {TEXT_METHOD, MIX_METHOD}
    # The other rows are untouched by the new ones.
    assert with_text["TIFU-KNN"]["full"] == without["TIFU-KNN"]["full"]
