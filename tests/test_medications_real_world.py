"""Medicines as EHRs send them (issue 15): product codes, Indonesian names, SATUSEHAT shapes
and route codes, MedicationDispense, and nothing silently unclassified."""

from __future__ import annotations

from typing import Any

import pytest

import twitch_cds
from tests.builders import NOW, RXNORM, SCT, condition, kinds, med_statement, twitching
from twitch_cds.cli import _text

KFA = "http://sys-ids.kemkes.go.id/kfa"
ATC_ROUTE = "http://www.whocc.no/atc"


def _classes(result: twitch_cds.EvaluationResult) -> set[str]:
    return {f.facts[k].id.split("#")[-1] for f in result.trace.fired for k in f.facts
            if "#" in f.facts[k].id and f.facts[k].id.startswith("Medication")}


def _evidence(result: twitch_cds.EvaluationResult) -> set[str]:
    return {ref for refs in result.evidence.values() for ref in refs}


def _codes(result: twitch_cds.EvaluationResult) -> list[str]:
    return [i.code for i in result.issues]


@pytest.mark.parametrize("name,drug_class", [
    ("Furosemid 40 mg Tablet", "diuretic"),
    ("Hidroklorotiazid 25 mg", "diuretic"),
    ("Spironolakton 25 mg tablet", "diuretic"),
    ("Deksametason 0,5 mg", "corticosteroid"),
    ("Deksametasone inj 5 mg/ml", "corticosteroid"),
    ("Metilprednisolon 4 mg tablet", "corticosteroid"),
    ("Prednison 5 mg", "corticosteroid"),
    ("Hidrokortison 10 mg tablet", "corticosteroid"),
    ("Etinilestradiol 0,03 mg / Levonorgestrel 0,15 mg", "estrogen"),
    ("Pil KB Andalan", "estrogen"),
    ("Microgynon 30", "estrogen"),
])
def test_indonesian_names_give_their_class(name: str, drug_class: str) -> None:
    statement = med_statement("m", [{"system": KFA, "code": "93000000", "display": name}])
    result = twitch_cds.evaluate([twitching(), statement], now=NOW)
    assert drug_class in _classes(result), (name, _codes(result))
    assert "unclassified-medication" not in _codes(result)


def test_a_brand_that_is_not_always_estrogen_is_reported_not_guessed() -> None:
    """"Andalan" alone is also a progestin-only pill (Andalan Laktasi): never an estrogen
    card by guess, always an input issue."""
    statement = med_statement("m", [{"system": KFA, "code": "93000009",
                                     "display": "Andalan Laktasi"}])
    result = twitch_cds.evaluate([twitching(), statement], now=NOW)
    assert "estrogen" not in _classes(result)
    assert _codes(result).count("unclassified-medication") == 1


def test_a_kfa_medication_is_read_by_its_ingredient_when_its_name_is_a_brand() -> None:
    medication = {"resourceType": "Medication", "id": "med",
                  "code": {"coding": [{"system": KFA, "code": "93000010",
                                       "display": "Lasik 40 mg Tablet"}]},
                  "ingredient": [{"itemCodeableConcept": {"coding": [
                      {"system": KFA, "code": "91000010", "display": "Furosemid"}]}}]}
    request = {"resourceType": "MedicationRequest", "id": "rx", "status": "active",
               "intent": "order", "subject": {"reference": "Patient/p1"},
               "medicationReference": {"reference": "Medication/med"}}
    result = twitch_cds.evaluate([twitching(), medication, request], now=NOW)
    assert "diuretic" in _classes(result)


def test_a_product_code_alone_gives_the_class_and_its_name() -> None:
    statement = med_statement("hctz", [{"system": RXNORM, "code": "310798"}])
    result = twitch_cds.evaluate([twitching(), statement], now=NOW)
    assert "diuretic" in _classes(result)
    details = " ".join(c.detail or "" for c in result.cards)
    assert "hydrochlorothiazide 25 MG Oral Tablet" in details


def test_a_corticosteroid_product_code_alone_is_systemic_by_its_name() -> None:
    """The RxNorm name of the product (its dose form: Oral Tablet) tells the route when
    the chart sends the code alone."""
    statement = med_statement("pred", [{"system": RXNORM, "code": "312617"}])
    result = twitch_cds.evaluate([twitching(), statement], now=NOW)
    fired = {f.rule_id for f in result.trace.fired}
    assert "side-effect-corticosteroid" in fired
    assert "side-effect-corticosteroid-route-unknown" not in fired


@pytest.mark.parametrize("route,expected", [
    ({"system": ATC_ROUTE, "code": "O", "display": "Oral"}, "systemic"),
    ({"system": ATC_ROUTE, "code": "O"}, "systemic"),
    ({"system": SCT, "code": "26643006"}, "systemic"),
    ({"system": ATC_ROUTE, "code": "Inhal"}, "local"),
    ({"system": SCT, "code": "46713006"}, "local"),
    (None, "unknown"),
])
def test_coded_routes_decide_systemic(route: dict[str, str] | None, expected: str) -> None:
    dosage = [{"route": {"coding": [route]}}] if route else []
    statement = med_statement("d", [{"system": KFA, "code": "93000001",
                                     "display": "Deksametason 0,5 mg"}], dosage=dosage)
    result = twitch_cds.evaluate([twitching(), statement], now=NOW)
    fired = {f.rule_id for f in result.trace.fired}
    if expected == "local":
        assert "not-systemic" in _codes(result)
        assert "corticosteroid" not in _classes(result)
    elif expected == "systemic":
        assert "side-effect-corticosteroid" in fired
        assert "side-effect-corticosteroid-route-unknown" not in fired
    else:
        assert "side-effect-corticosteroid-route-unknown" in fired


