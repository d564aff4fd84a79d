"""Findings: symptoms, circumstances and conditions, from Observations and Conditions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from twitch_cds.facts import Evidence, Finding
from twitch_cds.fhir_in.coding import concept_text, first_code, number, preview
from twitch_cds.fhir_in.context import ReaderContext, date_text
from twitch_cds.fhir_in.dates import days_between, parse_fhir_datetime
from twitch_cds.fhir_in.validate import Validated
from twitch_cds.issues import issue_word, msg
from twitch_cds.knowledge.terminology import Match

_VALUE_KEYS = frozenset({
    "valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger",
    "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime",
    "valuePeriod", "valueAttachment", "valueReference"})
_KNOWN_KEYS = frozenset({
    "resourceType", "id", "meta", "text", "status", "category", "code", "subject",
    "encounter", "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued",
    "performer", "note", "component", "interpretation", "referenceRange", "identifier",
    "basedOn", "partOf", "focus", "bodySite", "method", "device", "hasMember", "derivedFrom",
    "extension", "modifierExtension", "language", "implicitRules", "contained"})
"""Observation keys that are not a value[x] (the fast path of "does it carry a value")."""


class FindingReader(ReaderContext):
    """Present, current findings, with severity and how long they have lasted."""

    def _value_findings(self, data: dict[str, Any]) -> dict[str, Match]:
        """Findings carried as the value of a generic Observation (code "Symptom", value
        "Muscle fasciculation"), a common way of recording symptoms."""
        return {vs: m for vs, m in self._classify(data.get("valueCodeableConcept")).items()
                if vs in self.k.concepts.findings}

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
                       msg("finding-absent-reason", reason=preview(reason)),
                       "ignored", "value-missing")
            return None
        if not _VALUE_KEYS.isdisjoint(data) or any(k.startswith("value") for k in data
                                                   if k not in _KNOWN_KEYS):
            self.issue("warning", v.raw.label, "value[x]",
                       msg("finding-value-unreadable"), "ignored",
                       "value-unreadable")
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
                       msg("finding-date-missing"), "used",
                       "date-missing")
        elif days_between(when, self.now) > self.p["symptom_current_days"]:
            self.issue("information", v.raw.label, "effective[x]",
                       msg("finding-stale", date=str(date_text(when)),
                           days=self.p["symptom_current_days"]), "ignored",
                       "stale")
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
        lasted = None
        if "valueQuantity" in v.data or v.data.get("component"):  # a time quantity, maybe
            holders = [("value", v.data), *((f"component[{i}].value", c) for i, c in
                                             enumerate(v.data.get("component") or ()))]
            lasted = max((d for path, holder in holders
                          if (d := self._duration(v, path, holder)) is not None), default=None)
        if lasted is not None and (onset is None or days_between(onset, self.now) < lasted):
            onset = self.now - dt.timedelta(days=lasted)
        text = concept_text(v.data.get("code")) or self._titles(findings)
        self._findings(v, "Observation", findings, severe, onset, when, text)

    def _duration(self, v: Validated, path: str, holder: Any) -> float | None:
        """Days a finding has lasted, when its value (or a component's) is a time quantity."""
        quantity = holder.get("valueQuantity") if isinstance(holder, dict) else None
        return self._days(v, f"{path}Quantity", quantity)

    def _days(self, v: Validated, path: str, quantity: Any) -> float | None:
        """A time Quantity (Duration, Age) in days; an impossible one is reported, not used."""
        value = number(quantity.get("value")) if isinstance(quantity, dict) else None
        if value is None:
            return None
        unit = quantity.get("code") or quantity.get("unit")
        if not isinstance(unit, str):
            return None
        days = self.k.measurements.durations.get(self.k.measurements.canonical_unit(unit))
        if days is None:
            return None
        longest = self.p["finding_duration_max_days"]
        if not 0 <= value * days <= longest:
            self.issue("warning", v.raw.label, path,
                       msg("duration-implausible", value=value, unit=preview(unit),
                           longest=longest), "value-not-used", "implausible-value")
            return None
        return value * days

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
        for fact in self.out.facts:
            if not isinstance(fact, Finding) or fact.concept not in self._first_seen:
                continue
            first, label = self._first_seen[fact.concept]
            lasted = days_between(first, self.now)
            if fact.duration_days is not None and fact.duration_days >= lasted:
                continue
            fact.duration_days = lasted  # still the reader's own fact: nothing else holds it
            evidence = self.out.evidence[fact.id]
            if label != evidence.reference:
                evidence.text = f"{evidence.text}; {self.word('first_recorded')} " \
                                f"{date_text(first)} ({label})"

    def _findings(self, v: Validated, source: Any, findings: dict[str, Match], severe: bool,
                  onset: dt.datetime | None, when: dt.datetime | None, text: str) -> None:
        duration = days_between(onset, self.now) if onset else None
        age = days_between(when, self.now) if when else None
        detail = text + (f" ({self.word('severe')})" if severe else "")
        if onset:
            detail += f", {self.word('since')} {date_text(onset)}"
        elif when:
            detail += f", {date_text(when)}"
        for concept, match in findings.items():
            fact = Finding(id=f"{v.raw.label}#{concept}", concept=concept, source=source,
                           severe=severe, duration_days=duration, age_days=age)
            self.add(fact, Evidence(reference=v.raw.label, text=detail, match=match.method,
                                    date=date_text(when or onset)))

    # -- Condition -----------------------------------------------------------------------
    def _onset_other(self, v: Validated) -> dt.datetime | None:
        """``onsetString`` when it is a date; ``onsetAge`` and ``onsetRange`` (the higher age:
        present at least since then) dated with the patient's birth date. Reported when not
        usable: the Condition still counts, without its onset."""
        data = v.data
        if isinstance(data.get("onsetString"), str):
            when = parse_fhir_datetime(data["onsetString"].strip())
            if when is None:
                self.issue("information", v.raw.label, "onsetString",
                           msg("onset-string", value=preview(data["onsetString"])),
                           "value-not-used", "onset-unusable")
            return when
        if isinstance(data.get("onsetAge"), dict):
            path, age = "onsetAge", data["onsetAge"]
        elif isinstance(data.get("onsetRange"), dict):
            bounds = data["onsetRange"]
            end = "high" if isinstance(bounds.get("high"), dict) else "low"
            path, age = f"onsetRange.{end}", bounds.get(end)
        else:
            return None
        days = self._days(v, path, age)
        patient = self._by_ref.get(self.out.patient or "", {})
        born = parse_fhir_datetime(patient.get("birthDate"))
        if days is None or born is None:
            self.issue("information", v.raw.label, path,
                       msg("onset-age-incomplete"), "value-not-used", "onset-unusable")
            return None
        try:
            return born + dt.timedelta(days=days)
        except OverflowError:
            self.issue("information", v.raw.label, path, msg("onset-age-range"),
                       "value-not-used", "onset-unusable")
            return None


    def _condition(self, v: Validated) -> None:
        trust = self.k.trust.condition
        hits = {vs: m for vs, m in self._classify(v.data.get("code")).items()
                if vs in self.k.concepts.findings}
        if not hits:
            return
        verification = first_code(v.data.get("verificationStatus"))
        if verification in trust.verification_excluded:
            self.issue("information", v.raw.label, "verificationStatus",
                       msg("verification-status", status=preview(verification)), "ignored",
                       "status-unusable")
            return
        clinical = first_code(v.data.get("clinicalStatus"))
        if clinical in trust.clinical_not_current:
            self.issue("information", v.raw.label, "clinicalStatus",
                       msg("clinical-status-not-current", status=preview(clinical)), "ignored",
                       "status-unusable")
            return
        if clinical not in trust.clinical_current:
            self.issue("warning", v.raw.label, "clinicalStatus",
                       msg("clinical-status-assumed", status=preview(clinical) if clinical
                           else issue_word("missing")), "used",
                       "status-assumed")
        abated = self._when(v, "abatementDateTime", "abatementPeriod.end")
        if abated and abated <= self.now:
            self.issue("information", v.raw.label, "abatement[x]",
                       msg("abated", date=str(date_text(abated))), "ignored", "stale")
            return
        onset = self._when(v, "onsetDateTime", "onsetPeriod.start") or self._onset_other(v)
        if self._future(v, onset, "onset[x]"):
            return
        recorded = self._when(v, "recordedDate")
        if recorded and (onset is None or recorded < onset):
            onset = recorded  # present at least since it was recorded
        severe = self.k.concepts.severe in self._classify(v.data.get("severity"))
        text = concept_text(v.data.get("code")) or self._titles(hits)
        self._seen(v, hits, onset)
        self._findings(v, "Condition", hits, severe, onset, recorded, text)
