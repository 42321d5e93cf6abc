"""Reading an LLM answer into profile facets: tolerant about form, strict about content.

Tolerated: control characters, text before or after the JSON object, case and spacing
differences against the candidates, repeated list entries (grammars cannot forbid them; they are
removed keeping the first), a category or brand that is not among this user's candidates
next to one that is (the unknown one is dropped and listed in `ProfileFacets.dropped`; the raw
answer keeps it: a grammar-constrained answer never has one, an endpoint's free JSON may).
Not tolerated, reported as ProfileParseError: no JSON object, a missing or mistyped facet, a
phrase outside the schema's shape, a list facet none of whose entries is a candidate, more
entries than allowed. Nothing is ever filled in or replaced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from models.profiles.prompt import (
    _PHRASE_BODY,
    _PHRASE_FIRST,
    INTEREST_CHARS,
    MAX_FACET_ITEMS,
    SEGMENT_CHARS,
    Candidates,
)
from models.vocabulary import PROFILE_FIELDS

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ProfileParseError(ValueError):
    """The answer is not a valid profile; the message says why."""


@dataclass(frozen=True)
class ProfileFacets:
    crowd_segment: str
    interests: list[str]
    preferred_categories: list[str]
    favored_brands: list[str]
    # Category / brand names the answer gave that were not candidates (dropped, not kept).
    dropped: list[str] = field(default_factory=list, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The four facets (not `dropped`), as stored."""
        return {f: list(v) if isinstance(v, list) else v
                for f, v in ((f, getattr(self, f)) for f in PROFILE_FIELDS)}

    def texts(self) -> dict[str, str]:
        """One text per facet, as the text encoder embeds it (lists joined with '; ')."""
        values = self.to_dict()
        return {field: value if isinstance(value, str) else "; ".join(value)
                for field, value in ((f, values[f]) for f in PROFILE_FIELDS)}


def extract_json_object(raw: str) -> dict:
    """The first JSON object in `raw`, after turning control characters into spaces."""
    text = _CONTROL.sub(" ", raw)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise ProfileParseError(f"no JSON object in the answer: {raw[:120]!r}")


def _norm(s: str) -> str:
    return " ".join(s.split())


def _phrase(value: Any, key: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ProfileParseError(f"{key}: expected text, got {type(value).__name__}")
    s = _norm(value)
    if not re.fullmatch(f"{_PHRASE_FIRST}{_PHRASE_BODY}{{1,{max_chars - 1}}}", s):
        raise ProfileParseError(f"{key}: {s[:80]!r} is not a short phrase of letters "
                                f"(2-{max_chars} characters)")
    return s


def _unique(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for v in values:
        seen.setdefault(v.casefold(), v)
    return list(seen.values())


def _list(obj: dict, key: str) -> list:
    value = obj.get(key)
    if not isinstance(value, list):
        raise ProfileParseError(f"{key}: expected a list, got {type(value).__name__}")
    return value


def _choices(obj: dict, key: str, allowed: list[str], dropped: list[str]) -> list[str]:
    if not allowed:  # left out of the schema: nothing to choose from, so nothing may be chosen
        if obj.get(key):
            raise ProfileParseError(f"{key}: there were no candidates, yet {obj[key]!r} came back")
        return []
    canon = {_norm(a).casefold(): a for a in allowed}
    out, unknown = [], []
    for v in _list(obj, key):
        if not isinstance(v, str) or _norm(v).casefold() not in canon:
            unknown.append(v)
            continue
        out.append(canon[_norm(v).casefold()])
    if unknown and not out:
        raise ProfileParseError(f"{key}: {unknown[0]!r} is not one of this user's candidates, "
                                "nor is any other entry")
    dropped.extend(str(v) for v in unknown)
    out = _unique(out)
    if not 1 <= len(out) <= MAX_FACET_ITEMS:
        raise ProfileParseError(f"{key}: {len(out)} entries, expected 1-{MAX_FACET_ITEMS}")
    return out


def parse_profile(raw: str, candidates: Candidates) -> ProfileFacets:
    """Facets from a raw answer, or ProfileParseError."""
    obj = extract_json_object(raw)
    interests = _unique([_phrase(v, "interests", INTEREST_CHARS)
                         for v in _list(obj, "interests")])
    if not 1 <= len(interests) <= MAX_FACET_ITEMS:
        raise ProfileParseError(f"interests: {len(interests)} entries, "
                                f"expected 1-{MAX_FACET_ITEMS}")
    dropped: list[str] = []
    return ProfileFacets(
        crowd_segment=_phrase(obj.get("crowd_segment"), "crowd_segment", SEGMENT_CHARS),
        interests=interests,
        preferred_categories=_choices(obj, "preferred_categories", candidates.categories,
                                      dropped),
        favored_brands=_choices(obj, "favored_brands", candidates.brands, dropped),
        dropped=dropped,
    )