def _dispense(status: str, handed: str | None = "2026-11-20T10:00:00+07:00") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationDispense", "id": "disp", "status": status,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": KFA, "code": "93000000",
                                                  "display": "Furosemid 40 mg Tablet"}]}}
    if handed:
        resource["whenHandedOver"] = handed
    return resource


@pytest.mark.parametrize("status,handed,exposed,issue", [
    ("completed", "2026-11-20T10:00:00+07:00", True, None),
    ("completed", "2025-01-20T10:00:00+07:00", False, "stale"),
    ("completed", None, False, "date-missing"),
    ("in-progress", None, True, None),
    ("cancelled", "2026-11-20T10:00:00+07:00", False, "status-unusable"),
])
def test_medication_dispense(status: str, handed: str | None, exposed: bool,
                             issue: str | None) -> None:
    result = twitch_cds.evaluate([twitching(), _dispense(status, handed)], now=NOW)
    assert ("MedicationDispense/disp" in _evidence(result)) is exposed
    if issue:
        assert issue in _codes(result)


def test_an_unknown_current_medication_is_reported_with_its_coding() -> None:
    statement = med_statement("x", [{"system": "urn:local:drugs", "code": "A17"}])
    result = twitch_cds.evaluate([twitching(), statement], now=NOW)
    issues = [i for i in result.issues if i.code == "unclassified-medication"]
    assert [i.resource for i in issues] == ["MedicationStatement/x"]
    assert "urn:local:drugs|A17" in issues[0].problem
    assert issues[0].severity == "warning"
    assert result.unclassified == 1


def test_known_drugs_of_no_class_and_stopped_ones_are_not_reported() -> None:
    chart = [twitching(),
             med_statement("aml", [{"system": KFA, "code": "1", "display": "Amlodipin 5 mg"}]),
             med_statement("met", text="metformin 500 mg twice daily"),
             med_statement("lis", [{"system": RXNORM, "code": "314076"}]),
             med_statement("old", [{"system": "urn:local:drugs", "code": "A17"}],
                           status="stopped")]
    result = twitch_cds.evaluate(chart, now=NOW)
    assert "unclassified-medication" not in _codes(result)
    assert result.unclassified == 0


def test_conditions_outside_every_value_set_are_counted_as_information() -> None:
    chart = [twitching(),
             condition("htn", SCT, "59621000"),
             condition("local", "urn:local:dx", "X1"),
             condition("old", SCT, "59621000", clinical="resolved")]
    result = twitch_cds.evaluate(chart, now=NOW)
    found = {i.resource: i.severity for i in result.issues if i.code == "unclassified-condition"}
    assert found == {"Condition/htn": "information", "Condition/local": "warning"}
    assert result.unclassified == 2


def test_a_malformed_coding_with_a_red_flag_code_is_reported() -> None:
    weakness = condition("weak", SCT, "26544005")
    weakness["code"]["coding"] = weakness["code"]["coding"][0]  # an object, not a list
    numb = condition("numb", SCT, "44077006")
    result = twitch_cds.evaluate([twitching(), weakness, numb], now=NOW)
    malformed = [i for i in result.issues if i.code == "coding-malformed"]
    assert [(i.resource, i.path, i.severity) for i in malformed] == [
        ("Condition/weak", "code.coding", "error")]
    assert "red-flag" in kinds(result)  # the other flag survives


@pytest.mark.parametrize("lang,words", [("en", "could not be classified"),
                                        ("id", "tidak dapat diklasifikasikan")])
def test_no_cards_text_says_how_many_records_were_not_classified(lang: str,
                                                                  words: str) -> None:
    chart = [condition("local", "urn:local:dx", "X1"),
             med_statement("x", [{"system": "urn:local:drugs", "code": "A17"}])]
    result = twitch_cds.evaluate(chart, now=NOW, lang=lang)  # type: ignore[arg-type]
    assert not result.cards and result.unclassified == 2
    text = _text(result, lang)  # type: ignore[arg-type]
    assert f"2 {'record(s)' if lang == 'en' else 'rekam data'}" in text and words in text


def test_an_unresolved_medication_reference_is_reported_once() -> None:
    request = {"resourceType": "MedicationRequest", "id": "rx", "status": "active",
               "intent": "order", "subject": {"reference": "Patient/p1"},
               "medicationReference": {"reference": "Medication/absent"}}
    result = twitch_cds.evaluate([twitching(), request], now=NOW)
    assert _codes(result).count("reference-unresolved") == 1
    assert "unclassified-medication" not in _codes(result)


def test_a_current_condition_with_no_code_is_a_warning() -> None:
    uncoded = condition("dx", SCT, "1")
    uncoded["code"] = {"text": "Darah tinggi"}
    result = twitch_cds.evaluate([twitching(), uncoded], now=NOW)
    found = [(i.severity, i.path) for i in result.issues if i.code == "unclassified-condition"]
    assert found == [("warning", "code")]


def test_the_json_cli_says_the_count_on_stderr(tmp_path: Any, capsys: Any) -> None:
    import json

    from twitch_cds.cli import main

    chart = tmp_path / "chart.json"
    chart.write_text(json.dumps([twitching(), med_statement(
        "x", [{"system": "urn:local:drugs", "code": "A17"}])]))
    assert main(["evaluate", str(chart), "--now", NOW, "--format", "json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["cards"]
    assert "1 record(s) could not be classified" in out.err
