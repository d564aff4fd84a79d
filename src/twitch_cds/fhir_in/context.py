"""What every part of the FHIR reader shares for one call: knowledge, parameters, the
clock, the facts and issues so far, and the small helpers they all use."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any

from twitch_cds.facts import Evidence, Fact
from twitch_cds.fhir_in.coding import codings, preview
from twitch_cds.fhir_in.dates import days_between, parse_fhir_datetime
from twitch_cds.fhir_in.validate import Validated
from twitch_cds.issues import Action, InputIssue, IssueCode, Problem, Severity, msg, safe_text
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.knowledge.terminology import Match


@dataclass
class Normalised:
    facts: list[Fact] = field(default_factory=list)
    evidence: dict[str, Evidence] = field(default_factory=dict)
    issues: list[InputIssue] = field(default_factory=list)
    patient: str | None = None
    """``Patient/id`` of the patient the data is about, when known."""


EVIDENCE_TEXT_LIMIT = 500
"""Characters of a record's own text carried into a card's evidence."""


def date_text(when: dt.datetime | None) -> str | None:
    return _day(when) if when else None


@functools.lru_cache(maxsize=4096)
def _day(when: dt.datetime) -> str:
    return when.date().isoformat()


_STEPS: dict[str, tuple[str, tuple[str, ...]]] = {}
"""A dotted path (``effectivePeriod.start``) split once: its first key and the rest."""


def _steps(path: str) -> tuple[str, tuple[str, ...]]:
    found = _STEPS.get(path)
    if found is None:
        first, *rest = path.split(".")
        found = _STEPS[path] = (first, tuple(rest))
    return found


def fmt(value: float) -> str:
    return f"{value:g}"


class ReaderContext:
    """Per-call state and helpers; the readers for each kind of resource build on it."""

    def __init__(self, knowledge: Knowledge, parameters: dict[str, float], now: dt.datetime,
                 lang: Lang = "en"):
        self.k = knowledge
        self.lang: Lang = lang
        self.p = parameters
        self.now = now
        self.out = Normalised()
        self._by_ref: dict[str, dict[str, Any]] = {}
        self._spans: dict[str, list[tuple[dt.datetime, dt.datetime, str, dt.datetime]]] = {}
        """Finding concept -> (start, end, reference) of every dated record of it, current
        or not: the episodes a finding's duration is measured on."""
        self._patient_sex_and_age: tuple[Any, float | None] | None = None
        self._classified: dict[int, tuple[Any, dict[str, Match]]] = {}
        self._title_texts: dict[tuple[str, ...], str] = {}
        self._windows: dict[str, float] = {}
        """Finding concept -> days an Observation of it stays current (worked out once)."""
        self._word_texts: dict[str, str] = {}
        self._subjects: dict[str, str] = {}
        """``Reference.reference`` of a subject -> the patient it names, or ``?``."""
        self._factors: dict[tuple[int, str], float | None] = {}
        """(measurement, unit as written) -> factor to its canonical unit, or None."""
        self._interpretations: frozenset[str] | None = None
        self._measured: dict[int, Any] = {}
        """Measurement (by identity) -> its limits for this call (``labs.Limits``)."""
        self.own_words = knowledge.terminology.own_words(lang) if lang != "en" else None
        """Our own codes' displays in the caller's language (None: as sent)."""
        measurements = knowledge.measurements
        self._analytes = {m.valueset: (name, m) for name, m in measurements.analytes.items()}
        self._intakes = {m.valueset: (name, m) for name, m in measurements.intakes.items()}

    def word(self, key: str, **values: str) -> str:
        """An evidence word from cards.yaml, in the caller's language."""
        text = self._word_texts.get(key)
        if text is None:
            text = self._word_texts[key] = self.k.cards.evidence_words[key](self.lang)
        return text.format(**values) if values else text

    # -- reporting -----------------------------------------------------------------------
    def issue(self, severity: Severity, resource: str, path: str, problem: Problem,
              action: Action, code: IssueCode) -> None:
        """Report an issue; ``problem`` is ``msg(key, **params)`` from the catalogue."""
        self.out.issues.append(InputIssue(severity=severity, resource=resource, path=path,
                                          action=action, code=code, **problem))

    def supersede(self, v: Validated, path: str) -> None:
        """Drop strict validation's issue on a field the reader reports itself (a missing
        ``status``: "required" there, "not used" here): each field is reported once."""
        v.issues[:] = [i for i in v.issues if i.path != path]

    def add(self, fact: Fact, evidence: Evidence) -> None:
        if fact.id in self.out.evidence:
            return  # the same resource arrived twice (e.g. in two prefetch keys)
        self.out.facts.append(fact)
        # the record's own words reach cards: one safe line, of a readable length
        text = evidence.text
        if len(text) > EVIDENCE_TEXT_LIMIT or not text.isprintable():
            text = safe_text(text, EVIDENCE_TEXT_LIMIT)
        self.out.evidence[fact.id] = evidence if text == evidence.text else evidence.replace(
            text=text)

    # -- shared pieces -------------------------------------------------------------------
    def _classify(self, concept: Any) -> dict[str, Match]:
        """The value sets a CodeableConcept's codings fall in. Remembered for this call by the
        concept's identity: screening, reading and presence checks ask about the same one."""
        key = id(concept)
        found = self._classified.get(key)
        if found is not None and found[0] is concept:
            return dict(found[1])
        hits: dict[str, Match] = {}
        for system, code, _ in codings(concept):
            for match in self.k.terminology.lookup(system, code):
                if hits.setdefault(match.valueset, match).method == "broader":
                    hits[match.valueset] = match  # a coding as narrow as the concept wins
        self._classified[key] = (concept, hits)
        return dict(hits)

    def _when(self, v: Validated, *paths: str) -> dt.datetime | None:
        """The first readable date among the paths (``effectivePeriod.start`` style)."""
        data = v.data
        for path in paths:
            first, rest = _STEPS.get(path) or _steps(path)
            node: Any = data.get(first)
            if node is None:
                continue  # the common case: a path the resource does not have
            for part in rest:
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                continue
            when = parse_fhir_datetime(node)
            if when is None:
                self.issue("warning", v.raw.label, path, msg("date-invalid", value=preview(node)),
                           "value-not-used", "date-invalid")
                continue
            return when
        return None

    def _future(self, v: Validated, when: dt.datetime | None, path: str) -> bool:
        if when and days_between(self.now, when) * 24 > self.p["future_tolerance_hours"]:
            self.issue("error", v.raw.label, path,
                       msg("future-date", date=when.isoformat(), now=self.now.isoformat()),
                       "skipped", "future-date")
            return True
        return False

    def _window(self, concept: str) -> float:
        """Days an Observation of this finding stays current (concepts.yaml names the
        parameter: neuromuscular signs stay current longer than symptoms)."""
        days = self._windows.get(concept)
        if days is None:
            days = self._windows[concept] = self.p[self.k.concepts.window(concept)]
        return days

    def _titles(self, valuesets: dict[str, Match]) -> str:
        """What a coded-only record is, when it carries no display or text."""
        key = tuple(valuesets)
        text = self._title_texts.get(key)
        if text is None:
            text = self._title_texts[key] = ", ".join(self.k.terminology.titles[vs] for vs in key)
        return text
