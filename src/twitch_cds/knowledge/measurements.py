"""``rulesets/measurements.yaml``: analytes and intakes, their canonical units and factors."""

from __future__ import annotations

from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

from twitch_cds.knowledge.cardtexts import Text


class ParamRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    param: str


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    valueset: str
    display: Text
    unit: str
    """The canonical unit every accepted unit is converted to."""
    units: dict[str, float | ParamRef] = Field(min_length=1)
    """Accepted UCUM unit -> factor to the canonical unit (a number or a parameter)."""
    default_low: str | None = None
    default_high: str | None = None
    plausible_low: str | None = None
    """Parameter below which a value (in ``unit``) cannot be real: not used, reported."""
    plausible_high: str | None = None
    critical_low: str | None = None
    """Parameter below which a result is critical (a panic value: escalated, not read as
    merely low)."""
    critical_high: str | None = None

    def factor(self, unit: str, parameters: dict[str, float]) -> float | None:
        """The factor for ``unit`` (already synonym-mapped), or None when not accepted."""
        factor = self._folded.get(unit.lower())
        if factor is None:
            return None
        return parameters[factor.param] if isinstance(factor, ParamRef) else factor

    @cached_property
    def _folded(self) -> dict[str, float | ParamRef]:
        return {u.lower(): f for u, f in self.units.items()}


class Measurements(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    analytes: dict[str, Measurement]
    intakes: dict[str, Measurement]
    durations: dict[str, float] = Field(default_factory=dict)
    """UCUM time unit -> days, for findings whose value is how long they have lasted."""
    unit_synonyms: dict[str, str] = Field(default_factory=dict)

    @cached_property
    def _synonyms(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.unit_synonyms.items()}

    def canonical_unit(self, unit: str) -> str:
        """The UCUM spelling for a unit as labs write it (``mEq/L`` -> ``meq/L``)."""
        return self._synonyms.get(unit.strip().lower(), unit.strip())
