"""How fast and how lean is ``evaluate()``? Medians and p99 against baselines in the same run.

    python benchmarks/evaluate.py            # full run (100,000 calls for the memory check)
    python benchmarks/evaluate.py --quick    # a smoke run

Baselines, measured in this process on the same resources:
- parse floor: validating every resource with fhir.resources alone (what any FHIR-reading
  CDS pays before reasoning at all);
- bare engine: one durable-rules session asserting the already-prepared facts.
The process is pinned to one core, as the targets are per core.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import fhir.resources.R4B as fhir_r4b

import twitch_cds
from twitch_cds.evaluate import engine_for
from twitch_cds.fhir_in.normalise import Normaliser
from twitch_cds.fhir_in.reader import read_input
from twitch_cds.fhir_in.validate import validate
from twitch_cds.knowledge.bundle import default_knowledge

NOW = "2026-11-24T09:00:00Z"
SCT, LOINC, ICD = "http://snomed.info/sct", "http://loinc.org", "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _meta(kind: str) -> dict[str, Any]:
    return {"meta": {"lastUpdated": "2026-11-20T08:00:00Z",
                     "profile": [f"http://hl7.org/fhir/us/core/StructureDefinition/{kind}"]}}


def _obs(i: int, code: str, display: str, category: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs-{i}", **_meta("us-core-observation-lab"),
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC if "-" in code else SCT, "code": code,
                                 "display": display}], "text": display},
            "subject": {"reference": "Patient/bench"},
            "effectiveDateTime": f"2026-11-{10 + i % 12:02d}T08:30:00Z",
            "issued": f"2026-11-{10 + i % 12:02d}T10:00:00Z", **value}


def _lab(i: int, code: str, display: str, value: float, unit: str, low: float,
         high: float) -> dict[str, Any]:
    q = {"unit": unit, "system": UCUM, "code": unit}
    return _obs(i, code, display, "laboratory",
                valueQuantity={"value": value, **q},
                interpretation=[{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                    "code": "L" if value < low else "N"}]}],
                referenceRange=[{"low": {"value": low, **q}, "high": {"value": high, **q}}])


def _condition(i: int, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"cond-{i}", **_meta("us-core-condition"),
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
            "subject": {"reference": "Patient/bench"}, "onsetDateTime": "2025-03-01",
            "recordedDate": "2025-03-02"}


def _med(i: int, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": f"med-{i}", "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                      "display": display}], "text": display},
            "subject": {"reference": "Patient/bench"},
            "effectivePeriod": {"start": "2026-01-01"}, "dateAsserted": "2026-11-01",
            "dosage": [{"text": "once daily", "route": {"coding": [{
                "system": SCT, "code": "26643006", "display": "Oral route"}]}}]}


def patient(size: int) -> list[dict[str, Any]]:
    """One patient with ``size`` resources: the mix of a real chart (mostly vitals)."""
    resources: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": "bench", **_meta("us-core-patient"),
        "gender": "female", "birthDate": "1961-04-12",
        "name": [{"family": "Sample", "given": ["Dewi"]}]}]
    resources.append(_obs(0, "82470000", "Muscle fasciculation", "exam"))
    makers: list[Callable[[int], dict[str, Any]]] = [
        lambda i: _lab(i, "2823-3", "Potassium [Moles/volume] in Serum or Plasma",
                       3.2 + (i % 5) * 0.3, "mmol/L", 3.5, 5.1),
        lambda i: _lab(i, "2951-2", "Sodium [Moles/volume] in Serum or Plasma",
                       136 + i % 6, "mmol/L", 135, 145),
        lambda i: _obs(i, "8310-5", "Body temperature", "vital-signs",
                       valueQuantity={"value": 36.8, "unit": "Cel", "system": UCUM,
                                      "code": "Cel"}),
        lambda i: _obs(i, "8867-4", "Heart rate", "vital-signs",
                       valueQuantity={"value": 72, "unit": "/min", "system": UCUM,
                                      "code": "/min"}),
        lambda i: _condition(i, ["M79.7", "I10", "E11.9"][i % 3],
                             ["Fibromyalgia", "Essential hypertension", "Type 2 diabetes"][i % 3]),
        lambda i: _med(i, ["4603", "6809", "29046"][i % 3],
                       ["furosemide", "metformin", "lisinopril"][i % 3]),
    ]
    i = 1
    while len(resources) < size:
        resources.append(makers[i % len(makers)](i))
        i += 1
    return resources


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    for _ in range(min(50, runs)):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, 5,000 memory calls")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    runs = 300 if args.quick else 3000
    knowledge = default_knowledge()
    engine = engine_for(knowledge)
    parameters = knowledge.parameters.resolve()
    print(f"twitch-cds {twitch_cds.__version__}, {len(knowledge.rules)} rules, one core")
    print(f"{'case':34} {'median ms':>10} {'p99 ms':>8} {'x floor':>8} {'x engine':>9}")
    for label, size in (("typical (20 resources)", 20), ("heavy (500 resources)", 500)):
        resources = patient(size)
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": r} for r in resources]}
        normaliser = Normaliser(knowledge, knowledge.parameters.resolve(),
                                twitch_cds.evaluate(bundle, now=NOW).now)
        read = read_input(bundle)
        facts = [f.to_engine() for f in normaliser.run(
            [validate(r, "R4B") for r in read.resources], None).facts]
        n = runs if size < 100 else max(30, runs // 20)

        def parse_floor(resources: list[dict[str, Any]] = resources) -> None:
            for resource in resources:
                fhir_r4b.get_fhir_model_class(resource["resourceType"]).model_validate(resource)

        gc.collect()
        floor = stats(timed(parse_floor, n))
        bare = stats(timed(lambda facts=facts: engine.run(facts, parameters), n))
        full = stats(timed(lambda bundle=bundle: twitch_cds.evaluate(bundle, now=NOW), n))
        for name, (median, p99) in (("  parse floor", floor), ("  bare engine", bare),
                                    (f"  evaluate {label}", full)):
            print(f"{name:34} {median:10.3f} {p99:8.3f} {median / floor[0]:8.2f} "
                  f"{median / bare[0]:9.2f}")
    calls = 5_000 if args.quick else 100_000
    typical = {"resourceType": "Bundle", "type": "collection",
               "entry": [{"resource": r} for r in patient(20)]}
    start_rss = rss_mb()
    checkpoints = {calls // 10, calls // 2, calls}
    print(f"memory over {calls:,} calls (RSS MB): start {start_rss:.1f}", end="")
    for call in range(1, calls + 1):
        twitch_cds.evaluate(typical, now=NOW)
        if call in checkpoints:
            print(f", after {call:,} {rss_mb():.1f}", end="", flush=True)
    print()


if __name__ == "__main__":
    main()
