"""``evaluate()``: one patient's FHIR data in, CDS Hooks cards out.

FHIR in -> validated resources -> trusted facts -> durable-rules session -> conclusions ->
cards. The ruleset is compiled once per process; each call gets its own engine session.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection, Mapping
from typing import Any

from twitch_cds.aggregate import Aggregated, aggregate
from twitch_cds.card_builder import CardBuilder
from twitch_cds.engine import RuleEngine, SessionResult
from twitch_cds.facts import Evidence
from twitch_cds.fhir_in.normalise import Normaliser
from twitch_cds.fhir_in.reader import FhirVersion, read_input
from twitch_cds.fhir_in.screen import screen
from twitch_cds.knowledge.bundle import Knowledge, default_knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.provenance import Provenance
from twitch_cds.result import DerivedFinding, EvaluationResult, FactRef, RuleFiring, Trace

_engines: dict[int, tuple[Knowledge, RuleEngine]] = {}
_engines_lock = threading.Lock()
_process_parameters: dict[str, float] = {}


def engine_for(knowledge: Knowledge) -> RuleEngine:
    """The process's engine for a ruleset, compiled on first use and then reused."""
    with _engines_lock:
        entry = _engines.get(id(knowledge))
        if entry is None:
            entry = (knowledge, RuleEngine(knowledge))
            _engines[id(knowledge)] = entry
        return entry[1]


def set_default_parameters(parameters: Mapping[str, float] | None) -> None:
    """Override parameter defaults for every later call in this process (None resets)."""
    default_knowledge().parameters.resolve(parameters)  # validate before storing
    _process_parameters.clear()
    _process_parameters.update(parameters or {})


def _now(now: dt.datetime | str | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if isinstance(now, str):
        try:
            now = dt.datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"now={now!r} is not an ISO 8601 date-time") from exc
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def evaluate(
    data: Any,
    *,
    now: dt.datetime | str | None = None,
    lang: Lang = "en",
    parameters: Mapping[str, float] | None = None,
    fhir_version: FhirVersion | None = None,
    knowledge: Knowledge | None = None,
    catalogue: str | None = None,
    suppress: Collection[str] = (),
) -> EvaluationResult:
    """Evaluate one patient's FHIR data against the article's rules.

    ``data`` is a Bundle, a list of resources, one resource, JSON text or bytes,
    fhir.resources models, or a CDS Hooks request. ``now`` fixes the clock (default: the
    current time). ``parameters`` overrides thresholds from ``rulesets/parameters.yaml``.
    ``catalogue`` is the base URL of the rule catalogue the cards link to (each rule's page
    ``<catalogue>/<lang>/rules/<rule-id>.html``; default ``source.catalogue`` in cards.yaml).
    ``suppress``: uuids of cards to leave out — cards a clinician overrode as already
    addressed (CDS Hooks feedback); a card's uuid changes with the patient, the rules and
    the records it cites, so new evidence shows it again. Left-out uuids are in
    ``result.suppressed``. Raises ``InputError`` only when nothing can be read as FHIR;
    every lesser problem is in ``result.issues``.
    """
    if lang not in ("en", "id"):
        raise ValueError(f"lang must be 'en' or 'id', got {lang!r}")
    knowledge = knowledge or default_knowledge()
    clock = _now(now)
    values = knowledge.parameters.resolve(_process_parameters, parameters)
    read = read_input(data)
    normaliser = Normaliser(knowledge, values, clock, lang)
    screened = screen(read.resources, normaliser, fhir_version)
    validated = screened.validated
    patient_id = None
    if read.request is not None:
        context_patient = read.request.context.get("patientId")
        patient_id = context_patient if isinstance(context_patient, str) else None
    normalised = normaliser.run(validated, patient_id)
    grouped = aggregate((f.to_engine() for f in normalised.facts), knowledge.reads)
    session = engine_for(knowledge).run(grouped.facts, values)
    basis = {d["id"]: d["basis"] for d in session.derived}
    provenance = Provenance(grouped.members, basis, session.merged)
    r5 = bool(validated) and all(v.version == "R5" for v in validated)
    built = CardBuilder(knowledge, lang, catalogue, "R5" if r5 else "R4B").build(
        session.conclusions, normalised.evidence, provenance, normalised.patient
    )
    suppressed = [str(b.card.uuid) for b in built if str(b.card.uuid) in suppress]
    if suppressed:
        built = [b for b in built if str(b.card.uuid) not in suppress]
    issues = [*read.issues, *screened.issues, *(i for v in validated for i in v.issues),
              *normalised.issues]
    if lang != "en":  # issues are made in English; their message keys give the rest
        issues = [i.in_lang(lang) for i in issues]
    return EvaluationResult.with_trace(
        lambda: _trace(knowledge, normalised.evidence, session, grouped,
                       Provenance(grouped.members, basis), len(normalised.facts)),
        cards=[b.card for b in built],
        evidence={str(b.card.uuid): b.references for b in built},
        issues=issues,
        patient=normalised.patient,
        now=clock,
        suppressed=suppressed,
    )


def _trace(knowledge: Knowledge, evidence: Mapping[str, Evidence], session: SessionResult,
           grouped: Aggregated, provenance: Provenance, fact_count: int) -> Trace:
    refs: dict[str, FactRef] = {}

    def ref(fact_id: str) -> FactRef:
        found = refs.get(fact_id)
        if found is None:
            members = grouped.members.get(fact_id)
            item = evidence.get(members[0] if members else fact_id)
            found = refs[fact_id] = FactRef(
                id=fact_id, reference=item.reference if item else None,
                text=item.text if item else None, match=item.match if item else None,
                members=[evidence[m].reference for m in members if m in evidence]
                if members else [])
        return found

    def sources(fact_id: str) -> list[str]:
        items = (evidence.get(i) for i in provenance.inputs([fact_id]))
        return list(dict.fromkeys(ref for item in items if item
                                  for ref in (item.reference, *(o.reference for o in item.also))))

    versions = {c.rule.id: c.rule.maintenance.version for c in knowledge.rules}
    fired = [
        RuleFiring(rule_id=f.rule_id, version=versions[f.rule_id],
                   facts={bind: ref(fid) for bind, fid in f.facts.items()})
        for f in session.firings
    ]
    hidden = ("id", "name", "type", "basis")
    derived = [
        DerivedFinding(id=d["id"], name=d["name"],
                       values={k: v for k, v in d.items() if k not in hidden},
                       evidence=sources(d["id"]))
        for d in session.derived
    ]
    return Trace(ruleset_version=knowledge.version, facts=fact_count,
                 asserted=len(grouped.facts), fired=fired, derived=derived)
