"""Validated FHIR resources -> facts, keeping only data that can be trusted.

Trust comes from ``rulesets/trust.yaml`` (statuses), ``rulesets/parameters.yaml`` (how old is
too old), ``rulesets/measurements.yaml`` (units) and the value sets. Everything left out for
a reason other than irrelevance is reported as an ``InputIssue``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from twitch_cds.facts import Evidence, Fact, Finding, Intake, Lab, Medication, PatientFact
from twitch_cds.fhir_in.coding import codings, concept_text, first_code, number, reference
from twitch_cds.fhir_in.dates import days_between, parse_fhir_datetime
from twitch_cds.fhir_in.reader import DRAFT_ORDERS
from twitch_cds.fhir_in.validate import Validated
from twitch_cds.issues import Action, InputIssue, Severity
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.knowledge.measurements import Measurement
from twitch_cds.knowledge.terminology import ATC, Match


@dataclass
class Normalised:
    facts: list[Fact] = field(default_factory=list)
    evidence: dict[str, Evidence] = field(default_factory=dict)
    issues: list[InputIssue] = field(default_factory=list)
    patient: str | None = None
    """``Patient/id`` of the patient the data is about, when known."""


@dataclass(frozen=True)
class Reading:
    """A measured value: in the canonical unit, as the source wrote it, and the factor."""

    value: float
    raw: float
    unit: str
    factor: float

    @property
    def text(self) -> str:
        return f"{_fmt(self.raw)} {self.unit}"


def _date_text(when: dt.datetime | None) -> str | None:
    return when.date().isoformat() if when else None


def _fmt(value: float) -> str:
    return f"{value:g}"


class Normaliser:
    """Turns one patient's validated resources into facts, per call (holds per-call state)."""

    def __init__(self, knowledge: Knowledge, parameters: dict[str, float], now: dt.datetime,
                 lang: Lang = "en"):
        self.k = knowledge
        self.lang: Lang = lang
        self.p = parameters
        self.now = now
        self.out = Normalised()
        self._by_ref: dict[str, dict[str, Any]] = {}
        self._first_seen: dict[str, tuple[dt.datetime, str]] = {}
        measurements = knowledge.measurements
        self._analytes = {m.valueset: (name, m) for name, m in measurements.analytes.items()}
        self._intakes = {m.valueset: (name, m) for name, m in measurements.intakes.items()}

    def word(self, key: str, **values: str) -> str:
        """An evidence word from cards.yaml, in the caller's language."""
        return self.k.cards.evidence_words[key](self.lang).format(**values)

    # -- reporting -----------------------------------------------------------------------
    def issue(self, severity: Severity, resource: str, path: str, problem: str,
              action: Action) -> None:
        self.out.issues.append(InputIssue(severity=severity, resource=resource, path=path,
                                          problem=problem, action=action))

    def add(self, fact: Fact, evidence: Evidence) -> None:
        if fact.id in self.out.evidence:
            return  # the same resource arrived twice (e.g. in two prefetch keys)
        self.out.facts.append(fact)
        self.out.evidence[fact.id] = evidence

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

    def _value_findings(self, data: dict[str, Any]) -> dict[str, Match]:
        """Findings carried as the value of a generic Observation (code "Symptom", value
        "Muscle fasciculation"), a common way of recording symptoms."""
        return {vs: m for vs, m in self._classify(data.get("valueCodeableConcept")).items()
                if vs in self.k.concepts.findings}

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

    # -- shared pieces -------------------------------------------------------------------
    def _classify(self, concept: Any) -> dict[str, Match]:
        hits: dict[str, Match] = {}
        for system, code, _ in codings(concept):
            for match in self.k.terminology.lookup(system, code):
                hits.setdefault(match.valueset, match)
        return hits

    def _when(self, v: Validated, *paths: str) -> dt.datetime | None:
        """The first readable date among the paths (``effectivePeriod.start`` style)."""
        for path in paths:
            node: Any = v.data
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                continue
            when = parse_fhir_datetime(node)
            if when is None:
                self.issue("warning", v.raw.label, path, f"{node!r} is not a FHIR date",
                           "value-not-used")
                continue
            return when
        return None

    def _future(self, v: Validated, when: dt.datetime | None, path: str) -> bool:
        if when and days_between(self.now, when) * 24 > self.p["future_tolerance_hours"]:
            self.issue("error", v.raw.label, path,
                       f"dated {when.isoformat()}, after now ({self.now.isoformat()})",
                       "skipped")
            return True
        return False

    def _titles(self, valuesets: dict[str, Match]) -> str:
        """What a coded-only record is, when it carries no display or text."""
        return ", ".join(self.k.terminology.titles[vs] for vs in valuesets)

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

    def _presence(self, v: Validated) -> bool | None:
        """True present, False absent, None indeterminate (reported)."""
        data = v.data
        presence = self.k.concepts.presence
        if isinstance(data.get("valueBoolean"), bool):
            return bool(data["valueBoolean"])
        value = data.get("valueCodeableConcept")
        if value is not None:
            return presence.absent not in self._classify(value)
        quantity = data.get("valueQuantity")
        if isinstance(quantity, dict) and number(quantity.get("value")) is not None:
            return (number(quantity.get("value")) or 0.0) > 0  # minutes, steps: none is absence
        if isinstance(data.get("valueString"), str):
            return data["valueString"].strip().lower() not in presence.absent_words
        if data.get("dataAbsentReason") is not None:
            reason = first_code(data["dataAbsentReason"]) or "given"
            self.issue("information", v.raw.label, "dataAbsentReason",
                       f"no value (dataAbsentReason {reason}): presence unknown", "ignored")
            return None
        if any(k.startswith("value") for k in data):
            self.issue("warning", v.raw.label, "value[x]",
                       "a finding needs valueBoolean or a present/absent code", "ignored")
            return None
        return True  # a recorded finding with no value asserts its presence

    def _observed_finding(self, v: Validated, hits: dict[str, Match],
                          when: dt.datetime | None) -> None:
        findings = {vs: m for vs, m in hits.items() if vs in self.k.concepts.findings}
        if not findings:
            return
        present = self._presence(v)
        if not present:
            return
        self._seen(v, findings, self._when(v, "effectivePeriod.start") or when)
        if when is None:
            self.issue("warning", v.raw.label, "effective[x]",
                       "no date: treated as current so that a red flag is not missed", "used")
        elif days_between(when, self.now) > self.p["symptom_current_days"]:
            self.issue("information", v.raw.label, "effective[x]",
                       f"dated {_date_text(when)}, older than "
                       f"{_fmt(self.p['symptom_current_days'])} days: not current", "ignored")
            return
        qualifiers = self._classify(v.data.get("valueCodeableConcept"))
        severe = self.k.concepts.severe in qualifiers
        for component in v.data.get("component") or ():
            if isinstance(component, dict):
                extra = {**self._classify(component.get("code")),
                         **self._classify(component.get("valueCodeableConcept"))}
                severe = severe or self.k.concepts.severe in extra
                qualifiers.update(extra)
        for vs, match in qualifiers.items():
            if vs in self.k.concepts.findings:
                findings.setdefault(vs, match)
        onset = self._when(v, "effectivePeriod.start")
        lasted = max((d for d in map(self._duration, [v.data, *(v.data.get("component") or ())])
                      if d is not None), default=None)
        if lasted is not None and (onset is None or days_between(onset, self.now) < lasted):
            onset = self.now - dt.timedelta(days=lasted)
        text = concept_text(v.data.get("code")) or self._titles(findings)
        self._findings(v, "Observation", findings, severe, onset, when, text)

    def _duration(self, holder: Any) -> float | None:
        """Days a finding has lasted, when its value (or a component's) is a time quantity."""
        quantity = holder.get("valueQuantity") if isinstance(holder, dict) else None
        if not isinstance(quantity, dict) or number(quantity.get("value")) is None:
            return None
        unit = quantity.get("code") or quantity.get("unit")
        if not isinstance(unit, str):
            return None
        days = self.k.measurements.durations.get(self.k.measurements.canonical_unit(unit))
        return None if days is None else (number(quantity.get("value")) or 0.0) * days

    def _seen(self, v: Validated, findings: dict[str, Match], when: dt.datetime | None) -> None:
        """Remember the earliest record of each finding, current or not: a finding recorded
        again and again since then has lasted that long."""
        if when is None:
            return
        for concept in findings:
            first = self._first_seen.get(concept)
            if first is None or (when, v.raw.label) < first:  # ties: stable by reference
                self._first_seen[concept] = (when, v.raw.label)

    def _durations(self) -> None:
        """Give each current finding the duration since its concept was first recorded."""
        for index, fact in enumerate(self.out.facts):
            if not isinstance(fact, Finding) or fact.concept not in self._first_seen:
                continue
            first, label = self._first_seen[fact.concept]
            lasted = days_between(first, self.now)
            if fact.duration_days is not None and fact.duration_days >= lasted:
                continue
            self.out.facts[index] = fact.model_copy(update={"duration_days": lasted})
            evidence = self.out.evidence[fact.id]
            if label != evidence.reference:
                self.out.evidence[fact.id] = evidence.model_copy(update={
                    "text": f"{evidence.text}; {self.word('first_recorded')} "
                            f"{_date_text(first)} ({label})"})

    def _findings(self, v: Validated, source: Any, findings: dict[str, Match], severe: bool,
                  onset: dt.datetime | None, when: dt.datetime | None, text: str) -> None:
        duration = days_between(onset, self.now) if onset else None
        age = days_between(when, self.now) if when else None
        detail = text + (f" ({self.word('severe')})" if severe else "")
        if onset:
            detail += f", {self.word('since')} {_date_text(onset)}"
        elif when:
            detail += f", {_date_text(when)}"
        for concept, match in findings.items():
            fact = Finding(id=f"{v.raw.label}#{concept}", concept=concept, source=source,
                           severe=severe, duration_days=duration, age_days=age)
            self.add(fact, Evidence(reference=v.raw.label, text=detail, match=match.method,
                                    date=_date_text(when or onset)))

    # -- labs ----------------------------------------------------------------------------
    def _quantity(self, v: Validated, m: Measurement, path: str,
                  quantity: Any) -> Reading | None:
        """A Quantity read in the measurement's canonical unit, or None (reported)."""
        if not isinstance(quantity, dict):
            return None
        value = number(quantity.get("value"))
        if value is None:
            self.issue("error", v.raw.label, f"{path}.value", "no numeric value",
                       "value-not-used")
            return None
        spelled = quantity.get("code") or quantity.get("unit")
        if not isinstance(spelled, str) or not spelled.strip():
            self.issue("error", v.raw.label, f"{path}.unit",
                       f"no unit: {_fmt(value)} cannot be read as {m.unit}", "value-not-used")
            return None
        factor = m.factor(self.k.measurements.canonical_unit(spelled), self.p)
        if factor is None and isinstance(quantity.get("unit"), str):
            factor = m.factor(self.k.measurements.canonical_unit(quantity["unit"]), self.p)
        if factor is None:
            field = "code" if quantity.get("code") else "unit"
            self.issue("error", v.raw.label, f"{path}.{field}",
                       f"unit {spelled!r} is not a known unit for {m.display.en.lower()} "
                       f"(accepted: {', '.join(m.units)})", "value-not-used")
            return None
        shown = quantity.get("unit") if isinstance(quantity.get("unit"), str) else spelled
        return Reading(value * factor, value, str(shown), factor)

    def _lab(self, v: Validated, analyte: str, m: Measurement, when: dt.datetime | None,
             match: Match) -> None:
        if v.data.get("valueQuantity") is None:
            reason = first_code(v.data.get("dataAbsentReason"))
            self.issue("information" if reason else "error", v.raw.label, "valueQuantity",
                       f"no result value (dataAbsentReason {reason})" if reason
                       else "no valueQuantity", "value-not-used")
            return
        reading = self._quantity(v, m, "valueQuantity", v.data["valueQuantity"])
        if reading is None:
            return
        if when is None:
            self.issue("error", v.raw.label, "effective[x]",
                       "no date: cannot tell whether the result is current", "value-not-used")
            return
        age = days_between(when, self.now)
        if age > self.p["lab_stale_days"]:
            self.issue("information", v.raw.label, "effective[x]",
                       f"result from {_date_text(when)} is older than "
                       f"{_fmt(self.p['lab_stale_days'])} days: not current", "ignored")
            return
        low, high, range_text = self._reference_range(v, m)
        interpretation = self._interpretation(v)
        value = reading.value
        shown = f"{m.display(self.lang)} {reading.text}"
        if reading.factor != 1:
            shown += f" (= {value:.2f} {m.unit})"
        default_low = self.p[m.default_low] if m.default_low else 0.0
        default_high = self.p[m.default_high] if m.default_high else 0.0
        if range_text:
            shown += f" ({self.word('lab_range')} {range_text})"
        elif interpretation:
            shown += f" ({self.word('flagged', code=interpretation)})"
        else:
            shown += f" ({self.word('default_range')} {_fmt(default_low)}–{_fmt(default_high)}" \
                     f" {m.unit})"
        shown += f", {_date_text(when)}"
        fact = Lab(id=f"{v.raw.label}#{analyte}", analyte=analyte, value=value, unit=m.unit,
                   range_low=low, range_high=high, interpretation=interpretation,
                   default_low=default_low, default_high=default_high, age_days=age)
        self.add(fact, Evidence(reference=v.raw.label, text=shown, match=match.method,
                                date=_date_text(when)))

    def _reference_range(self, v: Validated,
                         m: Measurement) -> tuple[float | None, float | None, str]:
        """The lab's range in the canonical unit, and as the lab wrote it."""
        for index, entry in enumerate(v.data.get("referenceRange") or ()):
            if not isinstance(entry, dict) or ("low" not in entry and "high" not in entry):
                continue
            bounds: list[Reading | None] = []
            for end in ("low", "high"):
                if entry.get(end) is None:
                    bounds.append(None)
                    continue
                reading = self._quantity(v, m, f"referenceRange[{index}].{end}", entry[end])
                if reading is None:
                    return None, None, ""  # an unreadable range is not used at all
                bounds.append(reading)
            low, high = bounds
            either = low or high
            unit = either.unit if either else m.unit
            text = (f"{_fmt(low.raw) if low else '?'}–{_fmt(high.raw) if high else '?'} {unit}")
            return (low.value if low else None), (high.value if high else None), text
        return None, None, ""

    def _interpretation(self, v: Validated) -> str | None:
        trust = self.k.trust.interpretation
        known = trust.low | trust.high | trust.normal
        for concept in v.data.get("interpretation") or ():
            for system, code, _ in codings(concept):
                if code in known and system in (trust.system, None):
                    return code
        return None

    # -- intakes -------------------------------------------------------------------------
    def _intake(self, v: Validated, substance: str, m: Measurement, when: dt.datetime | None,
                match: Match) -> None:
        reading = self._quantity(v, m, "valueQuantity", v.data.get("valueQuantity"))
        if reading is None:
            if v.data.get("valueQuantity") is None:
                self.issue("warning", v.raw.label, "valueQuantity",
                           "an intake needs a valueQuantity", "value-not-used")
            return
        if when and days_between(when, self.now) > self.p["symptom_current_days"]:
            self.issue("information", v.raw.label, "effective[x]",
                       f"dated {_date_text(when)}: not current", "ignored")
            return
        value = reading.value
        shown = f"{m.display(self.lang)} {reading.text}"
        if reading.factor != 1:
            shown += f" (≈ {value:.0f} {m.unit})"
        if when:
            shown += f", {_date_text(when)}"
        fact = Intake(id=f"{v.raw.label}#{substance}", substance=substance, mg_per_day=value)
        self.add(fact, Evidence(reference=v.raw.label, text=shown, match=match.method,
                                date=_date_text(when)))

    # -- Condition -----------------------------------------------------------------------
    def _condition(self, v: Validated) -> None:
        trust = self.k.trust.condition
        hits = {vs: m for vs, m in self._classify(v.data.get("code")).items()
                if vs in self.k.concepts.findings}
        if not hits:
            return
        verification = first_code(v.data.get("verificationStatus"))
        if verification in trust.verification_excluded:
            self.issue("information", v.raw.label, "verificationStatus",
                       f"verification status {verification}: not used", "ignored")
            return
        clinical = first_code(v.data.get("clinicalStatus"))
        if clinical in trust.clinical_not_current:
            self.issue("information", v.raw.label, "clinicalStatus",
                       f"clinical status {clinical}: not current", "ignored")
            return
        if clinical not in trust.clinical_current:
            self.issue("warning", v.raw.label, "clinicalStatus",
                       f"clinical status {clinical or 'missing'}: treated as active so that "
                       "a red flag is not missed", "used")
        abated = self._when(v, "abatementDateTime", "abatementPeriod.end")
        if abated and abated <= self.now:
            self.issue("information", v.raw.label, "abatement[x]",
                       f"abated on {_date_text(abated)}: not current", "ignored")
            return
        onset = self._when(v, "onsetDateTime", "onsetPeriod.start")
        if self._future(v, onset, "onset[x]"):
            return
        recorded = self._when(v, "recordedDate")
        if recorded and (onset is None or recorded < onset):
            onset = recorded  # present at least since it was recorded
        severe = self.k.concepts.severe in self._classify(v.data.get("severity"))
        text = concept_text(v.data.get("code")) or self._titles(hits)
        self._seen(v, hits, onset)
        self._findings(v, "Condition", hits, severe, onset, recorded, text)

    # -- medications ---------------------------------------------------------------------
    def _medication_statement(self, v: Validated) -> None:
        self._medication(v, self.k.trust.medication_statement, "MedicationStatement",
                         ("effectivePeriod.end", "effectiveDateTime", "dateAsserted"))

    def _medication_request(self, v: Validated) -> None:
        if v.data.get("doNotPerform") is True:
            return
        self._medication(v, self.k.trust.medication_request, "MedicationRequest",
                         ("dispenseRequest.validityPeriod.end", "authoredOn"))

    def _medication_concepts(self, v: Validated) -> list[Any]:
        """The drug's CodeableConcepts: inline, or from the referenced Medication resource."""
        data = v.data
        r5: dict[str, Any] = data["medication"] if isinstance(
            data.get("medication"), dict) else {}
        concepts = [data.get("medicationCodeableConcept"), r5.get("concept")]
        ref = reference(data.get("medicationReference")) or reference(r5.get("reference"))
        if ref:
            medication = None
            if ref.startswith("#"):
                medication = next((c for c in data.get("contained") or ()
                                   if isinstance(c, dict) and c.get("id") == ref[1:]), None)
            else:
                medication = self._by_ref.get(ref)
            if medication is None:
                self.issue("warning", v.raw.label, "medication.reference",
                           f"{ref} is not in the input: the drug cannot be identified",
                           "value-not-used")
            else:
                concepts.append(medication.get("code"))
                for ingredient in medication.get("ingredient") or ():
                    if isinstance(ingredient, dict):
                        item = ingredient.get("item")
                        concepts.append(ingredient.get("itemCodeableConcept"))
                        if isinstance(item, dict):
                            concepts.append(item.get("concept"))
        return [c for c in concepts if isinstance(c, dict)]

    def _medication(self, v: Validated, trust: Any, source: Any,
                    end_paths: tuple[str, ...]) -> None:
        concepts = self._medication_concepts(v)
        classes: dict[str, Match] = {}
        for concept in concepts:
            for vs, match in self._classify(concept).items():
                if vs in self.k.concepts.drug_classes:
                    classes.setdefault(vs, match)
        text = " | ".join(t for c in concepts if (t := concept_text(c)))
        if not classes:
            for match in self.k.terminology.lookup_name(text, self.k.concepts.drug_classes):
                classes.setdefault(match.valueset, match)
        if not classes:
            return
        status = v.data.get("status")
        ended = self._when(v, *end_paths)
        proposed = v.raw.origin.startswith(DRAFT_ORDERS) and status in trust.proposed
        if proposed:
            pass  # the order being written now (CDS Hooks order-select / order-sign)
        elif status in trust.not_current or status not in trust.current | trust.recent:
            self.issue("information" if status in trust.not_current else "warning",
                       v.raw.label, "status", f"status {status!r}: not a current exposure",
                       "ignored")
            return
        adherence = first_code((v.data.get("adherence") or {}).get("code")
                               if isinstance(v.data.get("adherence"), dict) else None)
        if adherence in trust.adherence_not_taking:
            self.issue("information", v.raw.label, "adherence.code",
                       f"adherence {adherence}: not a current exposure", "ignored")
            return
        period_end = self._when(v, end_paths[0])
        recent_only = not proposed and (
            status in trust.recent or (period_end is not None and period_end < self.now))
        if recent_only:
            if ended is None:
                self.issue("information", v.raw.label, "effective[x]",
                           f"status {status} with no date: cannot tell if recent", "ignored")
                return
            if days_between(ended, self.now) > self.p["medication_recent_days"]:
                self.issue("information", v.raw.label, "effective[x]",
                           f"ended {_date_text(ended)}, more than "
                           f"{_fmt(self.p['medication_recent_days'])} days ago", "ignored")
                return
        routes = " | ".join(concept_text(d.get("route")) for d in
                            (v.data.get("dosage") or v.data.get("dosageInstruction") or ())
                            if isinstance(d, dict))
        name = text.split(" | ")[0] if text else (
            classes[next(iter(classes))].matched)
        for drug_class, match in classes.items():
            if self._not_systemic(v, drug_class, match, f"{text} | {routes}"):
                continue
            detail = f"{name} ({status}"
            if recent_only and ended:
                detail += f", {self.word('ended')} {_date_text(ended)}"
            detail += ")"
            fact = Medication(id=f"{v.raw.label}#{drug_class}", drug_class=drug_class,
                              source=source, status=str(status), proposed=proposed,
                              match=match.method)  # type: ignore[arg-type]
            self.add(fact, Evidence(reference=v.raw.label, text=detail, match=match.method,
                                    date=_date_text(ended)))

    def _not_systemic(self, v: Validated, drug_class: str, match: Match, text: str) -> bool:
        rule = self.k.trust.non_systemic.get(drug_class)
        if rule is None or match.matched.startswith(ATC):
            return False
        found = re.search(r"\b(" + "|".join(map(re.escape, rule.words)) + ")", text, re.I)
        if found is None:
            return False
        word = found.group(1)
        self.issue("information", v.raw.label, "medication",
                   f"{drug_class} recognised but '{word}' marks it as not systemic", "ignored")
        return True

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
