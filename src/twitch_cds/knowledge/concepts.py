"""``rulesets/concepts.yaml``: which value sets are findings, drug classes, qualifiers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Presence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    present: str
    absent: str
    absent_words: frozenset[str] = frozenset()
    """A finding's valueString meaning absent (any other text means present)."""


class Concepts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    findings: frozenset[str] = Field(min_length=1)
    drug_classes: frozenset[str] = Field(min_length=1)
    presence: Presence
    severe: str

    def valuesets(self) -> set[str]:
        return {*self.findings, *self.drug_classes, self.presence.present,
                self.presence.absent, self.severe}
