"""Validated FHIR resources -> facts, keeping only data that can be trusted.

Trust comes from ``rulesets/trust.yaml`` (statuses), ``rulesets/parameters.yaml`` (how old is
too old), ``rulesets/measurements.yaml`` (units) and the value sets. Everything left out for
a reason other than irrelevance is reported as an ``InputIssue``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twitch_cds.facts import Evidence, PatientFact
from twitch_cds.fhir_in.coding import concept_text, reference
from twitch_cds.fhir_in.context import Normalised
from twitch_cds.fhir_in.dates import days_between
from twitch_cds.fhir_in.findings import FindingReader
from twitch_cds.fhir_in.labs import LabReader
from twitch_cds.fhir_in.medications import MedicationReader
from twitch_cds.fhir_in.validate import Validated

__all__ = ["Normalised", "Normaliser"]


class Normaliser(FindingReader, LabReader, MedicationReader):
    """Turns one patient's validated resources into facts, per call (holds per-call state)."""

    # -- entry point ---------------------------------------------------------------------
    def run(self, resources: list[Validated], patient_id: str | None) -> Normalised:
        usable = [v for v in resources if v.usable]
        for v in usable:
            rid = v.data.get("id")
            if isinstance(rid, str):
                self._by_ref.setdefault(f"{v.raw.resource_type}/{rid}", v.data)
            if v.raw.full_url:
                self._by_ref.setdefault(v.raw.full_url, v.data)
        self.out.patient = self._whose(usable, patient_id)
        handlers = {
            "Observation": self._observation,
            "Condition": self._condition,
            "MedicationStatement": self._medication_statement,
            "MedicationRequest": self._medication_request,
            "Patient": self._patient_resource,
        }
        for v in usable:
            handler = handlers.get(v.raw.resource_type)
            if handler is not None and self._belongs(v):
                handler(v)
        self._durations()
        return self.out

    # -- what matters -------------------------------------------------------------------
    def relevant(self, data: dict[str, Any]) -> bool:
        """Whether a resource can matter to the rules, judged cheaply before validation.

        Observations and Conditions matter when their code is in a value set; medications
        when their drug is (by code or name, or by a Medication they reference). Patients
        and Medications always do. Everything else is skipped without validation cost.
        """
        rtype = data.get("resourceType")
        if rtype == "Observation":
            return bool(self._classify(data.get("code")) or self._value_findings(data))
        if rtype == "Condition":
            return bool(self._classify(data.get("code")))
        if rtype in ("MedicationStatement", "MedicationRequest"):
            r5: dict[str, Any] = data["medication"] if isinstance(
                data.get("medication"), dict) else {}
            if data.get("medicationReference") or r5.get("reference"):
                return True
            concept = data.get("medicationCodeableConcept") or r5.get("concept")
            return bool(self._classify(concept)) or bool(
                self.k.terminology.lookup_name(concept_text(concept), self.k.concepts.drug_classes))
        return rtype in ("Patient", "Medication")

    # -- whose data ----------------------------------------------------------------------
    def _subject(self, v: Validated) -> str | None:
        subject = reference(v.data.get("subject"))
        if subject and subject in self._by_ref and self._by_ref[subject].get("id"):
            return f"Patient/{self._by_ref[subject]['id']}"
        return subject

    def _whose(self, usable: list[Validated], patient_id: str | None) -> str | None:
        if patient_id:
            return f"Patient/{patient_id}"
        patients = [v for v in usable if v.raw.resource_type == "Patient" and v.data.get("id")]
        subjects = Counter(s for v in usable if (s := self._subject(v)))
        if len(patients) == 1:
            return f"Patient/{patients[0].data['id']}"
        if subjects:
            chosen = subjects.most_common(1)[0][0]
            if len(patients) > 1 or len(subjects) > 1:
                self.issue("error", chosen, "subject",
                           "the input holds data for more than one patient; only this "
                           "patient's resources are used", "used")
            return chosen
        return None

    def _belongs(self, v: Validated) -> bool:
        if v.raw.resource_type in ("Patient", "Medication"):
            return True
        subject = self._subject(v)
        if subject is None or self.out.patient is None or subject == self.out.patient:
            return True
        self.issue("error", v.raw.label, "subject",
                   f"belongs to {subject}, not {self.out.patient}", "skipped")
        return False

    # -- Observation ---------------------------------------------------------------------
    def _observation(self, v: Validated) -> None:
        trust = self.k.trust.observation
        status = v.data.get("status")
        hits = self._classify(v.data.get("code")) or self._value_findings(v.data)
        if not hits:
            return  # not about anything the rules know: irrelevant, not lost
        if status not in trust.usable:
            known = status in trust.not_usable
            self.issue("information" if known else "warning", v.raw.label, "status",
                       f"status {status!r} is not a usable result", "ignored")
            return
        when = self._when(v, "effectiveDateTime", "effectiveInstant", "effectivePeriod.end",
                          "effectivePeriod.start", "issued")  # the latest time it was seen
        if self._future(v, when, "effective[x]"):
            return
        for valueset in hits:
            if valueset in self._analytes:
                self._lab(v, *self._analytes[valueset], when, hits[valueset])
                return
            if valueset in self._intakes:
                self._intake(v, *self._intakes[valueset], when, hits[valueset])
                return
        self._observed_finding(v, hits, when)

    # -- Patient -------------------------------------------------------------------------
    def _patient_resource(self, v: Validated) -> None:
        if self.out.patient not in (None, f"Patient/{v.data.get('id')}"):
            return
        born = self._when(v, "birthDate")
        age = days_between(born, self.now) / 365.25 if born else None
        gender = v.data.get("gender") if isinstance(v.data.get("gender"), str) else None
        fact = PatientFact(id=v.raw.label, age_years=age, sex=gender)
        self.add(fact, Evidence(reference=v.raw.label, match="code",
                                text=f"{gender or 'sex unknown'}, "
                                     f"{'age ' + format(age, '.0f') if age else 'age unknown'}"))
