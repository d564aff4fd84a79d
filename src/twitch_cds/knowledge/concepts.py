"""``rulesets/concepts.yaml``: which value sets are findings, drug classes, qualifiers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Presence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    present: str
    absent: str
    absent_words: frozenset[str] = frozenset()
    """A finding's valueString meaning absent (any other text means present)."""


class Concepts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    findings: frozenset[str] = Field(min_length=1)
    current_window: dict[str, str] = Field(min_length=1)
    """Finding concept -> the parameter saying for how many days an Observation of it stays
    current; ``default`` for every concept not named (checked against parameters.yaml)."""
    drug_classes: frozenset[str] = Field(min_length=1)
    procedures: frozenset[str] = frozenset()
    """Finding concepts a completed Procedure records (an EMG, a neurology consultation):
    a Procedure coded with any other value set is not read as that finding."""
    presence: Presence
    severe: str

    @model_validator(mode="after")
    def _windows(self) -> Concepts:
        if "default" not in self.current_window:
            raise ValueError("current_window needs a default parameter")
        unknown = set(self.current_window) - {"default"} - self.findings
        if unknown:
            raise ValueError(f"current_window names concepts that are not findings: "
                             f"{sorted(unknown)}")
        if self.procedures - self.findings:
            raise ValueError(f"procedures names concepts that are not findings: "
                             f"{sorted(self.procedures - self.findings)}")
        return self

    def window(self, concept: str) -> str:
        """The parameter that says how long an Observation of this finding stays current."""
        return self.current_window.get(concept) or self.current_window["default"]

    def valuesets(self) -> set[str]:
        return {*self.findings, *self.drug_classes, self.presence.present,
                self.presence.absent, self.severe}
