"""Named thresholds from ``rulesets/parameters.yaml``, overridable per process and per call."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from twitch_cds.errors import RulesetError
from twitch_cds.knowledge.files import read_yaml


class Parameter(BaseModel):
    """One threshold: its default, unit and why it has that value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: float
    unit: str
    rationale: str
    basis: Literal["article", "reference", "local-policy"]
    """``local-policy`` where the article gives no number."""
    minimum: float = 0.0


class ParameterSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[str, Parameter]

    def resolve(self, *overrides: Mapping[str, float] | None) -> dict[str, float]:
        """Defaults, then each override in turn; unknown names and bad values raise ValueError."""
        values = {name: p.default for name, p in self.parameters.items()}
        for override in overrides:
            for name, value in (override or {}).items():
                if name not in self.parameters:
                    known = ", ".join(sorted(self.parameters))
                    raise ValueError(f"unknown parameter {name!r}; known parameters: {known}")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
                if value < self.parameters[name].minimum:
                    raise ValueError(
                        f"parameter {name!r} must be >= {self.parameters[name].minimum}, "
                        f"got {value!r}"
                    )
                values[name] = float(value)
        return values


def load_parameters(path: Path) -> ParameterSet:
    try:
        return ParameterSet.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise RulesetError(f"{path}: {exc}") from exc
