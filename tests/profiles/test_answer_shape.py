"""What the profile schema forces: the shape jump-forward follows (models/profiles/answer_shape.py).

The grammar side (that llama.cpp accepts every forced token) is tested through the engine in
test_batched_llm.py; here the text-level rules, on the profiler's own schema."""

from __future__ import annotations

import json

import pytest

from models.profiles.answer_shape import AnswerShape, ShapeMismatch
from models.profiles.prompt import Candidates, profile_schema

CANDIDATES = Candidates(categories=["clock & wall", "card", "cards", "cake & set"],
                        categories_source="catalogue", brands=["National"],
                        brands_source="catalogue")


def _shape(candidates: Candidates = CANDIDATES) -> AnswerShape:
    # As the engine makes it: from the JSON text handed to the grammar converter.
    shape = AnswerShape.from_schema(json.dumps(profile_schema(candidates), sort_keys=True))
    assert shape is not None
    return shape


def _state_after(text: str, candidates: Candidates = CANDIDATES):
    state = _shape(candidates).start()
    state.feed(text)
    return state


def test_the_opening_and_each_key_are_forced_in_the_grammars_order():
    assert _shape().start().forced() == '{"crowd_segment":"'
    # The converter writes the properties in the order of the JSON it is given (sorted keys).
    after_segment = _state_after('{"crowd_segment":"frequent buyer"')
    assert after_segment.forced() == ',"favored_brands":["National"'
    after_brands = _state_after('{"crowd_segment":"a b","favored_brands":["National"]')
    assert after_brands.forced() == ',"interests":["'


def test_free_choices_are_left_to_the_model():
    # Inside a phrase, after an item (another or the end), between candidates sharing a prefix.
    assert _state_after('{"crowd_segment":"freq').forced() == ""
    assert _state_after('{"crowd_segment":"a b","favored_brands":["National"],'
                        '"interests":["gifts"').forced() == ""
    cats = ('{"crowd_segment":"a b","favored_brands":["National"],"interests":["gifts"],'
            '"preferred_categories":["')
    assert _state_after(cats).forced() == "c"  # every candidate starts with a c...
    assert _state_after(cats + "c").forced() == ""  # ...then l or a
    assert _state_after(cats + "car").forced() == "d"  # card, cards
    assert _state_after(cats + "card").forced() == ""  # "card" or "cards"?
    assert _state_after(cats + "cl").forced() == 'ock & wall"'
    assert _state_after(cats + "cak").forced() == 'e & set"'


def test_the_end_is_forced_and_complete():
    text = ('{"crowd_segment":"a b","favored_brands":["National"],"interests":["gifts"],'
            '"preferred_categories":["card"]')
    state = _state_after(text)
    assert state.forced() == "}"
    state.feed("}")
    assert state.complete and state.forced() == ""


def test_max_items_forces_the_closing_bracket():
    text = ('{"crowd_segment":"a b","favored_brands":["National","National","National",'
            '"National","National"')
    assert _state_after(text).forced() == '],"interests":["'


def test_the_optional_spaces_the_grammar_allows_are_accepted_never_forced():
    text = ('{ "crowd_segment": "one-off UK buyer", "favored_brands": [ "National" ], '
            '"interests": [ "a b", "cc" ], "preferred_categories": [ "cards", "card" ] } ')
    state = _shape().start()
    for ch in text:
        assert " " not in state.forced()
        state.feed(ch)
    assert state.complete


def test_forced_text_is_always_what_follows_in_a_valid_answer():
    """Walk real-looking answers one character at a time: whatever is forced at any point is
    exactly what the answer goes on with (spaces aside)."""
    answers = [
        '{"crowd_segment":"frequent UK trade buyer of cheap card","favored_brands":["National"],'
        '"interests":["christmas","paper chains","vintage napkins"],'
        '"preferred_categories":["card","cards","clock & wall","cake & set"]}',
        '{"crowd_segment":"x y","favored_brands":["National","National"],"interests":["é à"],'
        '"preferred_categories":["cake & set"]}',
    ]
    for answer in answers:
        state = _shape().start()
        for i, ch in enumerate(answer):
            forced = state.forced()
            assert answer[i:].startswith(forced), (answer[:i], forced)
            state.feed(ch)
        assert state.complete


def test_a_facet_without_candidates_is_not_in_the_shape():
    shape = _shape(Candidates())  # no categories, no brands: both facets left out
    state = shape.start()
    state.feed('{"crowd_segment":"a b"')
    assert state.forced() == ',"interests":["'
    state.feed(',"interests":["ab"]')
    assert state.forced() == "}"


def test_text_off_the_shape_is_a_mismatch():
    for text in ('["', '{"interests"', '{"crowd_segment":"a b","favored_brands":["Private"',
                 '{"crowd_segment":"a b"  ,'):
        with pytest.raises(ShapeMismatch):
            _state_after(text)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": [],
     "additionalProperties": False},  # optional property: its key is a choice
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},  # extras
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
     "additionalProperties": False},
    {"type": "object", "properties": {"a": {"enum": ['say "hi"']}}, "required": ["a"],
     "additionalProperties": False},  # JSON would escape the quote
    {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}},
     "required": ["a"], "additionalProperties": False},  # minItems 0: "]" or '"' is a choice
    {"type": "object", "properties": {"a": {"type": "object"}}, "required": ["a"],
     "additionalProperties": False},
    {"type": "array"},
])
def test_schemas_of_other_kinds_are_not_followed(schema):
    assert AnswerShape.from_schema(schema) is None
