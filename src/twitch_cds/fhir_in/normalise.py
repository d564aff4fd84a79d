"""Validated FHIR resources -> facts, keeping only data that can be trusted.

Trust comes from ``rulesets/trust.yaml`` (statuses), ``rulesets/parameters.yaml`` (how old is
too old), ``rulesets/measurements.yaml`` (units) and the value sets. Everything left out for
a reason other than irrelevance is reported as an ``InputIssue``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twitch_cds.facts import Evidence, PatientFact
from twitch_cds.fhir_in.coding import (
    codings,
    concept_text,
    first_code,
    is_fhir_id,
    preview,
    reference,
    repaired_concepts,
    safe_reference,
)
from twitch_cds.fhir_in.context import Normalised
from twitch_cds.fhir_in.dates import days_between
from twitch_cds.fhir_in.findings import FindingReader
from twitch_cds.fhir_in.labs import LabReader
from twitch_cds.fhir_in.medications import (
    MedicationReader,
    unclassified_medication,
    unplaced_codings,
)
from twitch_cds.fhir_in.reader import DRAFT_ORDERS, RawResource
from twitch_cds.fhir_in.screen import list_elements, unreadable
from twitch_cds.fhir_in.validate import Validated
from twitch_cds.issues import InputIssue, issue_word, msg

__all__ = ["Normalised", "Normaliser"]

MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationDispense")


class Normaliser(FindingReader, LabReader, MedicationReader):
    """Turns one patient's validated resources into facts, per call (holds per-call state)."""

    # -- entry point ---------------------------------------------------------------------
    def run(self, resources: list[Validated], patient_id: str | None) -> Normalised:
        """Facts from every usable resource; a resource whose reading fails is reported and
        skipped (with any fact it had begun to give), and the rest are read."""
        usable = [v for v in resources if v.usable]
        for v in usable:
            rid = v.data.get("id")
            if is_fhir_id(rid):
                self._by_ref.setdefault(f"{v.raw.resource_type}/{rid}", v.data)
            if v.raw.full_url:
                self._by_ref.setdefault(v.raw.full_url, v.data)
        subjects: dict[int, str | None] = {}
        for v in usable:
            try:
                subjects[id(v)] = self._subject(v)
            except Exception as exc:  # this resource only: the rest are read
                self.out.issues.append(unreadable(v.raw, exc, "subject"))
        readable = [v for v in usable if id(v) in subjects]
        self.out.patient = self._whose(readable, patient_id, subjects)
        handlers: dict[str, Callable[[Validated], None]] = {
            "Observation": self._observation,
            "Condition": self._condition,
            "Procedure": self._procedure,
            "MedicationStatement": self._medication_statement,
            "MedicationRequest": self._medication_request,
            "MedicationDispense": self._medication_dispense,
            "Patient": self._patient_resource,
        }
        for v in readable:
            handler = handlers.get(v.raw.resource_type)
            if handler is not None and self._belongs(v, subjects[id(v)]):
                self._isolated(v, handler)
        try:
            self._durations()
        except Exception as exc:  # never lose the facts already read
            self.issue("error", "input", "duration",
                       msg("durations-failed", error=type(exc).__name__),
                       "used", "unreadable-resource")
        return self.out

    def _isolated(self, v: Validated, handler: Callable[[Validated], None]) -> None:
        """Read one resource; if that fails, undo what it added and report it."""
        facts = len(self.out.facts)  # ``add`` appends a fact only with evidence of its own
        try:
            handler(v)
        except Exception as exc:
            for fact in self.out.facts[facts:]:
                self.out.evidence.pop(fact.id, None)
            del self.out.facts[facts:]
            self.out.issues.append(unreadable(v.raw, exc, "reading"))

    def unrecognised(self, raw: RawResource) -> list[InputIssue]:
        """Why a resource the rules pass over might have mattered: a code without a system
        that is in a value set, a finding's name given only as text, a coding sent as an
        object instead of a list; and a current medication or diagnosis the terminology
        cannot place at all (nothing silently unclassified). Reported, not used."""
        data = raw.data
        rtype = data.get("resourceType")
        if rtype in MEDICATION_TYPES:
            shaped, malformed = self._in_shape(data)
            return [] if malformed else self._unplaced_inline(raw, shaped)
        if rtype not in ("Observation", "Condition", "Procedure"):
            return []  # any other Procedure code: silent (README, "Procedures")
        issues: list[InputIssue] = []
        named = self.k.concepts.procedures if rtype == "Procedure" else self.k.concepts.findings
        for path in ("code",) if rtype == "Procedure" else ("code", "valueCodeableConcept"):
            concept = data.get(path)
            for system, code, _ in codings(concept):
                if system is None and code and (systems := self._systems_for(code, rtype)):
                    issues.append(InputIssue(
                        severity="warning", resource=raw.label, path=f"{path}.coding",
                        action="ignored", code="code-without-system",
                        **msg("code-without-system", code=preview(code),
                              systems=", ".join(sorted(systems)))))
            if not issues:
                words = self.k.terminology.lookup_words(concept_text(concept), named)
                if words:
                    titles = ", ".join(self.k.terminology.titles[m.valueset] for m in words)
                    issues.append(InputIssue(
                        severity="warning", resource=raw.label, path=path, action="ignored",
                        code="text-only",
                        **msg("text-only", titles=titles, matched=preview(words[0].matched))))
        if not issues and rtype == "Condition" and self._current_condition(data):
            shaped, malformed = self._in_shape(data)
            if not malformed:  # a malformed coding the rules read: coding-malformed (screen)
                issues += self._unplaced_condition(raw, shaped)
        return issues

    def _systems_for(self, code: str, rtype: str) -> set[str]:
        """The systems a code sent without one is in a value set of; for a Procedure, only
        the value sets a Procedure records (its other codes are not read, so not reported)."""
        systems = self.k.terminology.systems_for_code(code)
        if rtype != "Procedure":
            return systems
        return {s for s in systems if not self.k.concepts.procedures.isdisjoint(
            m.valueset for m in self.k.terminology.lookup(s, code))}

    def _in_shape(self, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The resource with its malformed codings put in FHIR's shape, and whether one of
        them carries a code the rules read (then it is reported as ``coding-malformed``)."""
        shaped = data
        for path, _, _, repaired in repaired_concepts(
                data, list_elements(str(data.get("resourceType")))):
            if self.relevant(repaired):
                return data, True
            key = path.split(".")[0]
            shaped = {**shaped, key: repaired[key]}
        return shaped, False

    # -- nothing silently unclassified -----------------------------------------------------
    def _unplaced_inline(self, raw: RawResource, data: dict[str, Any]) -> list[InputIssue]:
        """A current medication with an inline drug that no class and no table of drugs of
        no class places (one with a Medication reference is read, and reported there)."""
        trust = {"MedicationStatement": self.k.trust.medication_statement,
                 "MedicationRequest": self.k.trust.medication_request,
                 "MedicationDispense": self.k.trust.medication_dispense}[data["resourceType"]]
        status = data.get("status")
        if status not in trust.current and not (
                raw.origin.startswith(DRAFT_ORDERS) and status in trust.proposed):
            return []
        r5 = data["medication"] if isinstance(data.get("medication"), dict) else {}
        concepts = [c for c in (data.get("medicationCodeableConcept"), r5.get("concept"))
                    if isinstance(c, dict)]
        text = " | ".join(t for c in concepts if (t := concept_text(c)))
        unplaced = unplaced_codings(self.k.terminology, concepts, text)
        return [] if unplaced is None else [unclassified_medication(raw.label, unplaced, text)]

    def _current_condition(self, data: dict[str, Any]) -> bool:
        """Current as the Condition reader judges it: not refuted or in error, not resolved."""
        trust = self.k.trust.condition
        return (first_code(data.get("verificationStatus")) not in trust.verification_excluded
                and first_code(data.get("clinicalStatus")) not in trust.clinical_not_current
                and not data.get("abatementDateTime") and not data.get("abatementPeriod"))

    def _unplaced_condition(self, raw: RawResource,
                            data: dict[str, Any]) -> list[InputIssue]:
        """A current diagnosis the value sets do not hold. Coded in a system we read (SNOMED
        CT, ICD-10): most often a real diagnosis the rules have nothing to say about, so an
        ``information`` issue, counted; in no system we read (a local code) or with no code,
        nothing could even be tried: a ``warning``."""
        concept = data.get("code")
        found = [(system, code) for system, code, _ in codings(concept) if code]
        known = self.k.terminology.known_systems()
        readable = [f"{system}|{code}" for system, code in found if system in known]
        if readable:
            return [InputIssue(severity="information", resource=raw.label, path="code.coding",
                               action="ignored", code="unclassified-condition",
                               **msg("unclassified-condition.known",
                                     codings=", ".join(readable[:3])))]
        shown = ", ".join(f"{system or '?'}|{code}" for system, code in found[:3])
        return [InputIssue(severity="warning", resource=raw.label, path="code",
                           action="ignored", code="unclassified-condition",
                           **(msg("unclassified-condition.unknown", codings=shown) if shown
                              else msg("unclassified-condition.text",
                                       text=preview(concept_text(concept)))))]

    # -- what matters -------------------------------------------------------------------
    def relevant(self, data: dict[str, Any]) -> bool:
        """Whether a resource can matter to the rules, judged cheaply before validation.

        Observations and Conditions matter when their code is in a value set, Procedures
        when it is in one a Procedure records (``concepts.procedures``); medications
        (statements, requests, dispenses) when their drug is (by code, RxNorm product or
        name, or by a Medication they reference). Patients and Medications always do.
        Everything else is skipped without validation cost.
        """
        rtype = data.get("resourceType")
        if not isinstance(rtype, str):
            return False
        if rtype == "Observation":
            return bool(self._classify(data.get("code")) or self._value_findings(data))
        if rtype == "Condition":
            return bool(self._classify(data.get("code")))
        if rtype == "Procedure":  # an EMG, a neurology consultation (concepts.procedures)
            return not self.k.concepts.procedures.isdisjoint(self._classify(data.get("code")))
        if rtype in MEDICATION_TYPES:
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
        """``Patient/id`` the resource is about; ``?`` when its subject cannot be read."""
        if v.data.get("subject") is None:
            return None
        subject = reference(v.data.get("subject"))
        target = self._by_ref.get(subject) if subject else None
        if target is not None and is_fhir_id(target.get("id")):
            return f"{target.get('resourceType')}/{target['id']}"
        return safe_reference(subject) or "?"

    def _whose(self, usable: list[Validated], patient_id: str | None,
               subjects: dict[int, str | None]) -> str | None:
        """The patient the data is about: the CDS Hooks context's, else the one the
        resources' subjects name (most often), else the only Patient resource."""
        if patient_id:
            return f"Patient/{patient_id}" if is_fhir_id(patient_id) else None
        patients = [v for v in usable if v.raw.resource_type == "Patient"
                    and is_fhir_id(v.data.get("id"))]
        named = Counter(s for v in usable if (s := subjects[id(v)]) and s != "?")
        present = {f"Patient/{v.data['id']}" for v in patients}
        top = max(named.values(), default=0)
        leaders = [s for s, n in named.items() if n == top]  # ties: a Patient in the input wins
        chosen = next((s for s in leaders if s in present), leaders[0]) if leaders else (
            f"Patient/{patients[0].data['id']}" if len(patients) == 1 else None)
        if len(named) > 1 or (not named and len(patients) > 1):
            self.issue("error", chosen or "input", "subject",
                       msg("several-patients", chosen=chosen or issue_word("no-subject")), "used",
                       "several-patients")
        for v in patients:
            if named and f"Patient/{v.data['id']}" not in named:
                self.issue("warning", v.raw.label, "id",
                           msg("patient-unreferenced", chosen=str(chosen)), "ignored",
                           "patient-unreferenced")
        return chosen

    def _belongs(self, v: Validated, subject: str | None) -> bool:
        if v.raw.resource_type in ("Patient", "Medication"):
            return True
        if subject == "?":
            self.issue("error", v.raw.label, "subject",
                       msg("subject-unreadable"), "skipped", "value-unreadable")
            return False
        if subject is None or self.out.patient is None or subject == self.out.patient:
            return True
        self.issue("error", v.raw.label, "subject",
                   msg("other-patient", subject=subject, patient=self.out.patient), "skipped",
                   "other-patient")
        return False

    # -- Observation ---------------------------------------------------------------------
    def _observation(self, v: Validated) -> None:
        trust = self.k.trust.observation
        status = v.data.get("status")
        hits = self._classify(v.data.get("code")) or self._value_findings(v.data)
        if not hits:
            return  # not about anything the rules know: irrelevant, not lost
        if status not in trust.usable:
            if status is None:
                self.supersede(v, "status")
            known = status in trust.not_usable
            self.issue("information" if known else "warning", v.raw.label, "status",
                       msg("observation-status-missing") if status is None
                       else msg("observation-status", status=preview(status)), "ignored",
                       "status-unusable")
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
        gender = v.data.get("gender")
        if gender is not None and not is_fhir_id(gender):  # a FHIR code is a token
            self.issue("warning", v.raw.label, "gender", msg("gender-unreadable",
                       value=preview(gender)), "value-not-used", "value-unreadable")
            gender = None
        fact = PatientFact(id=v.raw.label, age_years=age, sex=gender)
        sex = self.word(f"sex_{gender}" if gender in ("female", "male", "other") else
                        "sex_unknown")
        self.add(fact, Evidence(reference=v.raw.label, match="code", text=(
            self.word("patient", sex=sex, age=str(int(age))) if age is not None
            else self.word("patient_no_age", sex=sex))))
