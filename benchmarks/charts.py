"""Realistic patient charts for the benchmarks, built from a seed so every run is the same.

- ``relevant(n)``: a patient who twitches for months, and whose every resource is read by the
  rules: twitching Observations at every visit over weeks, weakness Observations and
  Conditions, low and normal potassium and sodium results, a diuretic and a corticosteroid.
  It fires the red-flag, electrolyte, side-effect and self-care rules.
- ``mostly_irrelevant(n)``: a real chart's mix, mostly vitals, with labs, drugs and conditions
  that vary independently (some match the rules, most do not), and one twitching record.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

NOW = "2026-11-24T09:00:00Z"
_NOW = dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC)
SCT, LOINC, ICD = "http://snomed.info/sct", "http://loinc.org", "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PATIENT = "bench"


def _when(days_ago: float) -> str:
    return (_NOW - dt.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(profile: str) -> dict[str, Any]:
    return {"meta": {"lastUpdated": "2026-11-20T08:00:00Z",
                     "profile": [f"http://hl7.org/fhir/us/core/StructureDefinition/{profile}"]}}


def patient_resource() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": PATIENT, **_meta("us-core-patient"),
            "gender": "female", "birthDate": "1961-04-12",
            "name": [{"family": "Sample", "given": ["Dewi"]}]}


def observation(rid: str, system: str, code: str, display: str, category: str,
                days_ago: float, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, **_meta("us-core-observation-clinical"),
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}],
                     "text": display},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "effectiveDateTime": _when(days_ago), "issued": _when(days_ago - 0.05), **value}


def lab(rid: str, code: str, display: str, value: float, unit: str, low: float, high: float,
        days_ago: float) -> dict[str, Any]:
    quantity = {"unit": unit, "system": UCUM, "code": unit}
    flag = "L" if value < low else ("H" if value > high else "N")
    return observation(
        rid, LOINC, code, display, "laboratory", days_ago,
        valueQuantity={"value": value, **quantity},
        interpretation=[{"coding": [{"system": INTERPRETATION, "code": flag}]}],
        referenceRange=[{"low": {"value": low, **quantity}, "high": {"value": high, **quantity}}])


def condition(rid: str, code: str, display: str, onset_days_ago: float) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": rid, **_meta("us-core-condition-problems"),
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed"}]},
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": ICD, "code": code, "display": display}],
                     "text": display},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "onsetDateTime": _when(onset_days_ago)[:10],
            "recordedDate": _when(onset_days_ago - 1)[:10]}


def medication(rid: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": rid, "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                      "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "effectivePeriod": {"start": "2026-01-01"}, "dateAsserted": "2026-11-01",
            "dosage": [{"text": "once daily", "route": {"coding": [{
                "system": SCT, "code": "26643006", "display": "Oral route"}]}}]}


def relevant(size: int, seed: int = 1) -> list[dict[str, Any]]:
    """``size`` resources, every one read by the rules (the Patient included)."""
    rng = random.Random(seed)
    out = [patient_resource(), medication("furosemide", "4603", "furosemide 40 mg tablet"),
           medication("prednisone", "8640", "prednisone 10 mg tablet")]
    i = 0
    while len(out) < size:
        i += 1
        days_ago = rng.uniform(0, 25)  # visits over the last weeks: current records
        pick = rng.random()
        if pick < 0.55:
            out.append(observation(f"tw-{i}", SCT, "82470000", "Muscle fasciculation", "exam",
                                   days_ago))
        elif pick < 0.65:
            out.append(observation(f"wk-{i}", SCT, "26544005", "Muscle weakness", "exam",
                                   days_ago))
        elif pick < 0.70:
            out.append(condition(f"cw-{i}", "M62.81", "Muscle weakness (generalized)",
                                 rng.uniform(30, 400)))
        elif pick < 0.85:
            out.append(lab(f"k-{i}", "2823-3", "Potassium [Moles/volume] in Serum or Plasma",
                           round(rng.uniform(2.9, 4.6), 1), "mmol/L", 3.5, 5.1, days_ago))
        else:
            out.append(lab(f"na-{i}", "2951-2", "Sodium [Moles/volume] in Serum or Plasma",
                           float(rng.randint(131, 144)), "mmol/L", 135, 145, days_ago))
    return out[:size]


_VITALS = [("8310-5", "Body temperature", 36.8, "Cel"), ("8867-4", "Heart rate", 72, "/min"),
           ("9279-1", "Respiratory rate", 16, "/min"), ("29463-7", "Body weight", 61.5, "kg"),
           ("8480-6", "Systolic blood pressure", 128, "mm[Hg]")]
_LABS = [("2823-3", "Potassium [Moles/volume] in Serum or Plasma", (2.9, 5.3), "mmol/L",
          3.5, 5.1),
         ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", (130, 146), "mmol/L", 135, 145),
         ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", (70, 180), "mg/dL", 70, 99),
         ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", (0.6, 1.4), "mg/dL",
          0.5, 1.1)]
_CONDITIONS = [("M79.7", "Fibromyalgia"), ("I10", "Essential hypertension"),
               ("E11.9", "Type 2 diabetes mellitus without complications"),
               ("E78.5", "Hyperlipidemia, unspecified"), ("G25.81", "Restless legs syndrome")]
_DRUGS = [("4603", "furosemide"), ("6809", "metformin"), ("29046", "lisinopril"),
          ("83367", "atorvastatin"), ("8640", "prednisone")]


def mostly_irrelevant(size: int, seed: int = 2) -> list[dict[str, Any]]:
    """A real chart's mix: about 80 % vitals; labs, conditions and drugs drawn independently."""
    rng = random.Random(seed)
    out = [patient_resource(), observation("tw-0", SCT, "82470000", "Muscle fasciculation",
                                           "exam", 2)]
    i = 0
    while len(out) < size:
        i += 1
        days_ago = rng.uniform(0, 120)
        pick = rng.random()
        if pick < 0.80:
            code, display, value, unit = rng.choice(_VITALS)
            out.append(observation(f"v-{i}", LOINC, code, display, "vital-signs", days_ago,
                                   valueQuantity={"value": value, "unit": unit, "system": UCUM,
                                                  "code": unit}))
        elif pick < 0.92:
            code, display, (lo, hi), unit, low, high = rng.choice(_LABS)
            out.append(lab(f"l-{i}", code, display, round(rng.uniform(lo, hi), 1), unit, low,
                           high, days_ago))
        elif pick < 0.96:
            code, display = rng.choice(_CONDITIONS)
            out.append(condition(f"c-{i}", code, display, rng.uniform(30, 900)))
        else:
            code, display = rng.choice(_DRUGS)
            out.append(medication(f"m-{i}", code, display))
    return out[:size]


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r}
                      for r in resources]}
