"""``rulesets/orders.yaml``: the tests, panels and procedures twitch-cds suggests, each a
standard code (LOINC, SNOMED CT) with its verification mark, and the way labs order panels.

A card that wants several tests orders a panel where one covers them (a basic metabolic
panel rather than four single tests); every draft ServiceRequest is built from these entries
and validated with fhir.resources as R4/R4B and R5 when the ruleset loads."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twitch_cds.knowledge.cardtexts import LANGS, Lang, Text

STANDARD_SYSTEMS = frozenset({"http://loinc.org", "http://snomed.info/sct"})
"""The only code systems a suggested ServiceRequest may carry."""


def as_r5(request: dict[str, Any]) -> dict[str, Any]:
    """An R4/R4B ServiceRequest in R5's shape: ``code`` became a CodeableReference
    (``code.concept``) and ``reasonReference`` moved into ``reason``."""
    out = {k: v for k, v in request.items() if k != "reasonReference"}
    if "code" in request:
        out["code"] = {"concept": request["code"]}
    if request.get("reasonReference"):
        out["reason"] = [{"reference": r} for r in request["reasonReference"]]
    return out


class OrderCoding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    system: str
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)

    @model_validator(mode="after")
    def _standard(self) -> OrderCoding:
        if self.system not in STANDARD_SYSTEMS:
            raise ValueError(f"{self.code}: {self.system} is not LOINC or SNOMED CT: an EHR "
                             "cannot route a project-local code")
        return self


class Orderable(BaseModel):
    """One thing that can be ordered: its code, how sure we are of it, and where from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    coding: OrderCoding
    verification: Literal["V", "W"]
    """terminology.md's verdict: V verified in a curated source, W third-party tables only."""
    verified_by: str = Field(min_length=3)
    text: Text | None = None
    """``ServiceRequest.code.text`` (the action's description) in the card's language."""

    def service_request(self, lang: Lang, text: Text | None = None,
                        priority: str | None = None) -> dict[str, Any]:
        """A draft ServiceRequest template (the subject and reasons are added per card)."""
        shown = text or self.text
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
            "code": {"coding": [self.coding.model_dump()],
                     **({"text": shown(lang)} if shown else {})},
        }
        if priority:
            resource["priority"] = priority
        return resource


class LabTest(Orderable):
    name: Text
    """As a clinician names it in a sentence ("potassium", "kalium")."""
    short: Text
    """As a summary lists it ("K")."""


class Panel(Orderable):
    name: Text
    covers: list[str] = Field(min_length=2)
    """The tests of ``tests`` the panel reports (it may report more)."""


class Orders(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tests: dict[str, LabTest] = Field(min_length=1)
    panel_min_covered: int = Field(ge=2)
    panels: dict[str, Panel] = Field(default_factory=dict)
    procedures: dict[str, Orderable] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Orders:
        from fhir.resources import get_fhir_model_class as r5  # the package root is R5
        from fhir.resources.R4B import get_fhir_model_class as r4b

        for name, panel in self.panels.items():
            unknown = set(panel.covers) - set(self.tests)
            if unknown:
                raise ValueError(f"panel {name}: covers unknown tests {sorted(unknown)}")
        for entry in [*self.tests.values(), *self.panels.values(), *self.procedures.values()]:
            for lang in LANGS:
                resource = {**entry.service_request(lang, priority="urgent"),
                            "subject": {"reference": "Patient/x"}}
                r4b("ServiceRequest").model_validate(resource)
                r5("ServiceRequest").model_validate(as_r5(resource))
        return self

    def plan(self, wanted: list[str]) -> list[LabTest | Panel]:
        """What to order for ``wanted`` tests, as labs order them: the panel covering the most
        of them (at least ``panel_min_covered``; on a tie the one reporting fewer), again for
        what is left, then single tests in orders.yaml order."""
        if not wanted:
            return []
        wanted_set = set(wanted)
        left = [t for t in self.tests if t in wanted_set]
        chosen: list[LabTest | Panel] = []
        while True:
            left_set = set(left)
            best: tuple[int, int, str] | None = None
            for size, name, covers in self._panel_covers:
                key = (len(covers & left_set), -size, name)
                if best is None or key > best:
                    best = key
            if best is None or best[0] < self.panel_min_covered:
                break
            panel = self.panels[best[2]]
            chosen.append(panel)
            left = [t for t in left if t not in panel.covers]
        return chosen + [self.tests[t] for t in left]

    @cached_property
    def _panel_covers(self) -> tuple[tuple[int, str, frozenset[str]], ...]:
        """Each panel's size, name and the tests it reports, as ``plan`` compares them."""
        return tuple((len(p.covers), name, frozenset(p.covers))
                     for name, p in self.panels.items())
