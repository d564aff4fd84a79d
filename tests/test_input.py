"""FHIR in: every input shape, R4/R4B and R5, lenient validation, and clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

import twitch_cds
from twitch_cds import InputError

from .builders import (
    ATC,
    ICD,
    NOW,
    RXNORM,
    SCT,
    condition,
    fired,
    kinds,
    med_statement,
    obs,
    twitching,
)

RED_FLAG = [twitching(), obs("w", SCT, "26544005")]


def _bundle(resources: list[dict[str, Any]], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


@pytest.mark.parametrize("shape", ["bundle", "list", "json", "bytes", "models", "nested"])
def test_every_input_shape_gives_the_same_cards(shape: str) -> None:
    bundle = _bundle(RED_FLAG)
    data: Any = {
        "bundle": bundle,
        "list": RED_FLAG,
        "json": json.dumps(bundle),
        "bytes": json.dumps(bundle).encode(),
        "nested": _bundle([_bundle(RED_FLAG, "searchset")], "batch-response"),
    }.get(shape)
    if shape == "models":
        from fhir.resources.R4B.observation import Observation

        data = [Observation.model_validate(r) for r in RED_FLAG]
    result = twitch_cds.evaluate(data, now=NOW)
    assert kinds(result)[0] == "red-flag"
    assert "Observation/w" in result.evidence[str(result.cards[0].uuid)]


def test_one_resource() -> None:
    assert twitch_cds.evaluate(twitching(), now=NOW).cards


def test_cds_hooks_request_with_prefetch_and_a_failed_key() -> None:
    request = {
        "hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "observations": _bundle(RED_FLAG, "searchset"),
            "medications": {"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "processing", "diagnostics": "timeout"}]},
            "conditions": None,
        },
    }
    result = twitch_cds.evaluate(request, now=NOW)
    assert result.patient == "Patient/p1"
    assert kinds(result)[0] == "red-flag"
    problems = {i.resource: i.problem for i in result.issues}
    assert "timeout" in problems["prefetch.medications"]
    assert "prefetch.conditions" in problems


@pytest.mark.parametrize(("data", "message"), [
    ("not json", "not JSON"),
    (b"\xff\xfe\x00", "UTF-8"),
    ({"foo": 1}, "without resourceType"),
    (42, "cannot read input of type int"),
    ({"hook": "patient-view", "context": "x"}, "not a valid CDS Hooks request"),
])
def test_unreadable_input_raises_input_error(data: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        twitch_cds.evaluate(data, now=NOW)
    assert issubclass(InputError, ValueError)


def test_entries_that_are_not_resources_are_reported() -> None:
    result = twitch_cds.evaluate({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:x"}, {"resource": {"id": "no-type"}}, {"resource": twitching()}]},
        now=NOW)
    assert result.cards
    assert len([i for i in result.issues if i.action == "skipped"]) == 2


def test_other_resource_types_are_ignored_without_error() -> None:
    result = twitch_cds.evaluate([twitching(), {"resourceType": "Encounter", "id": "e",
                                                "status": "bogus"}], now=NOW)
    assert result.cards and result.issues == []


def test_a_cosmetic_defect_never_hides_a_red_flag() -> None:
    weakness = obs("w", SCT, "26544005", foo="bar", note="not a list")
    result = twitch_cds.evaluate([twitching(), weakness], now=NOW)
    assert kinds(result)[0] == "red-flag"
    lenient = [i for i in result.issues if i.resource == "Observation/w"]
    assert {i.path for i in lenient} == {"foo", "note"}
    assert all(i.action == "used-leniently" and i.code == "validation-lenient" for i in lenient)


def test_a_bad_value_in_a_read_field_is_removed_and_the_rest_used() -> None:
    bad = obs("k", "http://loinc.org", "2823-3", valueQuantity={"value": "abc", "unit": "mmol/L"})
    result = twitch_cds.evaluate([twitching(), bad, obs("w", SCT, "26544005")], now=NOW)
    assert kinds(result)[0] == "red-flag"
    assert any(i.resource == "Observation/k" and i.path == "valueQuantity.value"
               and i.action == "value-not-used" and i.code == "validation-failed"
               for i in result.issues)


def test_a_malformed_resource_does_not_hide_another_resources_red_flag() -> None:
    broken = {"resourceType": "Observation", "id": "b", "status": "final", "code": {"text": "x"},
              "valueString": "a", "valueBoolean": True}
    result = twitch_cds.evaluate([broken, *RED_FLAG], now=NOW)
    assert kinds(result)[0] == "red-flag"


def test_r4_and_r5_medication_statements() -> None:
    r4 = med_statement("ms", [{"system": RXNORM, "code": "4603"}])
    r5 = {"resourceType": "MedicationStatement", "id": "ms5", "status": "recorded",
          "medication": {"concept": {"coding": [{"system": ATC, "code": "H02AB07"}]}},
          "subject": {"reference": "Patient/p1"}}
    result = twitch_cds.evaluate([twitching(), r4, r5], now=NOW)
    assert {"side-effect-diuretic", "side-effect-corticosteroid"} <= fired(result)
    assert not [i for i in result.issues if i.severity != "information"]


def test_r5_recorded_statement_that_ended_long_ago_is_not_current() -> None:
    r5 = {"resourceType": "MedicationStatement", "id": "ms5", "status": "recorded",
          "medication": {"concept": {"coding": [{"system": ATC, "code": "H02AB07"}]}},
          "effectivePeriod": {"start": "2025-01-01", "end": "2025-02-01"},
          "subject": {"reference": "Patient/p1"}}
    assert "side-effect-corticosteroid" not in fired(twitch_cds.evaluate([twitching(), r5],
                                                                         now=NOW))


def test_r5_not_taking_adherence() -> None:
    r5 = {"resourceType": "MedicationStatement", "id": "ms5", "status": "recorded",
          "medication": {"concept": {"coding": [{"system": ATC, "code": "H02AB07"}]}},
          "adherence": {"code": {"coding": [{"code": "not-taking"}]}},
          "subject": {"reference": "Patient/p1"}}
    assert "side-effect-corticosteroid" not in fired(twitch_cds.evaluate([twitching(), r5],
                                                                         now=NOW))


def test_data_of_another_patient_is_not_used() -> None:
    result = twitch_cds.evaluate(
        [{"resourceType": "Patient", "id": "p1"}, twitching(), obs("w", SCT, "26544005",
                                                                   patient="someone-else")],
        now=NOW)
    assert "red-flag" not in kinds(result)
    assert any(i.resource == "Observation/w" and i.action == "skipped" for i in result.issues)


def test_the_cds_hooks_context_names_the_patient() -> None:
    request = {"hook": "patient-view", "context": {"patientId": "p2"},
               "prefetch": {"all": _bundle([twitching(patient="p2"), twitching("other")])}}
    result = twitch_cds.evaluate(request, now=NOW)
    assert result.patient == "Patient/p2"
    assert any(i.resource == "Observation/other" for i in result.issues)


def test_absolute_and_urn_references() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:aaa", "resource": {"resourceType": "Patient", "id": "p9"}},
        {"resource": dict(twitching(), subject={"reference": "urn:uuid:aaa"})},
        {"resource": dict(condition("c", ICD, "M62.81"),
                          subject={"reference": "https://ehr.example.org/fhir/Patient/p9"})},
    ]}
    result = twitch_cds.evaluate(bundle, now=NOW)
    assert result.patient == "Patient/p9"
    assert kinds(result)[0] == "red-flag"
