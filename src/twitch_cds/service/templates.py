"""Prefetch templates: the FHIR searches the rules need, each short enough for an EHR.

Observations are searched by the codes of the value sets the rules read, written as FHIR
token parameters (``code=system|code,system|code``, ``|`` sent as ``%7C``) and split over
``observations-1``, ``observations-2``, ... so that every search, with
``{{context.patientId}}`` replaced by a 64-character id, stays within the configured URL
length. Only codes of systems an Observation is coded in (LOINC, SNOMED CT, twitch-cds' own
CodeSystem) go to the Observation searches; ICD-10-CM codes name conditions, and every
Condition of the patient is fetched by the Condition search.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from twitch_cds.knowledge.bundle import Knowledge

PATIENT = "{{context.patientId}}"
LONGEST_ID = "x" * 64
"""FHIR ids are at most 64 characters: the length a template is measured with."""
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
OBSERVATIONS = "observations"

SERVICE_ONLY_CARDS = ("check-incomplete",)


@dataclass(frozen=True)
class Prefetch:
    template: str
    required: bool
    """Needed to answer: if neither prefetched nor fetchable, the call fails with 412."""
    cards: tuple[str, ...]
    """The card kinds that read what this search returns."""
    group: str | None = None
    """The one input this key is a part of (``observations``): a client that sends the
    group's key whole satisfies every part."""


def expanded_length(template: str) -> int:
    """The template's length with ``{{context.patientId}}`` as a 64-character id."""
    return len(template.replace(PATIENT, LONGEST_ID))


def token(system: str, code: str) -> str:
    """``system|code`` as a FHIR search token, escaped (``\\,`` ``\\|`` ``\\$``) and
    percent-encoded (``|`` as ``%7C``); ``:`` and ``/`` stay, as a query allows them."""
    def escaped(value: str) -> str:
        for char in "\\,|$":
            value = value.replace(char, "\\" + char)
        return quote(value, safe=":/")
    return f"{escaped(system)}%7C{escaped(code)}"


def observation_codes(knowledge: Knowledge) -> list[tuple[str, str]]:
    """The codes an Observation the rules read can carry, in the systems Observations use."""
    valuesets = [*knowledge.concepts.findings,
                 *(m.valueset for m in knowledge.measurements.analytes.values()),
                 *(m.valueset for m in knowledge.measurements.intakes.values())]
    systems = {LOINC, SNOMED, knowledge.cards.source.topic_system}
    return [(system, code) for system, code in knowledge.terminology.codes(valuesets)
            if system in systems]


def split_search(base: str, tokens: Iterable[str], max_length: int) -> list[str]:
    """``base`` + ``,``-joined tokens, as few searches as fit, each within ``max_length``
    once expanded. ValueError when even one token does not fit."""
    searches: list[str] = []
    current = ""
    for item in tokens:
        candidate = f"{current},{item}" if current else base + item
        if expanded_length(candidate) <= max_length:
            current = candidate
            continue
        if not current or expanded_length(base + item) > max_length:
            raise ValueError(f"max_prefetch_url_length {max_length} is too short for one "
                             f"code: {base + item}")
        searches.append(current)
        current = base + item
    if current:
        searches.append(current)
    return searches


def prefetch_templates(knowledge: Knowledge, max_url_length: int = 2000) -> dict[str, Prefetch]:
    """What the rules read, as FHIR searches for ``{{context.patientId}}``, each within
    ``max_url_length`` characters (counted with a 64-character patient id)."""
    # every card needs a current twitching finding, from an Observation or a Condition
    every = tuple(card for card in knowledge.cards.cards if card not in SERVICE_ONLY_CARDS)

    def cards(*kinds: str) -> tuple[str, ...]:
        """The cards (contract 3.0) that carry these conclusion kinds."""
        return tuple(dict.fromkeys(knowledge.cards.kinds[kind].card for kind in kinds))

    tokens = [token(system, code) for system, code in observation_codes(knowledge)]
    observations = split_search(f"Observation?patient={PATIENT}&code=", tokens, max_url_length)
    templates = {
        # gender and birthDate: the lab range for the patient's sex, an onset given as an age
        "patient": Prefetch(f"Patient/{PATIENT}", required=False,
                            cards=cards("red-flag", "electrolyte-depletion", "critical-lab",
                                        "electrolyte-high")),
        **{f"{OBSERVATIONS}-{n}": Prefetch(search, required=True, cards=every,
                                           group=OBSERVATIONS)
           for n, search in enumerate(observations, start=1)},
        "conditions": Prefetch(f"Condition?patient={PATIENT}", required=True, cards=every),
        # a drug on record is named on the critical-lab card as a possible cause
        "medicationRequests": Prefetch(f"MedicationRequest?patient={PATIENT}", required=True,
                                       cards=cards("medication-side-effect", "critical-lab")),
        "medicationStatements": Prefetch(f"MedicationStatement?patient={PATIENT}",
                                         required=False,
                                         cards=cards("medication-side-effect", "critical-lab")),
        # an EMG or nerve conduction study as EHRs record it: settles an evaluated problem
        "procedures": Prefetch(f"Procedure?patient={PATIENT}", required=False,
                               cards=cards("red-flag-evaluated")),
    }
    for key, prefetch in templates.items():
        if expanded_length(prefetch.template) > max_url_length:
            raise ValueError(f"max_prefetch_url_length {max_url_length} is too short for "
                             f"the {key} search")
    return templates
