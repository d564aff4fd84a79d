"""Input problems found while reading FHIR, reported instead of silently dropped."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["error", "warning", "information"]
Action = Literal["skipped", "used-leniently", "value-not-used", "ignored", "used"]


class InputIssue(BaseModel):
    """One problem with one resource: where it is, what was wrong, what twitch-cds did."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    resource: str
    """``ResourceType/id`` (or ``ResourceType[#n]`` when the resource has no id)."""
    path: str
    """Field path inside the resource, FHIRPath-like (``valueQuantity.unit``)."""
    problem: str
    action: Action

    def __str__(self) -> str:
        return f"{self.severity}: {self.resource} {self.path}: {self.problem} ({self.action})"
