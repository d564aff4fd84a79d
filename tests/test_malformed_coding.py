"""A coding out of FHIR's shape that carries a code the rules read is reported, never silent.

``code.coding`` as an object instead of a list, a ``code`` sent as a number, a
CodeableConcept sent as a list: the resource cannot be used (strict validation would drop
the field), but it is reported as ``coding-malformed`` with the resource and the field, in
both languages; the other flags on the chart are unaffected. A malformed coding whose code
the rules do not read is not reported (it could not have mattered).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds.fhir_in.coding import repaired_concepts

from .builders import ATC, NOW, SCT, WHO, condition, obs

TWITCHING = obs("tw", SCT, "82470000")


def _issues(resources: list[dict[str, Any]], lang: str = "en") -> list[Any]:
    result = twitch_cds.evaluate([TWITCHING, *resources], now=NOW, lang=lang)
    return [i for i in result.issues if i.code == "coding-malformed"]


def _weakness_with(concept: Any) -> dict[str, Any]:
    return condition("wk", SCT, "26544005") | {"code": concept}


@pytest.mark.parametrize(("concept", "path", "shown"), [
    ({"coding": {"system": SCT, "code": "26544005"}}, "code.coding", "'26544005'"),
    ({"coding": [{"system": SCT, "code": 26544005}]}, "code.coding", "'26544005'"),
    ({"coding": [{"system": SCT, "code": 26544005.0}]}, "code.coding", "'26544005'"),
    ({"coding": {"system": WHO, "code": "M62.8"}}, "code.coding", "'M62.8'"),
    ([{"coding": [{"system": SCT, "code": "26544005"}]}], "code", "'26544005'"),
])
def test_a_malformed_weakness_coding_is_reported_with_resource_and_field(
        concept: Any, path: str, shown: str) -> None:
    [issue] = _issues([_weakness_with(concept)])
    assert (issue.resource, issue.path, issue.severity, issue.action) == (
        "Condition/wk", path, "error", "skipped")
    assert shown in issue.problem and "the rules read" in issue.problem
    [indonesian] = _issues([_weakness_with(concept)], lang="id")
    assert indonesian.problem != issue.problem and shown in indonesian.problem
    assert "the rules" not in indonesian.problem


def test_the_other_flag_survives_and_the_malformed_one_is_not_used() -> None:
    wasting = condition("wast", SCT, "88092000")
    result = twitch_cds.evaluate(
        [TWITCHING, _weakness_with({"coding": {"system": SCT, "code": "26544005"}}), wasting],
        now=NOW)
    [red] = [c for c in result.cards if c.kind == "red-flag"]
    assert "muscle wasting" in red.summary and "weakness" not in red.summary
    assert "Condition/wk" not in result.evidence[str(red.uuid)]


def test_a_medication_coding_as_an_object_is_reported() -> None:
    statement = {"resourceType": "MedicationStatement", "id": "m", "status": "active",
                 "subject": {"reference": "Patient/p1"},
                 "medicationCodeableConcept": {"coding": {"system": ATC, "code": "C03CA01"}}}
    [issue] = _issues([statement])
    assert (issue.resource, issue.path) == ("MedicationStatement/m",
                                           "medicationCodeableConcept.coding")


def test_an_r5_codeable_reference_concept_is_repaired_in_place() -> None:
    data = {"resourceType": "MedicationStatement",
            "medication": {"concept": {"coding": {"system": ATC, "code": "C03CA01"}}}}
    [(path, kind, concept, repaired)] = list(repaired_concepts(data))
    assert (path, kind) == ("medication.concept.coding", "object")
    assert repaired["medication"]["concept"]["coding"] == [{"system": ATC, "code": "C03CA01"}]
    assert concept == repaired["medication"]["concept"]


@pytest.mark.parametrize("concept", [
    {"coding": {"system": SCT, "code": "38341003"}},   # hypertension: no rule reads it
    {"coding": [{"system": SCT, "code": 38341003}]},
    {"coding": "26544005"},                            # no system, no shape to repair
    {"coding": [True]},
])
def test_a_malformed_coding_the_rules_would_not_read_is_not_reported(concept: Any) -> None:
    assert _issues([_weakness_with(concept)]) == []


def test_well_formed_charts_have_no_such_issue() -> None:
    assert _issues([condition("wk", SCT, "26544005"), condition("who", WHO, "M62.8")]) == []


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["code", "coding", "concept", "valueCodeableConcept",
                                        "system"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                                    | st.text(max_size=5),
                                    lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(st.sampled_from(
                                        ["coding", "code", "system", "concept"]), inner,
                                        max_size=3), max_leaves=10), max_size=4))
def test_repairing_never_raises(data: dict[str, Any]) -> None:
    for path, _, _, repaired in repaired_concepts(data):
        assert path.split(".")[0] in repaired
