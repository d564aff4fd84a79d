"""``evaluate_many``: (patient id, resources) pairs in, one result per patient out.

The per-partition function every engine adapter calls (serial loop, process pool, Dask).
A patient the ``CardGate`` turns away costs a walk over its codings, not an evaluation; a
patient whose evaluation fails is reported as such and the rest go on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twitch_cds.cds_hooks import Card
from twitch_cds.evaluate import evaluate
from twitch_cds.fhir_in.reader import FhirVersion
from twitch_cds.issues import InputIssue
from twitch_cds.knowledge.bundle import Knowledge, default_knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.screening.gate import CardGate


@dataclass
class PatientResult:
    """One patient's outcome. ``evaluated`` is False when the gate showed that no card could
    follow (then ``cards`` and ``issues`` are empty: the data was not read further);
    ``error`` names the exception when the evaluation failed."""

    patient_id: str
    resources: int
    evaluated: bool
    cards: list[Card] = field(default_factory=list)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    issues: list[InputIssue] = field(default_factory=list)
    error: str | None = None


_gates: dict[int, tuple[Knowledge, CardGate]] = {}


def gate_for(knowledge: Knowledge) -> CardGate:
    """The process's gate for a ruleset (built once: it walks the rule graph)."""
    entry = _gates.get(id(knowledge))
    if entry is None:
        entry = _gates[id(knowledge)] = (knowledge, CardGate(knowledge))
    return entry[1]


def evaluate_many(
    patients: Iterable[tuple[str, Sequence[Any]] | tuple[str, Sequence[Any], bool]],
    *,
    now: dt.datetime | str | None = None,
    lang: Lang = "en",
    parameters: Mapping[str, float] | None = None,
    fhir_version: FhirVersion | None = None,
    knowledge: Knowledge | None = None,
) -> Iterator[PatientResult]:
    """Evaluate each patient's resources as ``evaluate()`` would, skipping those that cannot
    lead to a card. Not for use from two threads at once (the engine is not thread-safe):
    scale with processes. A third item False in a pair says the caller already knows the
    patient cannot lead to a card (``CardGate.may_card_raw`` on the raw lines)."""
    knowledge = knowledge or default_knowledge()
    gate = gate_for(knowledge)
    clock = now if now is not None else dt.datetime.now(dt.UTC)  # one clock for the run
    for patient_id, resources, *hint in patients:
        if (hint and not hint[0]) or not gate.could_card(resources):
            yield PatientResult(patient_id, len(resources), evaluated=False)
            continue
        try:
            result = evaluate(list(resources), now=clock, lang=lang, parameters=parameters,
                              fhir_version=fhir_version, knowledge=knowledge)
        except Exception as exc:  # one patient's failure must not stop the population
            yield PatientResult(patient_id, len(resources), evaluated=True,
                                error=f"{type(exc).__name__}: {exc}"[:500])
            continue
        yield PatientResult(patient_id, len(resources), evaluated=True, cards=result.cards,
                            evidence=result.evidence, issues=result.issues)
