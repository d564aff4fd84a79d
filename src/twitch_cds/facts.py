"""Normalised facts: what the rules reason over, one step removed from FHIR.

Each fact is a small slotted dataclass, treated as immutable (``replace`` makes changed
copies): a chart of hundreds of records makes hundreds of them per call, and a validating
(or frozen) model per record measured as much as the rules themselves. They are internal;
the public result (cards, issues, trace) is pydantic. ``to_engine()`` gives the flat JSON the
engine matches (real floats, so the engine never compares numbers as strings; no ``None``;
no nested objects). Evidence (which resource, which value, which date) stays on the Python
side, keyed by fact id, so it never slows matching.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar, Literal


@dataclasses.dataclass(slots=True, kw_only=True)
class Evidence:
    """What a clinician needs to check a fact: the resource and the value that matched."""

    reference: str
    """``ResourceType/id`` of the resource the fact came from."""
    text: str
    """Human-readable value, e.g. ``Potassium 3.1 mmol/L (lab range 3.5–5.1), 2026-11-18``."""
    match: str
    """How the resource was recognised: ``code``, ``class`` (is-a prefix), ``broader`` (a
    broader code that counts for the concept, e.g. WHO ICD-10 M62.8) or ``name`` (text)."""
    date: str | None = None
    also: tuple[Evidence, ...] = ()
    """Other records the fact rests on: the first record of a finding's current episode,
    which dates a chronic finding although it is no longer current itself."""

    def replace(self, **changes: Any) -> Evidence:
        """A copy with some fields changed."""
        copy: Evidence = _replace(self, changes)
        return copy


@dataclasses.dataclass(slots=True, kw_only=True)
class Fact:
    """Base of every fact the engine sees."""

    fact_type: ClassVar[str]

    id: str

    def to_engine(self) -> dict[str, Any]:
        names, floats = _layout(type(self))
        data: dict[str, Any] = {"type": self.fact_type}
        for name in names:
            value = getattr(self, name)
            if value is not None:
                data[name] = float(value) if name in floats else value
        return data

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed."""
        return _replace(self, changes)


_LAYOUTS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _replace(item: Any, changes: dict[str, Any]) -> Any:
    """``dataclasses.replace`` without its generic checks (a chart replaces hundreds)."""
    cls = type(item)
    copy = object.__new__(cls)
    for name in _layout(cls)[0]:
        setattr(copy, name, changes[name] if name in changes else getattr(item, name))
    return copy


def _layout(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """A fact class's field names, and those that hold numbers (sent to the engine as floats)."""
    found = _LAYOUTS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in dataclasses.fields(cls))
        floats = frozenset(n for n in names if "float" in str(hints[n]))
        found = _LAYOUTS[cls] = (names, floats)
    return found


@dataclasses.dataclass(slots=True, kw_only=True)
class Finding(Fact):
    """A current, present clinical finding or condition (twitching, weakness, ALS, ...)."""

    fact_type = "finding"
    concept: str
    """The value set the code belongs to, e.g. ``twitching``, ``muscle-weakness``."""
    source: Literal["Observation", "Condition", "Procedure"]
    severe: bool = False
    duration_days: float | None = None
    """Days the finding's current episode has lasted: from the onset of the first of its
    records no further apart than ``finding_episode_gap_days`` to the last of them (to now
    for an active Condition). None for an undated record."""
    age_days: float | None = None
    """Days since this record was made (effective or recorded date), when dated."""
    onset_days: float | None = None
    """Days since the finding's current episode began (its first record's onset): a record
    dated fewer days ago came after the episode began (an evaluation of the twitching)."""
    last_seen_days: float | None = None
    """Days since the finding was last recorded: the end of its current episode (0 for an
    active Condition, continuous until now). The same for every record of the episode, so
    a rule that asks "did the exercise come before the twitching" reads one time per
    episode and repeated records still group into one fact."""


@dataclasses.dataclass(slots=True, kw_only=True)
class Lab(Fact):
    """A current electrolyte result in the analyte's canonical unit."""

    fact_type = "lab"
    analyte: str
    unit: str
    value: float | None = None
    """The result in ``unit``; None when only the lab's flag can be used (unit unknown or
    value implausible: the flag, set by the lab knowing its unit, still counts)."""
    range_low: float | None = None
    """Lower limit of the lab's own reference range, converted to ``unit``."""
    range_high: float | None = None
    interpretation: str | None = None
    """The lab's interpretation code (L, LL, N, H, HH) when it sent one."""
    default_low: float
    default_high: float
    critical_low: float | None = None
    """The analyte's critical (panic) limits in ``unit`` (parameters), when it has them."""
    critical_high: float | None = None
    age_days: float


@dataclasses.dataclass(slots=True, kw_only=True)
class Medication(Fact):
    """A current exposure to a drug class (MedicationStatement or MedicationRequest)."""

    fact_type = "medication"
    drug_class: str
    source: Literal["MedicationStatement", "MedicationRequest", "MedicationDispense"]
    status: str
    match: Literal["code", "class", "name"]
    proposed: bool = False
    """A draft order being written now (CDS Hooks order hooks), not yet an exposure."""
    route_known: Literal["systemic", "unknown"] = "systemic"
    """``unknown`` when a class that counts only when systemic (rulesets/trust.yaml
    ``non_systemic``) was recognised by ingredient or name and nothing says how it is taken:
    kept as an exposure (never dropped), worded "if taken by mouth or by injection"."""


@dataclasses.dataclass(slots=True, kw_only=True)
class Intake(Fact):
    """A recorded daily intake of a substance (caffeine), in mg per day."""

    fact_type = "intake"
    substance: str
    mg_per_day: float


@dataclasses.dataclass(slots=True, kw_only=True)
class PatientFact(Fact):
    fact_type = "patient"
    age_years: float | None = None
    sex: str | None = None


FACT_TYPES: dict[str, type[Fact]] = {
    cls.fact_type: cls for cls in (Finding, Lab, Medication, Intake, PatientFact)
}
"""The fact types rule files may name (besides ``derived`` and ``parameters``)."""


def fact_fields(fact_type: str) -> set[str]:
    return {f.name for f in dataclasses.fields(FACT_TYPES[fact_type])} | {"type"}
