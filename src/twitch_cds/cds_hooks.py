"""CDS Hooks 2.0 data shapes: the request twitch-cds reads and the cards it returns.

Dump cards with ``model_dump(mode="json", exclude_none=True)``: optional fields are
``None`` until set, and the spec forbids ``null``, empty strings and empty lists.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Indicator = Literal["info", "warning", "critical"]
INDICATOR_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Coding(_Model):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class Source(_Model):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Model):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(_Model):
    label: str = Field(min_length=1)
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = Field(default=None, min_length=1)


class Link(_Model):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(_Model):
    """A CDS Hooks 2.0 card."""

    uuid: str | None = None
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] | None = Field(default=None, min_length=1)
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = Field(default=None, min_length=1)
    links: list[Link] | None = Field(default=None, min_length=1)
    extension: dict[str, Any] | None = Field(default=None, min_length=1)
    """CDS Hooks 2.0 extensions. twitch-cds puts the rules behind the card here
    (``{"twitch-cds": {"ruleset": ..., "rules": [{"id": ..., "version": ..., "validation":
    ...}], "reviewed": ...}}``, ``reviewed`` when every rule is in production), so that
    the card's text carries no rule ids."""

    @field_validator("selectionBehavior")
    @classmethod
    def _needs_suggestions(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not info.data.get("suggestions"):
            raise ValueError("selectionBehavior is only allowed on a card with suggestions")
        return value

    def model_post_init(self, __context: Any) -> None:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("a card with suggestions needs selectionBehavior (CDS Hooks 2.0)")

    @property
    def kind(self) -> str | None:
        """The card kind (``source.topic.code``): red-flag, caffeine, self-care, ..."""
        return self.source.topic.code if self.source.topic else None

    def to_json(self) -> dict[str, Any]:
        """The card as CDS Hooks JSON, with no null or empty values."""
        return self.model_dump(mode="json", exclude_none=True)


class CdsHooksRequest(BaseModel):
    """A CDS Hooks service request, as an EHR sends it (only the fields twitch-cds reads
    are checked; extra fields are kept)."""

    model_config = ConfigDict(extra="allow")

    hook: str = Field(min_length=1)
    hookInstance: str | None = None
    fhirServer: str | None = None
    fhirAuthorization: dict[str, Any] | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    prefetch: dict[str, Any] | None = None
