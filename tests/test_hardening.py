"""Issue 7: one bad resource costs only itself. Each reproduction is appended to example 04,
whose red-flag card must survive; the bad resource is reported with a stable issue code."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

import twitch_cds
from twitch_cds import InputError

from .builders import ICD, LOINC, NOW, SCT, condition, fired, kinds, lab, obs, twitching
from .cds_checks import check_response

EXAMPLE = Path(__file__).parent.parent / "examples" / "04-red-flags-als-suspect.json"


def _example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


def _with(*resources: dict[str, Any]) -> dict[str, Any]:
    bundle = _example()
    bundle["entry"].extend({"resource": r} for r in resources)
    return bundle


def _red_flag_survives(data: Any) -> twitch_cds.EvaluationResult:
    result = twitch_cds.evaluate(data, now=NOW)
    assert kinds(result)[0] == "red-flag"
    check_response(json.loads(json.dumps(result.to_cds_hooks(), ensure_ascii=False)))
    return result


def _codes(result: twitch_cds.EvaluationResult, resource: str | None = None) -> set[str]:
    return {i.code for i in result.issues if resource is None or i.resource == resource}


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(levels):
        node = {"url": "http://example.org/nest", "extension": [node]}
    return node


def _weakness(rid: str = "w2", **extra: Any) -> dict[str, Any]:
    return obs(rid, SCT, "26544005", patient="hendra", **extra)


def test_a_coding_that_is_a_number_is_read_as_no_coding() -> None:
    bad = {"resourceType": "Observation", "id": "x", "status": "final", "code": {"coding": 7}}
    _red_flag_survives(_with(bad))


@pytest.mark.parametrize("concept", [
    {"coding": "abc"}, {"coding": [7, None, "x", {"system": 1, "code": ["a"]}]}, [1, 2],
    {"coding": [{"system": SCT, "code": {"a": 1}}]}, {"text": 5}, "text", None,
])
def test_codeable_concepts_of_any_shape_are_tolerated(concept: Any) -> None:
    bad = {"resourceType": "Observation", "id": "x", "status": "final", "code": concept,
           "valueCodeableConcept": concept}
    _red_flag_survives(_with(bad, {"resourceType": "Condition", "id": "c", "code": concept}))


def test_an_extension_nested_200_deep_is_removed_and_reported() -> None:
    result = _red_flag_survives(_with(_weakness(extension=[_deep(200)])))
    issue = next(i for i in result.issues if i.resource == "Observation/w2")
    assert (issue.code, issue.path, issue.action) == ("nesting-too-deep", "extension",
                                                      "used-leniently")
    assert "Observation/w2" in {e for refs in result.evidence.values() for e in refs}


@pytest.mark.parametrize("depth", [100, 300, 2000])
def test_a_deeply_nested_read_field_costs_only_its_resource(depth: int) -> None:
    result = _red_flag_survives(_with(_weakness(valueCodeableConcept={
        "coding": [{"system": SCT, "code": "x", "extension": [_deep(depth)]}]})))
    if depth > 200:  # too deep for fhir.resources to validate: taken out, and reported
        assert "nesting-too-deep" in _codes(result, "Observation/w2")


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 100_000, "nested too deeply"),
    ('{"resourceType": "Observation", "valueInteger": ' + "9" * 5000 + "}", "cannot be read"),
])
def test_whole_input_failures_are_input_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        twitch_cds.evaluate(text, now=NOW)


def test_a_malformed_primitive_extension_is_reported() -> None:
    result = _red_flag_survives(_with(_weakness(_status="null")))
    assert "validation-failed" in _codes(result, "Observation/w2")


def test_a_lone_surrogate_id_is_reported_and_never_reaches_the_engine() -> None:
    bad = dict(_weakness(), id="\ud800")
    result = _red_flag_survives(_with(bad))
    flagged = next(i for i in result.issues if i.code == "id-unusable")
    assert flagged.resource.startswith("Observation at input.entry[5]")
    json.dumps([str(i) for i in result.issues], ensure_ascii=False).encode("utf-8")


def test_strings_that_reach_facts_and_cards_are_safe() -> None:
    odd = "\u202eevil\x00\ud800\n"
    result = _red_flag_survives(_with(
        {"resourceType": "Patient", "id": "hendra", "gender": odd, "birthDate": odd},
        {**_weakness("w3"), "code": {"coding": [{"system": SCT, "code": "26544005",
                                                 "display": odd * 1000}]}}))
    text = json.dumps(result.to_cds_hooks(), ensure_ascii=False)
    text.encode("utf-8")
    assert "\x00" not in text and "\ud800" not in text
    for issue in result.issues:
        str(issue).encode("utf-8")


@pytest.mark.parametrize("value", [10**400, float("inf"), float("nan"), -5, 1e308])
def test_huge_and_impossible_potassium_values_are_not_used(value: float) -> None:
    potassium = lab("k", "2823-3", 3.0, "mmol/L", patient="hendra")
    potassium["valueQuantity"]["value"] = value
    result = _red_flag_survives(_with(potassium))
    assert "electrolyte-depletion" not in kinds(result)
    assert _codes(result, "Observation/k") & {"implausible-value", "value-unreadable",
                                              "validation-failed"}


def test_a_negative_potassium_is_implausible_not_low() -> None:
    result = twitch_cds.evaluate([twitching(), lab("k", "2823-3", -5, "mmol/L")], now=NOW)
    assert "electrolyte-low-with-twitching" not in fired(result)
    issue = next(i for i in result.issues if i.resource == "Observation/k")
    assert (issue.code, issue.action) == ("implausible-value", "value-not-used")


def test_a_plausible_low_potassium_still_counts() -> None:
    result = twitch_cds.evaluate([twitching(), lab("k", "2823-3", 2.9, "mmol/L")], now=NOW)
    assert "electrolyte-low-with-twitching" in fired(result)


@pytest.mark.parametrize("system", [ICD, "http://www.whocc.no/atc"])
def test_a_giant_code_costs_no_more_than_a_short_one(system: str) -> None:
    giant = "G" * 300_000
    bad = condition("big", system, giant, patient="hendra")
    started = time.perf_counter()
    _red_flag_survives(_with(bad, {"resourceType": "MedicationStatement", "id": "m",
                                   "status": "active", "medicationCodeableConcept": {
                                       "coding": [{"system": system, "code": giant}]}}))
    assert time.perf_counter() - started < 1.0


def test_an_unreferenced_patient_does_not_override_the_named_one() -> None:
    bundle = _example()
    bundle["entry"][0]["resource"]["id"] = "stranger"
    result = _red_flag_survives(bundle)
    assert result.patient == "Patient/hendra"
    assert "patient-unreferenced" in _codes(result, "Patient/stranger")


def test_a_patient_alone_names_the_patient() -> None:
    result = twitch_cds.evaluate([{"resourceType": "Patient", "id": "p1"},
                                  {**twitching(), "subject": None}], now=NOW)
    assert result.patient == "Patient/p1" and result.cards


def test_a_bad_envelope_field_still_evaluates_the_prefetch() -> None:
    request = {"hook": "patient-view", "hookInstance": 123,
               "context": {"patientId": "hendra"}, "prefetch": {"all": _example()}}
    result = _red_flag_survives(request)
    issue = next(i for i in result.issues if i.code == "request-invalid")
    assert issue.path == "hookInstance"


def test_an_envelope_with_nothing_to_read_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not a valid CDS Hooks request"):
        twitch_cds.evaluate({"hook": "patient-view", "hookInstance": 123, "context": {}},
                            now=NOW)


def test_a_misspelt_resource_type_is_reported() -> None:
    misspelt = dict(twitching(), resourceType="Observaton")
    result = twitch_cds.evaluate([misspelt, obs("w", SCT, "26544005")], now=NOW)
    assert result.cards == []
    issue = next(i for i in result.issues if i.code == "unknown-resource-type")
    assert issue.severity == "error" and "Observaton" in issue.resource


def test_a_coding_without_system_in_a_value_set_is_reported() -> None:
    bare = {**twitching(), "code": {"coding": [{"code": "82470000"}]}}
    result = twitch_cds.evaluate([bare, obs("w", SCT, "26544005")], now=NOW)
    assert "code-without-system" in _codes(result, "Observation/tw1")


def test_a_finding_given_only_as_text_is_reported() -> None:
    text_only = {**twitching(), "code": {"text": "Fasciculation of both calves"}}
    result = twitch_cds.evaluate([text_only], now=NOW)
    assert "text-only" in _codes(result, "Observation/tw1")


@pytest.mark.parametrize(("onset", "chronic"), [
    ({"onsetAge": {"value": 60, "unit": "a", "system": "http://unitsofmeasure.org",
                   "code": "a"}}, True),
    ({"onsetRange": {"low": {"value": 60, "code": "a"}, "high": {"value": 64, "code": "a"}}},
     True),
    ({"onsetString": "2026-11-20"}, False),
    ({"onsetString": "2026-06-01"}, True),
])
def test_condition_onsets_dated_with_the_birth_date(onset: dict[str, Any], chronic: bool) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1961-02-01"}
    fasciculation = condition("f", ICD, "R25.3", **onset)
    result = twitch_cds.evaluate([patient, fasciculation], now=NOW)
    assert ("red-flag-chronic" in fired(result)) is chronic


def test_an_onset_that_cannot_be_dated_is_reported() -> None:
    fasciculation = condition("f", ICD, "R25.3", onsetString="since the summer")
    result = twitch_cds.evaluate([fasciculation], now=NOW)
    assert "onset-unusable" in _codes(result, "Condition/f")
    assert result.cards  # the condition itself still counts


def test_the_normal_reference_range_is_chosen_not_the_first() -> None:
    potassium = lab("k", "2823-3", 3.3, "mmol/L")
    normal = {"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"},
              "type": {"coding": [{"code": "normal"}]}}
    treatment = {"low": {"value": 3.0, "unit": "mmol/L"}, "high": {"value": 6.0, "unit": "mmol/L"},
                 "type": {"coding": [{"code": "treatment"}]}}
    potassium["referenceRange"] = [treatment, normal]
    result = twitch_cds.evaluate([twitching(), potassium], now=NOW)
    assert "low-electrolyte-lab-range" in fired(result)


def test_ranges_that_cannot_be_told_apart_are_reported() -> None:
    potassium = lab("k", "2823-3", 3.3, "mmol/L")
    potassium["referenceRange"] = [{"low": {"value": 3.5, "unit": "mmol/L"}},
                                   {"low": {"value": 3.0, "unit": "mmol/L"}}]
    result = twitch_cds.evaluate([twitching(), potassium], now=NOW)
    assert "range-unusable" in _codes(result, "Observation/k")


@pytest.mark.parametrize("flag", ["LL", "L"])
def test_a_low_flag_counts_when_the_unit_is_unknown(flag: str) -> None:
    potassium = lab("k", "2823-3", 12, "mg%", interpretation=[{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": flag}]}])
    result = twitch_cds.evaluate([twitching(), potassium], now=NOW)
    # L: a low potassium; LL: a critical one, on the critical card instead
    assert {"L": "electrolyte-low-with-twitching", "LL": "critical-electrolyte-low"}[flag] \
        in fired(result)
    assert "unit-unknown" in _codes(result, "Observation/k")
    assert "12" not in (result.cards[0].detail or "").split("Observation/k")[-1][:40]


def test_every_issue_has_a_documented_code() -> None:
    documented = (Path(__file__).parent.parent / "docs" / "input-profile.md").read_text()
    from typing import get_args

    from twitch_cds.issues import IssueCode

    for code in get_args(IssueCode):
        assert f"`{code}`" in documented, code


def test_an_exception_in_one_resource_is_reported_and_the_rest_evaluated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from twitch_cds.fhir_in.normalise import Normaliser

    original = Normaliser._condition

    def failing(self: Normaliser, v: Any) -> None:
        if v.raw.label == "Condition/weakness":
            raise ZeroDivisionError("boom: secret resource content")
        original(self, v)

    monkeypatch.setattr(Normaliser, "_condition", failing)
    result = _red_flag_survives(_example())
    issue = next(i for i in result.issues if i.resource == "Condition/weakness")
    assert issue.code == "unreadable-resource" and "ZeroDivisionError" in issue.problem
    assert "secret" not in issue.problem


def test_other_patients_data_is_reported_with_its_code() -> None:
    result = twitch_cds.evaluate(
        [{"resourceType": "Patient", "id": "p1"}, twitching(),
         obs("w", SCT, "26544005", patient="someone-else")], now=NOW)
    assert "other-patient" in _codes(result, "Observation/w")


def test_issue_codes_for_stale_future_and_status() -> None:
    result = twitch_cds.evaluate([
        twitching(),
        lab("old", "2823-3", 3.0, "mmol/L", date="2026-01-01"),
        lab("future", "2823-3", 3.0, "mmol/L", date="2027-06-01"),
        obs("eie", SCT, "26544005", status="entered-in-error"),
        lab("nounit", LOINC and "2823-3", 3.0, "mg%"),
    ], now=NOW)
    assert _codes(result, "Observation/old") == {"stale"}
    assert _codes(result, "Observation/future") == {"future-date"}
    assert _codes(result, "Observation/eie") == {"status-unusable"}
    assert _codes(result, "Observation/nounit") == {"unit-unknown"}
    assert not fired(result) & {"electrolyte-low-with-twitching"}
    copy.deepcopy(result)


def test_every_plausibility_limit_is_a_parameter_with_a_rationale(knowledge: Any) -> None:
    measurements = knowledge.measurements
    for m in [*measurements.analytes.values(), *measurements.intakes.values()]:
        assert m.plausible_low and m.plausible_high
        for name in (m.plausible_low, m.plausible_high):
            assert knowledge.parameters.parameters[name].rationale


def test_no_cards_output_says_what_was_read_not_that_there_is_no_twitching(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from twitch_cds.cli import main

    misspelt = dict(twitching(), resourceType="Observaton")
    path = tmp_path / "chart.json"
    path.write_text(json.dumps([misspelt, obs("w", SCT, "26544005")]))
    assert main(["evaluate", str(path), "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert "No cards: 1 usable fact(s) were read" in out
    assert "1 input issue(s) below" in out and "unknown-resource-type" in out
    assert "no current twitching" not in out


def test_a_gender_that_is_not_a_code_is_not_used() -> None:
    for gender, code in (("\ud800x", "validation-failed"), ("male female", "value-unreadable")):
        result = twitch_cds.evaluate(
            [{"resourceType": "Patient", "id": "p1", "gender": gender}, twitching()], now=NOW)
        assert code in _codes(result, "Patient/p1")
        assert result.cards and gender not in str(result.trace)


@pytest.mark.parametrize("date", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_dates_at_the_ends_of_the_calendar_are_not_dates(date: str) -> None:
    result = _red_flag_survives(_with(_weakness("w4", date=date)))
    assert "date-invalid" in _codes(result, "Observation/w4")
