"""Normalised facts: what the rules reason over, one step removed from FHIR.

Each fact is a small pydantic model; ``to_engine()`` gives the flat JSON the engine
matches (real numbers, no ``None``, no nested objects). Evidence (which resource, which
value, which date) stays on the Python side, keyed by fact id, so it never slows matching.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class Evidence(BaseModel):
    """What a clinician needs to check a fact: the resource and the value that matched."""

    model_config = ConfigDict(frozen=True)

    reference: str
    """``ResourceType/id`` of the resource the fact came from."""
    text: str
    """Human-readable value, e.g. ``Potassium 3.1 mmol/L (lab range 3.5–5.1), 2026-11-18``."""
    match: str
    """How the resource was recognised: ``code``, ``class`` (ATC prefix) or ``name`` (text)."""
    date: str | None = None


class Fact(BaseModel):
    """Base of every fact the engine sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fact_type: ClassVar[str]

    id: str

    def to_engine(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None}
        data["type"] = self.fact_type
        return data


class Finding(Fact):
    """A current, present clinical finding or condition (twitching, weakness, ALS, ...)."""

    fact_type = "finding"
    concept: str
    """The value set the code belongs to, e.g. ``twitching``, ``muscle-weakness``."""
    source: Literal["Observation", "Condition"]
    severe: bool = False
    duration_days: float | None = None
    """Days since the finding began: its recorded onset, or its earliest record."""
    age_days: float | None = None
    """Days since this record was made (effective or recorded date), when dated."""


class Lab(Fact):
    """A current electrolyte result in the analyte's canonical unit."""

    fact_type = "lab"
    analyte: str
    value: float
    unit: str
    range_low: float | None = None
    """Lower limit of the lab's own reference range, converted to ``unit``."""
    range_high: float | None = None
    interpretation: str | None = None
    """The lab's interpretation code (L, LL, N, H, HH) when it sent one."""
    default_low: float
    default_high: float
    age_days: float


class Medication(Fact):
    """A current exposure to a drug class (MedicationStatement or MedicationRequest)."""

    fact_type = "medication"
    drug_class: str
    source: Literal["MedicationStatement", "MedicationRequest"]
    status: str
    match: Literal["code", "class", "name"]
    proposed: bool = False
    """A draft order being written now (CDS Hooks order hooks), not yet an exposure."""


class Intake(Fact):
    """A recorded daily intake of a substance (caffeine), in mg per day."""

    fact_type = "intake"
    substance: str
    mg_per_day: float


class PatientFact(Fact):
    fact_type = "patient"
    age_years: float | None = None
    sex: str | None = None


FACT_TYPES: dict[str, type[Fact]] = {
    cls.fact_type: cls for cls in (Finding, Lab, Medication, Intake, PatientFact)
}
"""The fact types rule files may name (besides ``derived`` and ``parameters``)."""


def fact_fields(fact_type: str) -> set[str]:
    return set(FACT_TYPES[fact_type].model_fields) | {"type"}
