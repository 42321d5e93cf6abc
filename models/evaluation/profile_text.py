"""Profile text against item text: a non-learned scorer that asks whether a user's LLM profile
can reach items the user never bought (issue #12, item 6).

The profile facets (crowd segment, interests, preferred categories, favoured brands) and the
item titles are embedded by the same text encoder, so they share one space. At a batch starting
at `cut_time` a user's score for item i is the cosine of item i's text vector with the facet
vectors of the user's latest snapshot made strictly before `cut_time` (ProfileIndex.rows: the
rule the network uses, so a snapshot dated at or after the batch start never matters), combined
over the facets the snapshot has:

- "max": the best-matching present facet;
- "mean": the mean over the present facets;
- "facet:NAME": one facet alone (a profile without it counts as no profile).

Queries whose user has no usable snapshot yet (none before the batch start, or every chosen
facet absent) fall back to recent popularity, the strongest explore baseline, so that a row
without a profile is a fair popularity row rather than noise; the report counts these events.

`PopularityTextScorer` mixes the two: popularity / max popularity + lambda * similarity, with
lambda (and the combination) chosen on validation; lambda = 0 is popularity itself and is listed
first, so a text term that adds nothing on validation is never picked.

Everything is matrix products over blocks of items (ITEM_BLOCK); nothing loops over items.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from models.data.events import EventLog, Split, time_batches
from models.data.profile_index import ProfileIndex
from models.evaluation.baselines import TIE_BREAK, PopularityScorer
from models.evaluation.metrics import DEFAULT_KS
from models.evaluation.protocols import (
    default_protocol,
    evaluate_scorers,
    standard_protocols,
)
from models.evaluation.seeds import aggregate_results
from models.evaluation.selection import SELECT_METRIC, check_validation_size, choose_on_validation
from models.vocabulary import FACETS

# Items per matrix product: [queries, facets, block] cosines stay a few MB even at Complete
# Journey's 68k items and a batch's few hundred distinct queries.
ITEM_BLOCK = 8192
COMBINATIONS: tuple[str, ...] = ("max", "mean") + tuple(f"facet:{f}" for f in FACETS)
# lambda = 0 first: popularity alone wins every tie on validation.
MIX_GRID: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
POPULARITY_WINDOW_DAYS = 30.0
TEXT_METHOD = "profile text"
MIX_METHOD = "popularity + profile text"


def check_text_inputs(log: EventLog, item_text: torch.Tensor,
                      profiles: ProfileIndex) -> None:
    """Item vectors and facet vectors must come from one encoder (same width), one per item."""
    if item_text.dim() != 2 or item_text.shape[0] != log.n_items:
        raise ValueError(f"item text vectors must be [n_items={log.n_items}, d], got "
                         f"{tuple(item_text.shape)}")
    if item_text.shape[1] != profiles.dim:
        raise ValueError(f"item text vectors are {item_text.shape[1]}-d but profile facet "
                         f"vectors are {profiles.dim}-d: embed both with one encoder "
                         "(dynllm-tui profiles --re-embed)")


def _facet_weights(combine: str, mask: torch.Tensor) -> torch.Tensor:
    """[B, n_facets] weights of each facet in the combination; 0 for absent facets."""
    if combine in ("max", "mean"):
        return mask.float()
    if combine.startswith("facet:") and combine.removeprefix("facet:") in FACETS:
        keep = torch.zeros(len(FACETS), dtype=torch.bool)
        keep[FACETS.index(combine.removeprefix("facet:"))] = True
        return (mask & keep).float()
    raise ValueError(f"unknown combination {combine!r}; choose one of {', '.join(COMBINATIONS)}")


def profile_similarity(item_unit: torch.Tensor, facets: torch.Tensor, mask: torch.Tensor,
                       combine: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """(similarity [B, n_items] float32, has [B] bool) of unit item vectors [n_items, d] to
    facet vectors [B, n_facets, d] under `mask` [B, n_facets] (facet present). A row without
    any weighted facet has similarity 0 and has = False; an absent facet never contributes."""
    weights = _facet_weights(combine, mask.bool())
    has = weights.sum(1) > 0
    unit = F.normalize(facets.float(), dim=-1)
    out = torch.zeros(len(facets), len(item_unit))
    if not has.any():
        return out, has
    rows = torch.nonzero(has).squeeze(1)
    unit, weights = unit[rows], weights[rows]
    share = weights / weights.sum(1, keepdim=True)
    for lo in range(0, len(item_unit), ITEM_BLOCK):
        cos = torch.einsum("bfd,md->bfm", unit, item_unit[lo:lo + ITEM_BLOCK])
        if combine == "max":
            block = cos.masked_fill(~weights.bool()[..., None], -torch.inf).amax(1)
        else:  # mean over present facets, or the one chosen facet
            block = (cos * share[..., None]).sum(1)
        out[rows, lo:lo + ITEM_BLOCK] = block
    return out, has


class PopularityTextScorer:
    """popularity / max popularity + mix * profile-text similarity (see the module docstring);
    with `mix=None` the similarity alone ("profile text"), popularity only breaking ties. Rows
    whose user has no usable snapshot before the batch start get popularity alone."""

    def __init__(self, log: EventLog, item_text: torch.Tensor, profiles: ProfileIndex, *,
                 combine: str = "max", mix: float | None = None,
                 window_days: float = POPULARITY_WINDOW_DAYS):
        check_text_inputs(log, item_text, profiles)
        self.log, self.profiles = log, profiles
        self._set(combine, mix)
        self.item_unit = F.normalize(item_text.float(), dim=-1)
        self.popularity = PopularityScorer(log, window_days)
        # The last batch's similarity, shared with the scorers `variant` makes.
        self._cache: dict[str, tuple] = {}
        self.last_has: torch.Tensor | None = None  # rows of the last call with a profile

    def variant(self, combine: str, mix: float | None) -> PopularityTextScorer:
        """The same scorer with another combination or mix, sharing this one's cached
        similarity, so a grid scored in one pass (protocols.evaluate_scorers) computes the
        cosines once per batch and combination."""
        other = PopularityTextScorer.__new__(PopularityTextScorer)
        other.__dict__.update(self.__dict__)
        other._set(combine, mix)
        return other

    def _set(self, combine: str, mix: float | None) -> None:
        _facet_weights(combine, torch.ones(1, len(FACETS), dtype=torch.bool))  # validates
        if mix is not None and not (np.isfinite(mix) and mix >= 0):
            raise ValueError(f"the text weight must be a finite number >= 0, got {mix}")
        self.combine, self.mix = combine, mix
        self.name = (f"{TEXT_METHOD} ({combine})" if mix is None
                     else f"{MIX_METHOD} ({combine}, lambda={mix:g})")

    def similarity(self, users: np.ndarray, cut_time: float) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
        """(similarity [B, n_items], has [B]) from each user's latest snapshot strictly before
        `cut_time`."""
        users = np.asarray(users, dtype=np.int64)
        key = (float(cut_time), users.tobytes(), self.combine)
        cached = self._cache.get("similarity")
        if cached is not None and cached[0] == key:
            return cached[1]
        facets, mask = self.profiles.lookup(users, np.full(len(users), cut_time))
        result = profile_similarity(self.item_unit, facets, mask, self.combine)
        self._cache["similarity"] = (key, result)
        return result

    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        sim, has = self.similarity(users, cut_time)
        popular = self.popularity.scores(users, times, cut_index, cut_time)  # float64
        self.last_has = has
        top = max(float(popular[0].max()) if len(popular) else 0.0, 1.0)
        if self.mix is None:  # popularity only orders what the cosines leave tied
            text = sim.double() + TIE_BREAK * popular / top
        else:
            text = popular / top + self.mix * sim.double()
        return torch.where(has[:, None], text, popular)


def usable_combinations(profiles: ProfileIndex) -> list[str]:
    """COMBINATIONS without the single facets that no snapshot has (Online Retail's brands):
    such a "profile" scorer is popularity itself, already a row of its own, and would win the
    validation choice of a text scorer that then never looks at a profile."""
    present = (torch.ones(len(FACETS), dtype=torch.bool) if profiles.facet_mask is None
               else profiles.facet_mask.any(0))
    if not len(profiles.as_of) or not present.any():
        raise ValueError("no profile snapshot has any facet text: nothing to match items to")
    return [c for c in COMBINATIONS
            if not c.startswith("facet:") or bool(present[FACETS.index(c.removeprefix("facet:"))])]


def profile_coverage(log: EventLog, profiles: ProfileIndex, part: range,
                     batch_size: int) -> dict:
    """How many of `part`'s events have a snapshot before their batch start (with at least one
    facet present): the events the text scorer scores by profile rather than by popularity."""
    n, covered = 0, 0
    for events in time_batches(log, part, batch_size):
        users = log.user_idx[events.start:events.stop]
        _, mask = profiles.lookup(users, np.full(len(users), log.ts[events.start]))
        covered += int(mask.any(1).sum())
        n += len(users)
    return {"n_events": n, "n_with_profile": covered, "n_fallback": n - covered}


def tuned_profile_text_results(
    log: EventLog,
    split: Split,
    item_text: torch.Tensor,
    profiles: ProfileIndex,
    *,
    batch_size: int = 2048,
    ks: tuple[int, ...] = DEFAULT_KS,
    metric: str = SELECT_METRIC,
    progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, dict]:
    """{method: {protocol: metrics, "choice": record}} for the profile-text scorer (the
    combination chosen on validation by `metric`) and the popularity + text mix (combination
    and lambda chosen together on validation). The test part is scored once per choice. The
    record carries the validation grid and how many test events fell back to popularity."""
    check_text_inputs(log, item_text, profiles)
    check_validation_size(len(split.val))
    protocol, _ = default_protocol(log, split)
    val_protocols = {protocol: standard_protocols(log, split)[protocol]}
    if progress is not None:
        progress(f"{TEXT_METHOD}: choosing the facet combination and lambda on validation")
    base = PopularityTextScorer(log, item_text, profiles)
    text_options = usable_combinations(profiles)
    mix_options = [{"combine": c, "lambda": m} for c in text_options for m in MIX_GRID]
    # One pass per combination: its text scorer and all its mixes share the cosines.
    val: dict[tuple, dict] = {}
    for combine in text_options:
        scorers = [base.variant(combine=combine, mix=None)] + [
            base.variant(combine=combine, mix=m) for m in MIX_GRID]
        figures = evaluate_scorers(scorers, log, split, batch_size=batch_size, ks=ks,
                                   part=split.val, protocols=val_protocols,
                                   should_stop=should_stop)
        val[(combine, None)] = figures[0][protocol]
        for m, by_protocol in zip(MIX_GRID, figures[1:], strict=True):
            val[(combine, m)] = by_protocol[protocol]
    text_choice = choose_on_validation(text_options, lambda c: val[(c, None)], metric)
    mix_choice = choose_on_validation(mix_options,
                                      lambda o: val[(o["combine"], o["lambda"])], metric)
    chosen_text = base.variant(combine=text_choice.option, mix=None)
    chosen_mix = base.variant(combine=mix_choice.option["combine"],
                              mix=mix_choice.option["lambda"])
    test = evaluate_scorers([chosen_text, chosen_mix], log, split, batch_size=batch_size,
                            ks=ks, should_stop=should_stop)
    coverage = {"validation": profile_coverage(log, profiles, split.val, batch_size),
                "test": profile_coverage(log, profiles, split.test, batch_size)}
    fallback = (f"popularity ({POPULARITY_WINDOW_DAYS:g}d) for "
                f"{coverage['test']['n_fallback']} of {coverage['test']['n_events']} test events "
                "(no snapshot before the batch start)")

    def record(choice, label: str, explore: Callable[[object], float | None]) -> dict:
        return {**choice.record(), "chosen": label, "protocol": protocol, "fallback": fallback,
                "coverage": coverage,
                "grid": [{"option": str(g["option"]), "value": g["value"],
                          "explore:recall@20": explore(g["option"])} for g in choice.grid]}

    return {
        TEXT_METHOD: {**aggregate_results([test[0]]), "choice": record(
            text_choice, text_choice.option,
            lambda c: val[(c, None)].get("explore:recall@20"))},
        MIX_METHOD: {**aggregate_results([test[1]]), "choice": record(
            mix_choice, f"{mix_choice.option['combine']}, lambda={mix_choice.option['lambda']:g}",
            lambda o: val[(o["combine"], o["lambda"])].get("explore:recall@20"))},
    }
