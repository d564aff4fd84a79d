"""FHIR resource builders for tests: small, readable, one coding each."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import twitch_cds

NOW = "2026-11-24T09:00:00Z"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
WHO = "http://hl7.org/fhir/sid/icd-10"
"""WHO ICD-10 (SATUSEHAT and most countries): not ICD-10-CM."""
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
OURS = "https://twitch-cds.github.io/fhir/CodeSystem/twitch-cds"
UCUM = "http://unitsofmeasure.org"


def obs(rid: str, system: str, code: str, *, date: str = "2026-11-20T08:00:00Z",
        status: str = "final", patient: str = "p1", **extra: Any) -> dict[str, Any]:
    """An Observation with one coding (findings and labs alike)."""
    return {"resourceType": "Observation", "id": rid, "status": status,
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": date, **extra}


def lab(rid: str, code: str, value: float, unit: str, *, low: float | None = None,
        high: float | None = None, date: str = "2026-11-20T08:00:00Z",
        **extra: Any) -> dict[str, Any]:
    resource = obs(rid, LOINC, code, date=date, valueQuantity={
        "value": value, "unit": unit, "system": UCUM, "code": unit}, **extra)
    if low is not None or high is not None:
        bounds = {}
        if low is not None:
            bounds["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
        if high is not None:
            bounds["high"] = {"value": high, "unit": unit, "system": UCUM, "code": unit}
        resource["referenceRange"] = [bounds]
    return resource


def condition(rid: str, system: str, code: str, *, clinical: str = "active",
              patient: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": rid,
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": clinical}]},
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}, **extra}


def med_statement(rid: str, codings: list[dict[str, str]] | None = None, *, text: str | None = None,
                  status: str = "active", patient: str = "p1", **extra: Any) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return {"resourceType": "MedicationStatement", "id": rid, "status": status,
            "medicationCodeableConcept": concept,
            "subject": {"reference": f"Patient/{patient}"}, **extra}


def twitching(rid: str = "tw1", **extra: Any) -> dict[str, Any]:
    return obs(rid, SCT, "82470000", **extra)


def parts(card: Any) -> list[str]:
    """The conclusion kinds on a card (contract 3.0: its extension names them)."""
    return list(((card.extension or {}).get("twitch-cds") or {}).get("kinds", []))


def kinds(result: twitch_cds.EvaluationResult) -> list[str]:
    """The conclusion kinds on the result's cards (red-flag, self-care, caffeine, ...)."""
    return [kind for card in result.cards for kind in parts(card)]


def fired(result: twitch_cds.EvaluationResult) -> set[str]:
    return {f.rule_id for f in result.trace.fired}


def changed_ruleset(tmp_path: Path, rulesets: Path, target: Path,
                    change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``rulesets`` under ``tmp_path`` with one YAML file (``target``, relative)
    changed by ``change``: how tests show what the loader refuses."""
    copy = tmp_path / "rulesets"
    shutil.copytree(rulesets, copy)
    data = yaml.safe_load((copy / target).read_text())
    change(data)
    (copy / target).write_text(yaml.safe_dump(data, allow_unicode=True))
    return copy
