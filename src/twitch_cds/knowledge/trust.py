"""``rulesets/trust.yaml``: which statuses and interpretations make data usable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObservationTrust(_Frozen):
    usable: frozenset[str]
    not_usable: frozenset[str]


class ProcedureTrust(_Frozen):
    """Procedure.status (R4/R4B and R5 event-status): only a completed procedure was done."""

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
    """How a drug class recognised by ingredient or name is told systemic or not."""

    valueset: str | None = None
    """A value set of product codes (ATC local-use groups) that mean not systemic."""
    systemic_valueset: str | None = None
    """A value set of codes that mean systemic whatever the route on record: ingredients
    with no local-use forms (prednisone), dose forms taken by mouth or injected."""
    words: tuple[str, ...]
    """Words in the product text, form or route that mean not systemic."""
    systemic_words: tuple[str, ...] = ()
    """Words there that mean systemic; with none of either, the route is unknown."""
    local_routes: frozenset[str] = frozenset()
    """Dosage route codings (``system|code``) that mean not systemic (inhaled, nasal...)."""
    systemic_routes: frozenset[str] = frozenset()
    """Dosage route codings that mean systemic (oral, parenteral...)."""


class Trust(_Frozen):
    observation: ObservationTrust
    condition: ConditionTrust
    procedure: ProcedureTrust
    medication_statement: MedicationTrust
    medication_request: MedicationTrust
    medication_dispense: MedicationTrust
    interpretation: InterpretationTrust
    reference_range: ReferenceRangeTrust = ReferenceRangeTrust()
    non_systemic: dict[str, NonSystemic]
