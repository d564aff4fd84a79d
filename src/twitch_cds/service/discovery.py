"""The services twitch-cds offers, as CDS Hooks discovery lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.service.templates import Prefetch

FHIR_VERSIONS = ["4.0.1", "4.3.0", "5.0.0"]
EXTENSION = "io.github.twitch-cds"


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


def discovery(knowledge: Knowledge, templates: dict[str, Prefetch]) -> dict[str, Any]:
    """``GET /cds-services``: the services, their prefetch templates, and in the
    ``io.github.twitch-cds`` extension the versions and what each prefetch key is for."""
    required = [key for key, p in templates.items() if p.required]
    optional = [key for key, p in templates.items() if not p.required]
    keys = {key: {"required": p.required, "cards": list(p.cards),
                  **({"partOf": p.group} if p.group else {})}
            for key, p in templates.items()}
    return {"services": [
        {
            "hook": service.hook,
            "title": service.title,
            "description": service.description,
            "id": service.id,
            "prefetch": {key: p.template for key, p in templates.items()},
            "usageRequirements": (
                "Send a JWT (ES384 or RS384) from a registered issuer. Prefetch "
                f"{', '.join(required)} (or give fhirServer and fhirAuthorization so the "
                "service can fetch each key left out); every card needs the observations "
                "and conditions (a current twitching finding), medication cards "
                f"need medicationRequests; {' and '.join(optional)} are used when available. "
                "The observations-N keys are parts of one search, split to keep each URL "
                "short. FHIR R4, R4B or R5."),
            "extension": {EXTENSION: {"rulesetVersion": knowledge.version,
                                      "packageVersion": twitch_cds.__version__,
                                      "fhirVersions": FHIR_VERSIONS,
                                      "prefetchKeys": keys}},
        }
        for service in SERVICES
    ]}
