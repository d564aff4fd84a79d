"""A synthetic FHIR Bulk Data export (manifest + NDJSON per type), deterministic by seed.

    python benchmarks/population.py OUT --patients 10000 [--seed 1] [--gzip] [--split 2]

About ten resources a patient: Patient, vitals and labs (Observation), Condition,
MedicationStatement, MedicationRequest; about ``--twitching`` of patients (10 %) also carry
twitching and some of the findings the article names (weakness, wasting, numbness, low
potassium, a diuretic). Clinical codes come from ``rulesets/terminology/`` (the first code of
each value set), so the export is coded as the knowledge reads it. ``--split N`` writes each
type as N files (a patient spread over several files), ``--gzip`` writes ``.ndjson.gz``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
TERMINOLOGY = ROOT / "rulesets" / "terminology"
TYPES = ("Patient", "Observation", "Condition", "MedicationStatement", "MedicationRequest")
# vital signs and an unrelated diagnosis/drug: not in any value set, the bulk of a real chart
VITALS = (("8867-4", "Heart rate", "/min", 60, 100), ("8310-5", "Body temperature", "Cel", 36, 38),
          ("29463-7", "Body weight", "kg", 50, 110), ("9279-1", "Respiratory rate", "/min", 12, 20))
OTHER_CONDITION = ("http://snomed.info/sct", "38341003", "Hypertensive disorder")
OTHER_DRUG = ("http://www.nlm.nih.gov/research/umls/rxnorm", "29046", "lisinopril")


def first_coding(valueset: str, system_suffix: str | None = None) -> dict[str, str]:
    data = json.loads((TERMINOLOGY / f"valueset-{valueset}.json").read_text(encoding="utf-8"))
    for include in data["compose"]["include"]:
        if include.get("concept") and (system_suffix is None
                                       or include["system"].endswith(system_suffix)):
            concept = include["concept"][0]
            return {"system": include["system"], "code": concept["code"],
                    "display": concept.get("display", concept["code"])}
    raise ValueError(f"{valueset}: no concept")


class Writer:
    def __init__(self, out: Path, split: int, gz: bool) -> None:
        self.out, self.split, self.gz = out, split, gz
        self.handles: dict[tuple[str, int], IO[str]] = {}
        self.counts: dict[str, int] = {}

    def path(self, rtype: str, part: int) -> Path:
        return self.out / f"{rtype}.{part}.ndjson{'.gz' if self.gz else ''}"

    def write(self, resource: dict[str, Any], part: int) -> None:
        key = (resource["resourceType"], part % self.split)
        handle = self.handles.get(key)
        if handle is None:
            path = self.path(*key)
            handle = self.handles[key] = (  # closed in close()
                gzip.open(path, "wt", encoding="utf-8", compresslevel=1)  # noqa: SIM115
                if self.gz else open(path, "w", encoding="utf-8"))  # noqa: SIM115
        handle.write(json.dumps(resource, separators=(",", ":")) + "\n")
        self.counts[key[0]] = self.counts.get(key[0], 0) + 1

    def close(self) -> Path:
        for handle in self.handles.values():
            handle.close()
        manifest = {
            "transactionTime": "2026-11-24T09:00:00Z", "request": "$export",
            "requiresAccessToken": False, "error": [],
            "output": [{"type": t, "url": self.path(t, p).name}
                       for (t, p) in sorted(self.handles)],
        }
        path = self.out / "manifest.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return path


def generate(out: Path, patients: int, *, seed: int = 1, twitching: float = 0.1,
             split: int = 1, gz: bool = False) -> Path:
    """Write the export under ``out`` and return its manifest's path."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    codes = {name: first_coding(name) for name in (
        "twitching", "muscle-weakness", "muscle-wasting", "sensory-loss", "potassium",
        "sodium", "diuretic", "estrogen", "fibromyalgia")}
    writer = Writer(out, split, gz)
    for n in range(patients):
        pid = f"p{seed}-{n:08d}"
        ref = {"reference": f"Patient/{pid}"}
        part = n
        writer.write({"resourceType": "Patient", "id": pid, "gender": rng.choice(
            ("male", "female")), "birthDate": f"{rng.randint(1940, 2005)}-0{rng.randint(1, 9)}-15"},
            part)
        day = f"2026-11-{rng.randint(10, 23):02d}T09:00:00Z"

        def obs(suffix: str, coding: dict[str, str], value: dict[str, Any], when: str,
                category: str, *, pid: str = pid, ref: dict[str, str] = ref) -> dict[str, Any]:
            return {"resourceType": "Observation", "id": f"{pid}-{suffix}", "status": "final",
                    "category": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category}]}],
                    "code": {"coding": [coding], "text": coding["display"]},
                    "subject": ref, "effectiveDateTime": when, **value}

        for i, (code, display, unit, low, high) in enumerate(VITALS):
            writer.write(obs(f"v{i}", {"system": "http://loinc.org", "code": code,
                                       "display": display},
                             {"valueQuantity": {"value": rng.randint(low, high), "unit": unit,
                                                "system": "http://unitsofmeasure.org",
                                                "code": unit}}, day, "vital-signs"), part + i)
        flagged = rng.random() < twitching
        potassium = round(rng.uniform(2.9, 3.3) if flagged and rng.random() < 0.3
                          else rng.uniform(3.6, 5.0), 1)
        for name, value in (("potassium", potassium), ("sodium", rng.randint(136, 144))):
            writer.write(obs(name, codes[name], {"valueQuantity": {
                "value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                "code": "mmol/L"}}, day, "laboratory"), part + 1)
        condition = codes["fibromyalgia"] if rng.random() < 0.02 else dict(zip(
            ("system", "code", "display"), OTHER_CONDITION, strict=True))
        writer.write({"resourceType": "Condition", "id": f"{pid}-c0",
                      "clinicalStatus": {"coding": [{
                          "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                          "code": "active"}]},
                      "code": {"coding": [condition], "text": condition["display"]},
                      "subject": ref, "recordedDate": "2025-06-01"}, part + 2)
        drug = codes["diuretic"] if flagged and rng.random() < 0.3 else (
            codes["estrogen"] if rng.random() < 0.05 else dict(zip(
                ("system", "code", "display"), OTHER_DRUG, strict=True)))
        writer.write({"resourceType": "MedicationStatement", "id": f"{pid}-ms0",
                      "status": "active", "medicationCodeableConcept": {
                          "coding": [drug], "text": drug["display"]},
                      "subject": ref, "effectivePeriod": {"start": "2026-01-01"},
                      "dateAsserted": "2026-11-20"}, part + 3)
        writer.write({"resourceType": "MedicationRequest", "id": f"{pid}-mr0",
                      "status": "active", "intent": "order", "medicationCodeableConcept": {
                          "coding": [drug], "text": drug["display"]},
                      "subject": ref, "authoredOn": "2026-11-01"}, part + 4)
        if flagged:
            writer.write(obs("tw", codes["twitching"], {"valueBoolean": True}, day, "exam"),
                         part + 5)
            for name in ("muscle-weakness", "muscle-wasting", "sensory-loss"):
                if rng.random() < 0.15:
                    writer.write(obs(name, codes[name], {"valueBoolean": True}, day, "exam"),
                                 part + 6)
    return writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--twitching", type=float, default=0.1)
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    manifest = generate(args.out, args.patients, seed=args.seed, twitching=args.twitching,
                        split=args.split, gz=args.gzip)
    print(f"{manifest} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
