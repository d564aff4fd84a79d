"""OpenAPI descriptions of the real request and response bodies (served only when the
operator turns ``openapi`` on). The routes keep their own checks, which answer
OperationOutcomes; these models only describe the shapes."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from twitch_cds.cds_hooks import Card, Coding

REF = "#/components/schemas/{model}"


class FhirAuthorization(BaseModel):
    """OAuth 2.0 bearer token the service may use against ``fhirServer``."""

    model_config = ConfigDict(extra="allow")
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str


class HookRequest(BaseModel):
    """A CDS Hooks 2.0 service request (patient-view, order-select, order-sign)."""

    model_config = ConfigDict(extra="allow")
    hook: str
    hookInstance: str = Field(description="no control characters")
    fhirServer: str | None = Field(default=None, description="https (required with "
                                   "fhirAuthorization)")
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any] = Field(description="userId, patientId; draftOrders and "
                                    "selections for the order hooks")
    prefetch: dict[str, Any] | None = Field(default=None, description="FHIR resources or "
                                            "Bundles by the keys discovery lists")


class OverrideReason(BaseModel):
    reason: Coding | None = None
    userComment: str | None = None


class FeedbackItem(BaseModel):
    card: str = Field(max_length=100, description="the card's uuid")
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: str
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: OverrideReason | None = None


class Feedback(BaseModel):
    feedback: list[FeedbackItem] = Field(min_length=1, description="at most "
                                         "max_feedback_items items")


class CdsServiceResponse(BaseModel):
    cards: list[Card]


def body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body has ``model``'s shape."""
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema}, "application/fhir+json": {"schema": schema}}}}


def add_components(app: FastAPI) -> None:
    """Put the models' schemas in the app's OpenAPI document (built once, on first use)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _, definitions = models_json_schema(
                [(m, "validation") for m in (HookRequest, Feedback, CdsServiceResponse)],
                ref_template=REF)
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                definitions.get("$defs", {}))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
