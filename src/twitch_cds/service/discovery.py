"""The services twitch-cds offers, and the prefetch templates derived from its value sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twitch_cds.knowledge.bundle import Knowledge

FHIR_VERSIONS = ["4.0.1", "4.3.0", "5.0.0"]
EXTENSION = "io.github.twitch-cds"


@dataclass(frozen=True)
class Prefetch:
    template: str
    required: bool
    """Needed to answer: if neither prefetched nor fetchable, the call fails with 412."""


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    context_fields: tuple[str, ...]
    """Context fields the hook requires (CDS Hooks hook definitions)."""


SERVICES = (
    Service("twitch-cds-patient-view", "patient-view",
            "Leg-muscle twitching: red flags, causes, self-care",
            "When a chart opens: for a patient whose record shows current leg-muscle "
            "twitching, cards for red flags, likely causes (electrolytes, fatigue, caffeine, "
            "diet, medication side effects, associated conditions) and self-care, each citing "
            "the patient data and the article sentence behind it.",
            ("userId", "patientId")),
    Service("twitch-cds-order-select", "order-select",
            "Leg-muscle twitching: drugs that can cause it",
            "While a medication is chosen: warns when a diuretic, corticosteroid or "
            "estrogen-containing drug is ordered for a patient with current twitching.",
            ("userId", "patientId", "selections", "draftOrders")),
    Service("twitch-cds-order-sign", "order-sign",
            "Leg-muscle twitching: drugs that can cause it",
            "When orders are signed: warns when a diuretic, corticosteroid or "
            "estrogen-containing drug is ordered for a patient with current twitching.",
            ("userId", "patientId", "draftOrders")),
)
SERVICES_BY_ID = {service.id: service for service in SERVICES}


def prefetch_templates(knowledge: Knowledge) -> dict[str, Prefetch]:
    """What the rules read, as FHIR searches for ``{{context.patientId}}``."""
    observed = [*knowledge.concepts.findings,
                *(m.valueset for m in knowledge.measurements.analytes.values()),
                *(m.valueset for m in knowledge.measurements.intakes.values())]
    codes = ",".join(f"{system}|{code}" for system, code in knowledge.terminology.codes(observed))
    patient = "{{context.patientId}}"
    return {
        "patient": Prefetch(f"Patient/{patient}", required=False),
        "observations": Prefetch(f"Observation?patient={patient}&code={codes}", required=True),
        "conditions": Prefetch(f"Condition?patient={patient}", required=True),
        "medicationRequests": Prefetch(f"MedicationRequest?patient={patient}", required=True),
        "medicationStatements": Prefetch(f"MedicationStatement?patient={patient}",
                                         required=False),
    }


def discovery(knowledge: Knowledge) -> dict[str, Any]:
    templates = {key: p.template for key, p in prefetch_templates(knowledge).items()}
    required = ", ".join(k for k, p in prefetch_templates(knowledge).items() if p.required)
    return {"services": [
        {
            "hook": service.hook,
            "title": service.title,
            "description": service.description,
            "id": service.id,
            "prefetch": templates,
            "usageRequirements": (
                "Send a JWT (ES384 or RS384) from a registered issuer. Prefetch "
                f"{required} (or give fhirServer and fhirAuthorization so the service can "
                "fetch them); medicationStatements and patient are used when available. "
                "FHIR R4, R4B or R5."),
            "extension": {EXTENSION: {"rulesetVersion": knowledge.version,
                                      "fhirVersions": FHIR_VERSIONS}},
        }
        for service in SERVICES
    ]}
