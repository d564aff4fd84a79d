"""The reader's shortcuts answer as the general rule they stand for (issue 16, cost).

Reading a chart asks the same few questions of every record; the answers are worked out by
shortcuts for the common shapes (a printable text needs no substitution, a concept's text
that repeats its display is said once, a record with none of the detail keys has no
details). Each shortcut is checked here against the plain definition it replaces, on any
JSON-like value hypothesis makes, malformed shapes included.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twitch_cds.fhir_in.coding import codings, concept_text, first_code, number
from twitch_cds.fhir_in.value_text import record_details
from twitch_cds.issues import _UNSAFE, safe_text

_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
"""Any characters: controls, separators, lone surrogates, the common words."""
_WORDS = st.one_of(st.sampled_from(["Muscle fasciculation", "Kedutan", "", " "]), _TEXT)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats())
_CODING = st.one_of(  # well formed most often, anything else too
    st.fixed_dictionaries({}, optional={"system": _WORDS, "code": _WORDS, "display": _WORDS}),
    st.fixed_dictionaries({}, optional={"system": st.one_of(_WORDS, _SCALAR),
                                        "code": st.one_of(_WORDS, _SCALAR),
                                        "display": st.one_of(_WORDS, _SCALAR)}),
    _SCALAR, _WORDS)
_CONCEPT = st.one_of(
    st.fixed_dictionaries({"text": _WORDS, "coding": st.lists(_CODING, max_size=3)}),
    st.fixed_dictionaries({}, optional={"text": st.one_of(_WORDS, _SCALAR),
                                        "coding": st.one_of(st.lists(_CODING, max_size=3),
                                                            _CODING)}),
    _SCALAR, _WORDS, st.lists(_CODING, max_size=2))
_MANY = settings(max_examples=1_000)


@_MANY
@given(_TEXT, st.integers(min_value=2, max_value=50))
def test_safe_text_is_the_substitution_of_the_cut_text(text: str, limit: int) -> None:
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    assert safe_text(text, limit) == _UNSAFE.sub("\ufffd", cut)


@_MANY
@given(_CONCEPT)
def test_a_concepts_words_are_its_text_then_each_display_once(concept: Any) -> None:
    if isinstance(concept, dict):
        words = [concept["text"]] if isinstance(concept.get("text"), str) else []
        words += [display for _, _, display in codings(concept) if display]
        expected = " | ".join(dict.fromkeys(words))
    else:
        expected = ""
    assert concept_text(concept) == expected


@_MANY
@given(_CONCEPT)
def test_the_first_code_is_the_first_non_empty_string_code(concept: Any) -> None:
    assert first_code(concept) == next((code for _, code, _ in codings(concept) if code), None)


@_MANY
@given(st.one_of(_SCALAR, _WORDS, st.integers(min_value=10**300, max_value=10**320)))
def test_a_number_is_a_finite_float_of_a_json_number(value: Any) -> None:
    expected = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            as_float = float(value)
        except OverflowError:
            as_float = math.inf
        expected = as_float if math.isfinite(as_float) else None
    assert number(value) == expected


_DETAIL_VALUES = st.one_of(
    _WORDS, _CONCEPT, st.lists(_CONCEPT, max_size=2),
    st.fixed_dictionaries({}, optional={"value": st.one_of(st.floats(), st.integers()),
                                        "unit": _WORDS}),
    _SCALAR)


@_MANY
@given(st.dictionaries(st.sampled_from([
    "valueQuantity", "valueCodeableConcept", "valueString", "valueInteger", "valueRange",
    "component", "bodySite", "code", "status", "effectiveDateTime", "note"]),
    _DETAIL_VALUES, max_size=4), _WORDS)
def test_a_records_details_are_those_the_full_reading_gives(data: dict[str, Any],
                                                             code_words: str) -> None:
    """An empty ``interpretation`` adds nothing but takes the full reading's path."""
    try:
        expected = record_details({**data, "interpretation": []}, code_words)
    except (TypeError, AttributeError):  # a malformed component list: the reader reports it
        return
    assert record_details(data, code_words) == expected
