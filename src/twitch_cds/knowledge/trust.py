"""``rulesets/trust.yaml``: which statuses and interpretations make data usable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObservationTrust(_Frozen):
    usable: frozenset[str]
    not_usable: frozenset[str]


class ConditionTrust(_Frozen):
    clinical_current: frozenset[str]
    clinical_not_current: frozenset[str]
    verification_excluded: frozenset[str]


class MedicationTrust(_Frozen):
    current: frozenset[str]
    recent: frozenset[str]
    not_current: frozenset[str]
    adherence_not_taking: frozenset[str] = frozenset()
    proposed: frozenset[str] = frozenset()
    """Statuses of a draft order in a CDS Hooks order hook's context."""


class InterpretationTrust(_Frozen):
    system: str
    low: frozenset[str]
    high: frozenset[str]
    normal: frozenset[str]


class ReferenceRangeTrust(_Frozen):
    normal: frozenset[str] = frozenset({"normal"})
    """``referenceRange.type`` codes of the normal range (no type also means normal)."""
    genders: frozenset[str] = frozenset({"male", "female"})
    """``referenceRange.appliesTo`` codes compared with ``Patient.gender``."""


class NonSystemic(_Frozen):
    words: tuple[str, ...]


class Trust(_Frozen):
    observation: ObservationTrust
    condition: ConditionTrust
    medication_statement: MedicationTrust
    medication_request: MedicationTrust
    interpretation: InterpretationTrust
    reference_range: ReferenceRangeTrust = ReferenceRangeTrust()
    non_systemic: dict[str, NonSystemic]
