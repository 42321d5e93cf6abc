"""Parsing answers: tolerant of form, strict on content, never inventing."""

from __future__ import annotations

import json

import pytest

from models.profiles.output import ProfileParseError, extract_json_object, parse_profile
from models.profiles.prompt import CATALOGUE, DERIVED, UNKNOWN, Candidates

CANDS = Candidates(["bags & purses", "clocks"], DERIVED, [], UNKNOWN)


def _answer(**over):
    d = {"crowd_segment": "gift shop buyer", "interests": ["vintage", "retro kitchen"],
         "preferred_categories": ["clocks"]}
    d.update(over)
    return json.dumps(d, ensure_ascii=False)


def test_stray_text_and_control_characters_are_tolerated():
    raw = "Sure! Here it is:\n" + _answer().replace("gift", "gift\x07") + "\n```\nthanks"
    f = parse_profile(raw, CANDS)
    assert f.crowd_segment == "gift shop buyer"  # control char -> space -> collapsed
    assert f.favored_brands == []


def test_duplicates_and_case_are_folded_onto_candidates():
    f = parse_profile(_answer(interests=["Vintage", "vintage", " retro  kitchen "],
                              preferred_categories=["CLOCKS", "clocks", "Bags & Purses"]), CANDS)
    assert f.interests == ["Vintage", "retro kitchen"]
    assert f.preferred_categories == ["clocks", "bags & purses"]


@pytest.mark.parametrize("raw, why", [
    ("no json at all", "no JSON object"),
    (_answer(preferred_categories=["garden"]), "not one of this user's candidates"),
    (_answer(favored_brands=["Acme"]), "no candidates"),
    (_answer(crowd_segment=""), "short phrase"),
    (_answer(crowd_segment="x" * 90), "short phrase"),
    (_answer(crowd_segment="buyer {of} 12"), "short phrase"),
    (_answer(interests=[]), "interests: 0 entries"),
    (_answer(interests=[f"theme {c}" for c in "abcdef"]), "interests: 6 entries"),
    (_answer(interests="vintage"), "expected a list"),
    (json.dumps({"crowd_segment": "buyer", "interests": ["x y"]}), "preferred_categories"),
])
def test_invalid_answers_are_refused_not_repaired(raw, why):
    with pytest.raises(ProfileParseError, match=why):
        parse_profile(raw, CANDS)


def test_brands_from_a_catalogue_are_checked_too():
    cands = Candidates(["Grocery"], CATALOGUE, ["National", "Private"], CATALOGUE)
    f = parse_profile(_answer(preferred_categories=["grocery"], favored_brands=["private"]), cands)
    assert (f.preferred_categories, f.favored_brands) == (["Grocery"], ["Private"])
    with pytest.raises(ProfileParseError, match="favored_brands"):
        parse_profile(_answer(preferred_categories=["Grocery"]), cands)


def test_first_complete_object_wins():
    assert extract_json_object('{"a": 1} {"b": 2}') == {"a": 1}
    assert extract_json_object('{broken {"a": 1}') == {"a": 1}


def test_facet_texts_for_the_encoder():
    f = parse_profile(_answer(preferred_categories=["clocks", "bags & purses"]), CANDS)
    assert f.texts() == {"crowd_segment": "gift shop buyer", "interests": "vintage; retro kitchen",
                         "preferred_categories": "clocks; bags & purses", "favored_brands": ""}


def test_a_category_that_does_not_exist_is_dropped_next_to_real_ones():
    """An answer not held to the grammar (an endpoint's free JSON) may name a category that is
    not a candidate: it is dropped and listed, the real ones kept; the raw answer keeps it."""
    raw = _answer(preferred_categories=["garden", "clocks", "weapons"])
    f = parse_profile(raw, CANDS)
    assert f.preferred_categories == ["clocks"] and f.dropped == ["garden", "weapons"]
    assert "dropped" not in f.to_dict() and "garden" in raw
    with pytest.raises(ProfileParseError, match="'garden' is not one of this user's candidates"):
        parse_profile(_answer(preferred_categories=["garden"]), CANDS)
