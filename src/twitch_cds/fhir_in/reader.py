"""Every shape integrators send, flattened to one list of FHIR resources (as JSON dicts).

Accepted: a Bundle (any type, nested Bundles too), a list of resources, one resource, JSON
text or bytes, fhir.resources model instances, or a CDS Hooks request whose prefetch values
are resources, Bundles or OperationOutcomes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from twitch_cds.cds_hooks import CdsHooksRequest
from twitch_cds.errors import InputError
from twitch_cds.issues import InputIssue

FhirVersion = Literal["R4B", "R5"]
DRAFT_ORDERS = "context.draftOrders"
"""Origin of the orders a clinician is writing (CDS Hooks order-select and order-sign)."""


@dataclass
class RawResource:
    """One resource as received, with where it came from and any version it declared."""

    data: dict[str, Any]
    origin: str
    """Where in the input it sat: ``Bundle.entry[3]``, ``prefetch.conditions``, ..."""
    version: FhirVersion | None = None
    """Set when the input says (a fhir.resources model instance of a known version)."""
    full_url: str | None = None

    @property
    def resource_type(self) -> str:
        return str(self.data.get("resourceType"))

    @property
    def label(self) -> str:
        rid = self.data.get("id")
        return f"{self.resource_type}/{rid}" if isinstance(rid, str) and rid else (
            f"{self.resource_type} at {self.origin}"
        )


@dataclass
class ReadInput:
    resources: list[RawResource] = field(default_factory=list)
    issues: list[InputIssue] = field(default_factory=list)
    request: CdsHooksRequest | None = None


def _decode(data: str | bytes | bytearray) -> Any:
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"input is not UTF-8 text: {exc}") from exc
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"input is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            "pass a FHIR resource, Bundle, list of resources or CDS Hooks request"
        ) from exc


def _model_version(model: Any) -> FhirVersion:
    return "R4B" if ".R4B." in type(model).__module__ else "R5"


def read_input(data: Any) -> ReadInput:
    """Flatten the input; raise InputError only when nothing in it can be read as FHIR."""
    if isinstance(data, str | bytes | bytearray):
        data = _decode(data)
    result = ReadInput()
    if isinstance(data, dict) and "resourceType" not in data and "hook" in data:
        _read_request(data, result)
    elif isinstance(data, dict):
        if "resourceType" not in data:
            raise InputError(
                "input is a JSON object without resourceType (not FHIR) and without hook "
                "(not a CDS Hooks request)"
            )
        _collect(data, "input", result)
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            _collect(item, f"input[{index}]", result)
    elif hasattr(data, "model_dump") and hasattr(data, "get_resource_type"):
        _collect(data, "input", result)
    else:
        raise InputError(
            f"cannot read input of type {type(data).__name__}; pass a FHIR resource, Bundle, "
            "list of resources, JSON text or bytes, or a CDS Hooks request"
        )
    return result


def _read_request(data: dict[str, Any], result: ReadInput) -> None:
    try:
        request = CdsHooksRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        raise InputError(f"not a valid CDS Hooks request: {problems}") from exc
    result.request = request
    for key, value in (request.prefetch or {}).items():
        origin = f"prefetch.{key}"
        if value is None:
            result.issues.append(InputIssue(
                severity="warning", resource=origin, path="prefetch", action="ignored",
                problem=f"prefetch key {key!r} is null: the client did not provide it"))
            continue
        if not isinstance(value, dict) or "resourceType" not in value:
            result.issues.append(InputIssue(
                severity="error", resource=origin, path="prefetch", action="skipped",
                problem=f"prefetch key {key!r} is not a FHIR resource or Bundle"))
            continue
        _collect(value, origin, result)
    draft_orders = request.context.get("draftOrders")
    if isinstance(draft_orders, dict) and "resourceType" in draft_orders:
        _collect(draft_orders, DRAFT_ORDERS, result)


def _collect(item: Any, origin: str, result: ReadInput, full_url: str | None = None) -> None:
    version: FhirVersion | None = None
    if hasattr(item, "model_dump") and hasattr(item, "get_resource_type"):
        version = _model_version(item)
        item = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
        result.issues.append(InputIssue(
            severity="error", resource=origin, path="resourceType", action="skipped",
            problem="not a FHIR resource (no resourceType)"))
        return
    rtype = item["resourceType"]
    if rtype == "Bundle":
        entries = item.get("entry", [])
        if not isinstance(entries, list):
            result.issues.append(InputIssue(
                severity="error", resource=_bundle_label(item, origin), path="entry",
                action="skipped", problem="Bundle.entry is not a list"))
            return
        for index, entry in enumerate(entries):
            where = f"{origin}.entry[{index}]"
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if resource is None:
                if isinstance(entry, dict) and entry.get("request") and not entry.get("resource"):
                    continue  # a delete or read request entry carries no resource
                result.issues.append(InputIssue(
                    severity="error", resource=_bundle_label(item, origin),
                    path=f"entry[{index}].resource", action="skipped",
                    problem="Bundle entry has no resource"))
                continue
            url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            _collect(resource, where, result, url)
        return
    if rtype == "OperationOutcome" and origin.startswith("prefetch."):
        result.issues.append(InputIssue(
            severity="warning", resource=origin, path="prefetch", action="ignored",
            problem="the client could not prefetch this key: " + _diagnostics(item)))
        return
    result.resources.append(RawResource(item, origin, version, full_url))


def _bundle_label(bundle: dict[str, Any], origin: str) -> str:
    return f"Bundle/{bundle['id']}" if isinstance(bundle.get("id"), str) else f"Bundle at {origin}"


def _diagnostics(outcome: dict[str, Any]) -> str:
    texts: Iterable[str] = (
        str(issue.get("diagnostics") or issue.get("details", {}).get("text") or issue.get("code"))
        for issue in outcome.get("issue", []) if isinstance(issue, dict)
    )
    return "; ".join(texts) or "no diagnostics given"
