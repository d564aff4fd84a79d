"""The card builder's short cuts write what the general ways write.

Card building works out once what no chart changes (rule messages parsed, summaries, order
templates) and takes short cuts where a chart allows (a fact listed whole gives its markers as
one run of numbers; a group's members need no walk through the provenance). Each short cut is
checked here against the general way it replaces, on generated inputs; that whole results are
unchanged is checked by ``benchmarks/identity.py`` against the previous release.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twitch_cds.card_builder import CARD_NAMESPACE, card_uuid
from twitch_cds.card_text import FORMATTERS, MessageTemplate, markers, span_markers
from twitch_cds.provenance import Provenance

FACT_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(alphabet="abc .,{}", max_size=6))
PLACEHOLDERS = st.sampled_from([
    "{lab.value}", "{lab.value:.2f}", "{lab.value:.0f}", "{lab.unit}", "{lab.missing:.1f}",
    "{nobind.value}", "{subject}", "{subject.x}", "{{", "}}", "{lab.value!r}", "{0}", "{}",
    "{lab.value:{width}}"])
WORDS = st.text(alphabet="Kadar kalium 3.1 mmol/L ,.()", max_size=8)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.one_of(PLACEHOLDERS, WORDS), max_size=6),
       value=FACT_VALUES, unit=FACT_VALUES, subject=st.text(max_size=5),
       lang=st.sampled_from(["en", "id"]))
def test_a_parsed_message_reads_as_the_formatter_writes_it(
        parts: list[str], value: Any, unit: Any, subject: str, lang: Any) -> None:
    template = "".join(parts)
    facts: dict[str, Any] = {"lab": {"value": value, "unit": unit}}

    def formatter() -> str:
        text = FORMATTERS[lang].format(template, **facts, subject={"": subject})
        return text[:1].upper() + text[1:] if template.startswith("{") else text

    try:
        expected: str | type[Exception] = formatter()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        expected = type(exc)
    try:
        got: str | type[Exception] = MessageTemplate(template).render(lang, facts, subject)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        got = type(exc)
    assert got == expected


def test_a_parsed_message_localises_numbers_and_opens_with_a_capital() -> None:
    template = MessageTemplate("{subject}: {lab.value:.2f} {lab.unit}, {lab.flag}")
    facts = {"lab": {"value": 3.14159, "unit": "mmol/L", "flag": True}}
    assert template.render("id", facts, "kalium rendah") == "Kalium rendah: 3,14 mmol/L, True"
    assert template.render("en", facts, "low potassium") == "Low potassium: 3.14 mmol/L, True"


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(1, 60), max_size=25))
def test_markers_of_a_set_are_those_of_its_sorted_list(numbers: set[int]) -> None:
    if numbers:
        assert markers(numbers) == markers(sorted(numbers))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 8)), max_size=6))
def test_markers_of_runs_are_those_of_their_numbers(runs: list[tuple[int, int]]) -> None:
    spans = [(first, first + length - 1) for first, length in runs]  # length 0: empty
    numbers = {n for first, last in spans for n in range(first, last + 1)}
    assert span_markers(spans) == (markers(numbers) if numbers else "")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_card_uuids_are_uuid5(name: str) -> None:
    assert card_uuid(name) == str(uuid.uuid5(CARD_NAMESPACE, name))


def _walk(links: dict[str, list[str]], fact_id: str) -> tuple[str, ...]:
    """The provenance walk with no short cut: depth first, each input fact once."""
    out: dict[str, None] = {}
    seen: set[str] = set()
    stack = [fact_id]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in links:
            stack.extend(reversed(links[current]))
        else:
            out[current] = None
    return tuple(out)


FACTS = st.sampled_from("abcdefgh")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(FACTS, st.lists(FACTS, max_size=4), max_size=4), max_size=3),
       FACTS)
def test_provenance_short_cuts_follow_the_walk(maps: list[dict[str, list[str]]],
                                               fact_id: str) -> None:
    merged: dict[str, list[str]] = {}
    for mapping in maps:
        for key, sources in mapping.items():
            merged.setdefault(key, []).extend(sources)
    assert Provenance(*maps).of(fact_id) == _walk(merged, fact_id)
    assert Provenance(*maps).inputs([fact_id, "a"]) == list(
        dict.fromkeys([*_walk(merged, fact_id), *_walk(merged, "a")]))
