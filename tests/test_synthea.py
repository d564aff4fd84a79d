"""Tested on data nobody here wrote: four real Synthea patients (tests/fixtures/synthea,
Apache-2.0) and every medication code they carry, through ``evaluate()`` and ``screen``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import twitch_cds
from tests.builders import NOW, RXNORM, twitching
from twitch_cds.screening import screen

FIXTURE = Path(__file__).parent / "fixtures" / "synthea"
HCTZ_PATIENT = "6a4160eb-a793-2f86-2302-378626f46cce"
BUDESONIDE_PATIENT = "fb7c882a-f897-e7c5-67e0-825e7fd55d15"

BY_CODE: dict[str, str | None] = {
    # real RxNorm codes our tables hold: the class each gives alone, or None (known, no class)
    "310798": "diuretic",        # hydrochlorothiazide 25 MG Oral Tablet
    "749762": "estrogen",        # Seasonique 91 Day Pack (ethinyl estradiol / levonorgestrel)
    "978950": "estrogen",        # Natazia 28 Day Pack (estradiol valerate / dienogest)
    "1367439": "estrogen",       # NuvaRing (ethinyl estradiol / etonogestrel)
    "748962": None,              # Camila (norethindrone only)
    "807283": None,              # Mirena (levonorgestrel IUD)
    "1856546": None,             # Kyleena (levonorgestrel IUD)
    "389221": None,              # etonogestrel implant
    "314076": None,              # lisinopril
}
BY_NAME: dict[str, str | None] = {
    # real codes our tables do not hold: read by Synthea's display; alone, reported
    "351109": "corticosteroid",  # budesonide inhalation suspension: then not systemic
    "314231": None,              # simvastatin
    "849574": None,              # naproxen
    "313782": None,              # acetaminophen
    "209387": None,              # acetaminophen [Tylenol]
    "351137": None,              # albuterol
    "562251": None,              # amoxicillin / clavulanate
    "1043400": None,             # acetaminophen / dextromethorphan / doxylamine
    "834102": None,              # penicillin V
}


def _resources() -> list[dict[str, Any]]:
    return [json.loads(line) for kind in ("Patient", "Condition", "MedicationRequest")
            for line in (FIXTURE / f"{kind}.000.ndjson").read_text().splitlines()]


def _chart(patient: str) -> list[dict[str, Any]]:
    return [r for r in _resources() if r["id"] == patient
            or r.get("subject", {}).get("reference", "").endswith(patient)]


def test_the_fixture_carries_every_code_the_test_expects() -> None:
    codes = {c["code"] for r in _resources() if r["resourceType"] == "MedicationRequest"
             for c in r["medicationCodeableConcept"]["coding"]}
    assert set(BY_CODE) | set(BY_NAME) <= codes


def _displays() -> dict[str, str]:
    return {c["code"]: c["display"] for r in _resources()
            if r["resourceType"] == "MedicationRequest"
            for c in r["medicationCodeableConcept"]["coding"]}


def _request(code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": RXNORM, "code": code} | ({"display": display} if display else {})
    return {"resourceType": "MedicationRequest", "id": "rx", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [coding]}, "authoredOn": "2026-11-01"}


@pytest.mark.parametrize("code", sorted(BY_NAME))
def test_a_real_code_we_do_not_ship_is_reported_alone(code: str) -> None:
    result = twitch_cds.evaluate([twitching(), _request(code)], now=NOW)
    issues = [i for i in result.issues if i.code == "unclassified-medication"]
    assert [i.resource for i in issues] == ["MedicationRequest/rx"]
    assert f"{RXNORM}|{code}" in issues[0].problem
    assert result.unclassified == 1


@pytest.mark.parametrize("code,display", [(c, None) for c in sorted(BY_CODE)]
                         + [(c, "synthea") for c in sorted(BY_NAME)])
def test_each_real_code_gives_its_class_or_is_known(code: str, display: str | None) -> None:
    """A shipped code alone (no display), or Synthea's own display for the others: a class
    card, or (a drug of no class) silence with no unclassified issue."""
    request = _request(code, _displays()[code] if display else None)
    result = twitch_cds.evaluate([twitching(), request], now=NOW)
    evidence = {ref for refs in result.evidence.values() for ref in refs}
    unclassified = [i for i in result.issues if i.code == "unclassified-medication"]
    assert not unclassified
    expected = (BY_CODE | BY_NAME)[code]
    if expected == "corticosteroid":  # an inhaled corticosteroid: read, and said not systemic
        assert any(i.code == "not-systemic" for i in result.issues)
    elif expected:
        assert "MedicationRequest/rx" in evidence
        assert any(expected in (c.detail or "").lower() or expected in c.summary.lower()
                   or (expected == "estrogen" and "contracept" in (c.detail or "").lower())
                   for c in result.cards), [c.summary for c in result.cards]
    else:
        assert "MedicationRequest/rx" not in evidence


def test_real_patient_on_hydrochlorothiazide_with_twitching_gets_the_diuretic_card() -> None:
    chart = _chart(HCTZ_PATIENT) + [twitching(patient=HCTZ_PATIENT, date="2025-09-10")]
    result = twitch_cds.evaluate(chart, now="2025-09-18T00:00:00Z")
    cited = {ref for refs in result.evidence.values() for ref in refs}
    assert "medication" in [c.kind for c in result.cards]
    hctz = {f"MedicationRequest/{r['id']}" for r in chart
            if r["resourceType"] == "MedicationRequest" and r["status"] == "active"
            and r["medicationCodeableConcept"]["coding"][0]["code"] == "310798"}
    assert hctz & cited
    # its other diagnoses are real and outside every value set: counted, never an error
    kinds = {(i.code, i.severity) for i in result.issues if i.code.startswith("unclassified")}
    assert kinds == {("unclassified-condition", "information")}
    assert result.unclassified == sum(1 for i in result.issues
                                      if i.code == "unclassified-condition")


def test_real_inhaled_budesonide_is_not_a_systemic_corticosteroid() -> None:
    chart = _chart(BUDESONIDE_PATIENT) + [twitching(patient=BUDESONIDE_PATIENT,
                                                    date="2025-09-10")]
    result = twitch_cds.evaluate(chart, now="2025-09-18T00:00:00Z")
    assert any(i.code == "not-systemic" for i in result.issues)
    assert "medication" not in [c.kind for c in result.cards]


def test_screen_reads_the_real_export(tmp_path: Path) -> None:
    summary = screen(FIXTURE, tmp_path / "out", now="2025-09-18T00:00:00Z", progress=False)
    assert summary.patients_read == 4
    assert summary.patients_failed == 0
    assert summary.lines_rejected == 0
