"""Findings: symptoms, circumstances and conditions, from Observations and Conditions."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from twitch_cds.facts import Evidence, Finding
from twitch_cds.fhir_in.coding import concept_text, first_code, number, preview
from twitch_cds.fhir_in.context import ReaderContext, date_text
from twitch_cds.fhir_in.dates import days_between, parse_fhir_datetime
from twitch_cds.fhir_in.validate import Validated
from twitch_cds.fhir_in.value_text import record_details
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


class _Episode(NamedTuple):
    """A run of records of one finding no further apart than the follow-up interval."""

    start: dt.datetime
    end: dt.datetime
    first: str
    members: tuple[tuple[str, dt.datetime], ...]
    """Each record's reference and the date its evidence line shows."""


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
        known = self.k.concepts.findings
        findings = dict(hits) if known.issuperset(hits) else {  # most often all are findings
            vs: m for vs, m in hits.items() if vs in known}
        if not findings:
            return
        data = v.data
        if not _KNOWN_KEYS.issuperset(data) and not self._presence(v):
            return  # (with no value[x] and no dataAbsentReason, the record asserts presence)
        label = v.raw.label
        period = data.get("effectivePeriod")  # read (and reported) only when it is there
        start = (self._when(v, "effectivePeriod.start") if period is not None else None) or when
        age: float | None = None
        stale: list[str] = []  # the findings this record is too old for
        if when is None:
            self.issue("warning", v.raw.label, "effective[x]",
                       msg("finding-date-missing"), "used",
                       "date-missing")
        else:
            age = days_between(when, self.now)
            for vs in findings:
                if age > self._window(vs):
                    stale.append(vs)
        if stale and when is not None:
            for concept in stale:  # history: not current, but it links an episode
                self._seen(concept, start or when, when, v.raw.label)
            findings = {vs: m for vs, m in findings.items() if vs not in stale}
            older = max(self._window(vs) for vs in stale)
            self.issue("information", v.raw.label, "effective[x]",
                       msg("finding-stale", date=str(date_text(when)), days=older),
                       "ignored", "stale")
            if not findings:
                return  # else: the concepts still current (a longer window) are read
        value = data.get("valueCodeableConcept")
        qualifiers = self._classify(value) if value is not None else {}
        severe = self.k.concepts.severe in qualifiers
        components = data.get("component")
        for component in components or ():
            if isinstance(component, dict):
                extra = {**self._classify(component.get("code")),
                         **self._classify(component.get("valueCodeableConcept"))}
                severe = severe or self.k.concepts.severe in extra
                qualifiers.update(extra)
        for vs, match in qualifiers.items():
            if vs in known and (age is None or age <= self._window(vs)):
                findings.setdefault(vs, match)
        onset = self._when(v, "effectivePeriod.start") if period is not None else None
        lasted = None
        if "valueQuantity" in data or components:  # a time quantity, maybe
            holders = [("value", data), *((f"component[{i}].value", c) for i, c in
                                          enumerate(components or ()))]
            lasted = max((d for path, holder in holders
                          if (d := self._duration(v, path, holder)) is not None), default=None)
        if lasted is not None:  # "for 8 weeks", as of the record's date
            began = (when or self.now) - dt.timedelta(days=lasted)
            if onset is None or began < onset:
                onset = began
        if when is not None:
            ongoing = isinstance(period, dict) and period.get("end") is None and onset
            until = max(when, self.now) if ongoing else when  # an open period: still going
            for concept in findings:
                self._seen(concept, onset or when, until, label)
        text = concept_text(data.get("code"), self.own_words) or self._titles(findings)
        self._findings(v, "Observation", findings, severe, onset, when, text, age)

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

    def _seen(self, concept: str, start: dt.datetime, end: dt.datetime, label: str,
              dated: dt.datetime | None = None) -> None:
        """Remember a dated record of a finding, current or not, as the time it covers: an
        Observation from its onset to its date, an active Condition from its onset to now.
        ``dated`` is the date its evidence line shows (the record's own date; the onset for
        a Condition)."""
        self._spans.setdefault(concept, []).append((start, end, label, dated or end))

    def _durations(self) -> None:
        """Give each current finding the length of its episode: the records of its concept
        no further apart than ``finding_episode_gap_days`` (a follow-up interval), from the
        first one's onset to the last one's date (now for an active Condition). A finding
        recorded two years ago and again yesterday has lasted a day, not two years; one
        recorded at visits six weeks apart over three months has lasted three months.
        The records that are no longer current but hold the episode together are evidence
        too (on one current record of the episode, so a card lists each once): the
        duration rests on them. Sorting is per concept, the rest one pass."""
        gap = self.p["finding_episode_gap_days"]
        episode_of: dict[tuple[str, str], _Episode] = {}
        for concept, spans in self._spans.items():
            spans.sort()
            start, end, first, _ = spans[0]
            members: list[tuple[str, dt.datetime]] = []
            for span_start, span_end, label, dated in spans:
                if members and (span_start - end).total_seconds() / 86400.0 > gap:
                    episode = _Episode(start, end, first, tuple(members))
                    for m, _ in members:
                        episode_of[concept, m] = episode
                    start, end, first, members = span_start, span_end, label, []
                if span_end > end:  # max(end, span_end), the earlier one kept when equal
                    end = span_end
                members.append((label, dated))
            episode = _Episode(start, end, first, tuple(members))
            for m, _ in members:
                episode_of[concept, m] = episode
        evidence_of = self.out.evidence
        findings = [(f, evidence_of[f.id]) for f in self.out.facts if isinstance(f, Finding)]
        current = {(f.concept, e.reference) for f, e in findings}
        # what an episode gives each of its current records, worked out once per episode:
        # its times, and the evidence line of the record that dates it (read only, shared)
        timed: dict[int, tuple[float, float, float, Evidence]] = {}
        for fact, evidence in findings:
            reference = evidence.reference
            found = episode_of.get((fact.concept, reference))
            if found is None:
                continue  # undated: its own onset, if any, is all there is
            times = timed.get(id(found))
            if times is not None:  # a later record of an episode already met
                fact.duration_days, fact.last_seen_days, fact.onset_days, dating = times
                if found.first != reference:  # the record that dates the episode
                    evidence.also = (dating,)
                continue
            start, end, first, chain = found
            day = date_text(start)
            times = timed[id(found)] = (
                max(0.0, days_between(start, end)), max(0.0, days_between(end, self.now)),
                max(0.0, days_between(start, self.now)),
                Evidence(reference=first, match="code", date=day,
                         text=self.word("episode_start", date=str(day))))
            # the reader's own fact
            fact.duration_days, fact.last_seen_days, fact.onset_days, dating = times
            also: list[Evidence] = []
            if first != reference:  # the record that dates the episode is evidence
                also.append(dating)
            # the records between, once per episode (on the first current record met)
            also += [Evidence(reference=m, match="code", date=date_text(dated),
                              text=self.word("episode_record", date=str(date_text(dated))))
                     for m, dated in chain
                     if m not in (first, reference) and (fact.concept, m) not in current]
            if also:
                evidence.also = tuple(also)

    def _findings(self, v: Validated, source: Any, findings: dict[str, Match], severe: bool,
                  onset: dt.datetime | None, when: dt.datetime | None, text: str,
                  age: float | None) -> None:
        """One fact per finding, with its evidence line (``age``: days since ``when``)."""
        duration = days_between(onset, self.now) if onset else None
        details = record_details(v.data, text)  # value, components, body site, flag
        detail = f": {'; '.join(details)}" if details else ""
        detail += f" ({self.word('severe')})" if severe else ""
        date = date_text(when or onset)
        if onset:
            detail += f", {self.word('since')} {date_text(onset)}"
        elif when:
            detail += f", {date}"
        label = v.raw.label
        for concept, match in findings.items():
            fact = Finding(id=f"{label}#{concept}", concept=concept, source=source,
                           severe=severe, duration_days=duration, age_days=age)
            shown = text if match.method != "broader" else (  # and what the code says
                f"{text} ({self.k.terminology.broader_name(match, text)})")
            self.add(fact, Evidence(reference=label, text=shown + detail,
                                    match=match.method, date=date))

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
        severity = v.data.get("severity")
        severe = severity is not None and self.k.concepts.severe in self._classify(severity)
        text = concept_text(v.data.get("code"), self.own_words) or self._titles(hits)
        if onset is not None:  # active: continuous from its onset until now
            for concept in hits:
                self._seen(concept, onset, max(onset, self.now), v.raw.label, onset)
        self._findings(v, "Condition", hits, severe, onset, recorded, text,
                       days_between(recorded, self.now) if recorded else None)

    # -- Procedure -----------------------------------------------------------------------
    def _procedure(self, v: Validated) -> None:
        """A completed procedure that records a finding (an EMG, a neurology consultation:
        ``concepts.procedures``), dated when it was done. Only ``completed`` counts, as only
        a done procedure evaluated anything; an undated one cannot show it came after the
        twitching began, so it is reported and not counted (the card stays as urgent)."""
        hits = {vs: m for vs, m in self._classify(v.data.get("code")).items()
                if vs in self.k.concepts.procedures}
        if not hits:
            return
        trust = self.k.trust.procedure
        status = v.data.get("status")
        if status not in trust.usable:
            if status is None:
                self.supersede(v, "status")
            self.issue("information" if status in trust.not_usable else "warning",
                       v.raw.label, "status",
                       msg("procedure-status-missing") if status is None
                       else msg("procedure-status", status=preview(status)), "ignored",
                       "status-unusable")
            return
        r5 = v.version == "R5"
        path = "occurrence[x]" if r5 else "performed[x]"
        when = self._when(v, *((f"{path[:-3]}DateTime", f"{path[:-3]}Period.end",
                                f"{path[:-3]}Period.start")))
        if when is None:
            self.issue("warning", v.raw.label, path, msg("procedure-date-missing"), "ignored",
                       "date-missing")
            return
        if self._future(v, when, path):
            return
        age = days_between(when, self.now)
        current = {vs: m for vs, m in hits.items() if age <= self._window(vs)}
        if not current:
            self.issue("information", v.raw.label, path,
                       msg("finding-stale", date=str(date_text(when)),
                           days=max(self._window(vs) for vs in hits)), "ignored", "stale")
            return
        text = concept_text(v.data.get("code"), self.own_words) or self._titles(current)
        self._findings(v, "Procedure", current, False, None, when, text, age)
