"""Units, reference ranges, statuses and dates: only trustworthy data becomes a fact."""

from __future__ import annotations

from typing import Any

import pytest

import twitch_cds

from .builders import (
    ICD,
    LOINC,
    NOW,
    RXNORM,
    SCT,
    condition,
    fired,
    kinds,
    lab,
    med_statement,
    obs,
    twitching,
)


def _low(resource: dict[str, Any], **kwargs: Any) -> bool:
    result = twitch_cds.evaluate([twitching(), resource], now=NOW, **kwargs)
    return "electrolyte-low-with-twitching" in fired(result)


@pytest.mark.parametrize(("code", "value", "unit", "low"), [
    ("2823-3", 3.1, "mmol/L", True),
    ("2823-3", 3.1, "meq/L", True),
    ("2823-3", 3.1, "mEq/L", True),
    ("2823-3", 4.0, "mEq/L", False),
    ("2951-2", 130, "mmol/L", True),
    ("19123-9", 1.5, "mg/dL", True),
    ("19123-9", 0.6, "mmol/L", True),     # 0.6 mmol/L = 1.46 mg/dL
    ("19123-9", 0.8, "mmol/L", False),    # 1.94 mg/dL
    ("19123-9", 1.3, "meq/L", True),      # 1.58 mg/dL
    ("17861-6", 2.0, "mmol/L", True),     # 8.02 mg/dL
    ("17861-6", 2.3, "mmol/L", False),    # 9.22 mg/dL
    ("1994-3", 1.05, "mmol/L", True),     # 4.21 mg/dL, ionized
    ("1994-3", 4.9, "mg/dL", False),
])
def test_units_convert_per_analyte(code: str, value: float, unit: str, low: bool) -> None:
    assert _low(lab("x", code, value, unit)) is low


@pytest.mark.parametrize("unit", ["mg%", "g/L", "", "mmol"])
def test_an_unknown_or_missing_unit_makes_the_value_indeterminate(unit: str) -> None:
    resource = lab("x", "2823-3", 2.0, unit)
    if not unit:
        del resource["valueQuantity"]["unit"], resource["valueQuantity"]["code"]
    result = twitch_cds.evaluate([twitching(), resource], now=NOW)
    assert "electrolyte-low-with-twitching" not in fired(result)
    assert any(i.resource == "Observation/x" and i.action == "value-not-used"
               and i.code == ("unit-unknown" if unit else "unit-missing")
               for i in result.issues)


def test_the_lab_range_is_converted_to_the_canonical_unit() -> None:
    # Magnesium 0.68 mmol/L (1.65 mg/dL) with a lab range of 0.65-1.05 mmol/L: not low,
    # although it is below the 1.7 mg/dL default.
    assert not _low(lab("x", "2601-3", 0.68, "mmol/L", low=0.65, high=1.05))
    assert _low(lab("x", "2601-3", 0.60, "mmol/L", low=0.65, high=1.05))


def test_an_unreadable_range_falls_back_to_the_interpretation() -> None:
    resource = lab("x", "2823-3", 3.4, "mmol/L", low=3.3, high=5.1)
    low = resource["referenceRange"][0]["low"]
    low["code"] = low["unit"] = "??"
    resource["interpretation"] = [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "L"}]}]
    assert _low(resource)


def test_the_default_range_is_a_parameter() -> None:
    resource = lab("x", "2823-3", 3.6, "mmol/L")
    assert not _low(resource)
    assert _low(resource, parameters={"potassium_default_low": 3.7})


@pytest.mark.parametrize(("status", "used"), [
    ("final", True), ("amended", True), ("corrected", True), ("preliminary", True),
    ("entered-in-error", False), ("cancelled", False), ("registered", False),
    ("bogus", False),
])
def test_observation_statuses(status: str, used: bool) -> None:
    result = twitch_cds.evaluate([twitching(status=status)], now=NOW)
    assert bool(result.cards) is used
    if not used:
        assert any(i.resource == "Observation/tw1" and i.path == "status" for i in result.issues)


def test_a_stale_lab_is_not_current_and_says_so() -> None:
    result = twitch_cds.evaluate(
        [twitching(), lab("old", "2823-3", 2.9, "mmol/L", date="2026-09-01T08:00:00Z")], now=NOW)
    assert "electrolyte-depletion" not in kinds(result)
    assert any(i.resource == "Observation/old" and "older than" in i.problem
               for i in result.issues)
    assert "electrolyte-depletion" in kinds(twitch_cds.evaluate(
        [twitching(), lab("old", "2823-3", 2.9, "mmol/L", date="2026-09-01T08:00:00Z")],
        now=NOW, parameters={"lab_stale_days": 120}))


def test_a_lab_without_a_date_is_not_used() -> None:
    resource = lab("x", "2823-3", 2.9, "mmol/L")
    del resource["effectiveDateTime"]
    result = twitch_cds.evaluate([twitching(), resource], now=NOW)
    assert "electrolyte-depletion" not in kinds(result)


def test_a_future_date_is_an_error() -> None:
    result = twitch_cds.evaluate([twitching(date="2027-03-01T00:00:00Z")], now=NOW)
    assert result.cards == []
    assert any(i.resource == "Observation/tw1" and i.severity == "error" for i in result.issues)


