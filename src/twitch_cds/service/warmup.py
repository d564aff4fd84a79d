"""A worker's warm-up: one evaluation before it takes calls.

The first evaluation in a process compiles the ruleset into the engine and imports the FHIR
models; it takes longer than the time budget, so without a warm-up each worker's first real
call would be answered with the ``check-incomplete`` card. The chart below touches every
resource type the prefetch brings (no patient data: a made-up record).
"""

from __future__ import annotations

from typing import Any

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang

_SUBJECT = {"reference": "Patient/warm-up"}
_WHEN = "2026-01-01T08:00:00Z"


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


WARM_UP_CHART: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": r} for r in (
        {"resourceType": "Patient", "id": "warm-up", "gender": "female",
         "birthDate": "1970-01-01"},
        {"resourceType": "Observation", "id": "w-1", "status": "final", "subject": _SUBJECT,
         "code": _coded("http://snomed.info/sct", "82470000"), "effectiveDateTime": _WHEN,
         "valueBoolean": True},
        {"resourceType": "Observation", "id": "w-2", "status": "final", "subject": _SUBJECT,
         "code": _coded("http://loinc.org", "2823-3"), "effectiveDateTime": _WHEN,
         "valueQuantity": {"value": 3.1, "unit": "mmol/L",
                           "system": "http://unitsofmeasure.org", "code": "mmol/L"}},
        {"resourceType": "Condition", "id": "w-3", "subject": _SUBJECT,
         "code": _coded("http://hl7.org/fhir/sid/icd-10-cm", "M62.81"),
         "onsetDateTime": _WHEN},
        {"resourceType": "MedicationStatement", "id": "w-4", "status": "active",
         "subject": _SUBJECT, "effectivePeriod": {"start": _WHEN},
         "medicationCodeableConcept": _coded("http://www.nlm.nih.gov/research/umls/rxnorm",
                                             "4603")},
        {"resourceType": "MedicationRequest", "id": "w-5", "status": "active",
         "intent": "order", "subject": _SUBJECT, "authoredOn": _WHEN,
         "medicationCodeableConcept": _coded("http://www.nlm.nih.gov/research/umls/rxnorm",
                                             "5487")},
    )]}


def warm_up(knowledge: Knowledge, lang: Lang) -> None:
    """Evaluate the warm-up chart once (its cards are thrown away)."""
    twitch_cds.evaluate(WARM_UP_CHART, now=_WHEN, lang=lang, knowledge=knowledge)
