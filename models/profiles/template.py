"""Profiles written without the LLM: the four facets set from the same facts and candidates the
LLM's prompt carries.

Why this exists: trained on these template profiles, DynLLM did as well as on the LLM's own
(3 seeds each, mean best validation Recall@10, README "The lift of profiles"): with the paper
model a tie (Online Retail 0.0267 against 0.0270, Complete Journey 0.0447 against 0.0454, both
less than the seeds' spread), with the text term ahead (0.0410 against 0.0343, 0.0460 against
0.0457).
The LLM's words add nothing measurable over their inputs, and the template costs milliseconds
a profile instead of a second.

The facets, from the events strictly before `as_of` (the history the LLM would see):
- crowd_segment: "{orders-a-month word} {country} {order size} buyer of {price level}
  {first candidate category}", the order size from the mean quantity of a line;
- interests: the titles of the customer's most bought items (by lines, ties to the first
  bought), cleaned and cut like the prompt's titles; items without a title are skipped, so a
  catalogue without titles leaves the facet empty (absent, masked in the facet attention);
- preferred_categories / favored_brands: the candidates (models.profiles.prompt.
  build_candidates), most frequent first; no candidates, an empty (absent) facet.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter

from models.profiles.output import ProfileFacets
from models.profiles.profiler import ProfileResult
from models.profiles.prompt import (
    INTEREST_CHARS,
    MAX_FACET_ITEMS,
    Candidates,
    UserHistory,
    _attribute_value,
    _order_size,
    build_candidates,
    clean_text,
    history_facts,
    input_hash,
)

# Bump when a rule above changes: it enters the input hash, so every template profile is redone.
TEMPLATE_VERSION = "t1"
# What the profiles table records as the "model" of a template profile.
TEMPLATE_WRITER = "template (no LLM)"


def template_facets(history: UserHistory, candidates: Candidates) -> ProfileFacets:
    """The four facets of one history, written by rule (see the module docstring)."""
    facts = history_facts(history)
    country = _attribute_value(history.attributes.get("country"))
    quantities = [e.quantity for e in history.events
                  if e.quantity is not None and math.isfinite(e.quantity)]
    size = _order_size(sum(quantities) / len(quantities)) if quantities else ""
    words = [facts.frequency, country, size, "buyer of", facts.price_level or "",
             candidates.categories[0] if candidates.categories else "goods"]
    lines = Counter(e.item_id for e in history.events)
    title: dict[str, str] = {}
    for e in history.events:
        text = clean_text(e.title or "", INTEREST_CHARS)
        if text:
            title.setdefault(e.item_id, text)
    interests = [title[i] for i, _ in lines.most_common() if i in title]
    return ProfileFacets(
        crowd_segment=" ".join(w for w in words if w),
        interests=list(dict.fromkeys(interests))[:MAX_FACET_ITEMS],
        preferred_categories=candidates.categories[:MAX_FACET_ITEMS],
        favored_brands=candidates.brands[:MAX_FACET_ITEMS],
    )


class TemplateWriter:
    """Writes template profiles with the Profiler's interface (`name`, `input_hash`,
    `profile(history) -> ProfileResult`), so the profile job stores them the same way."""

    name = TEMPLATE_WRITER

    def input_hash(self, history: UserHistory) -> str:
        return input_hash(history, TEMPLATE_VERSION, self.name)

    def profile(self, history: UserHistory):
        """One template profile. Raises ValueError for an empty history, like the Profiler."""
        if not history.events:
            raise ValueError(f"user {history.user_id}: no events before as_of={history.as_of}; "
                             "no snapshot to make")
        started = time.perf_counter()
        candidates = build_candidates(history)
        facets = template_facets(history, candidates)
        return ProfileResult(
            user_id=str(history.user_id), as_of=history.as_of, ok=True, facets=facets,
            error=None, raw=[json.dumps(facets.to_dict(), ensure_ascii=False)],
            categories_source=candidates.categories_source,
            brands_source=candidates.brands_source,
            category_candidates=list(candidates.categories),
            brand_candidates=list(candidates.brands), model=self.name,
            prompt_version=TEMPLATE_VERSION, input_hash=self.input_hash(history),
            wall_s=time.perf_counter() - started,
        )