def test_old_symptoms_are_history_but_an_active_condition_is_current() -> None:
    assert twitch_cds.evaluate([twitching(date="2026-08-01T00:00:00Z")], now=NOW).cards == []
    assert twitch_cds.evaluate([condition("c", ICD, "R25.3")], now=NOW).cards


def test_an_undated_twitching_observation_is_used_and_reported() -> None:
    resource = twitching()
    del resource["effectiveDateTime"]
    result = twitch_cds.evaluate([resource, obs("w", SCT, "26544005")], now=NOW)
    assert "red-flag" in kinds(result)
    assert any(i.path == "effective[x]" and i.action == "used" for i in result.issues)


@pytest.mark.parametrize("value", [
    {"valueBoolean": False},
    {"valueCodeableConcept": {"coding": [{"system": SCT, "code": "2667000"}]}},
    {"valueCodeableConcept": {"coding": [{"system": SCT, "code": "373067005"}]}},
    {"dataAbsentReason": {"coding": [{"code": "asked-unknown"}]}},
])
def test_an_absent_or_unknown_finding_is_not_a_fact(value: dict[str, Any]) -> None:
    assert twitch_cds.evaluate([twitching(**value)], now=NOW).cards == []


def test_a_condition_without_clinical_status_is_treated_as_active_and_reported() -> None:
    resource = condition("c", ICD, "R25.3")
    del resource["clinicalStatus"]
    result = twitch_cds.evaluate([resource], now=NOW)
    assert result.cards
    assert any(i.path == "clinicalStatus" and i.action == "used" for i in result.issues)


def test_medication_request_statuses() -> None:
    def request(status: str, **extra: Any) -> dict[str, Any]:
        return {"resourceType": "MedicationRequest", "id": "mr", "status": status,
                "intent": "order", "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "8638"}]},
                **extra}

    def steroid(resource: dict[str, Any]) -> bool:
        # a bare RxCUI says nothing of the route: the route-unknown rule speaks for it
        return "side-effect-corticosteroid-route-unknown" in fired(
            twitch_cds.evaluate([twitching(), resource], now=NOW))

    assert steroid(request("active"))
    assert not steroid(request("cancelled"))
    assert not steroid(request("draft"))
    assert not steroid(request("active", doNotPerform=True))
    assert steroid(request("completed", authoredOn="2026-11-10"))
    assert not steroid(request("completed", authoredOn="2026-06-10"))
    assert not steroid(request("completed"))


def test_medication_by_reference_to_a_contained_or_bundled_medication() -> None:
    contained = med_statement("ms", None)
    del contained["medicationCodeableConcept"]
    contained["medicationReference"] = {"reference": "#m"}
    contained["contained"] = [{"resourceType": "Medication", "id": "m", "code": {
        "coding": [{"system": RXNORM, "code": "4603"}]}}]
    assert "side-effect-diuretic" in fired(twitch_cds.evaluate([twitching(), contained], now=NOW))
    bundled = med_statement("ms", None)
    del bundled["medicationCodeableConcept"]
    bundled["medicationReference"] = {"reference": "Medication/m2"}
    medication = {"resourceType": "Medication", "id": "m2", "ingredient": [{
        "itemCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                                            "code": "G03CA03"}]}}]}
    result = twitch_cds.evaluate([twitching(), bundled, medication], now=NOW)
    assert "side-effect-estrogen" in fired(result)
    dangling = dict(bundled, id="ms3")
    dangling["medicationReference"] = {"reference": "Medication/missing"}
    result = twitch_cds.evaluate([twitching(), dangling], now=NOW)
    assert any(i.resource == "MedicationStatement/ms3" for i in result.issues)


def test_labs_use_loinc_only() -> None:
    result = twitch_cds.evaluate([twitching(), obs("x", LOINC, "2160-0", valueQuantity={
        "value": 0.2, "unit": "mg/dL"})], now=NOW)
    assert "electrolyte-depletion" not in kinds(result)


@pytest.mark.parametrize(("value", "chronic"), [
    ({"value": 8, "unit": "wk", "system": "http://unitsofmeasure.org", "code": "wk"}, True),
    ({"value": 3, "unit": "months"}, True),
    ({"value": 10, "unit": "d"}, False),
])
def test_how_long_twitching_has_lasted_as_a_quantity(value: dict[str, Any], chronic: bool) -> None:
    result = twitch_cds.evaluate([twitching(valueQuantity=value)], now=NOW)
    assert ("red-flag-chronic" in fired(result)) is chronic
    assert result.cards  # present either way


@pytest.mark.parametrize(("text", "present"), [("yes, both calves", True), ("No", False),
                                               ("tidak", False)])
def test_a_finding_recorded_as_text(text: str, present: bool) -> None:
    assert bool(twitch_cds.evaluate([twitching(valueString=text)], now=NOW).cards) is present


def test_a_product_name_is_enough_for_any_ingredient_in_the_value_set() -> None:
    result = twitch_cds.evaluate(
        [twitching(), med_statement("m", text="Prednisolone 5 MG Oral Tablet")], now=NOW)
    assert "side-effect-corticosteroid" in fired(result)
