"""Every shape integrators send, flattened to one list of FHIR resources (as JSON dicts).

Accepted: a Bundle (any type, nested Bundles too), a list of resources, one resource, JSON
text or bytes, fhir.resources model instances, or a CDS Hooks request whose prefetch values
are resources, Bundles or OperationOutcomes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from twitch_cds.cds_hooks import CdsHooksRequest
from twitch_cds.errors import InputError
from twitch_cds.fhir_in.coding import is_fhir_id
from twitch_cds.issues import (
    InputIssue,
    described,
    issue_word,
    msg,
    safe_text,
    validation_detail,
)

FhirVersion = Literal["R4B", "R5"]
DRAFT_ORDERS = "context.draftOrders"
"""Origin of the orders a clinician is writing (CDS Hooks order-select and order-sign)."""
MAX_BUNDLE_DEPTH = 8
"""Bundles inside Bundles deeper than this are not read (a technical bound: a search result
of a batch response is two levels)."""
_KEY = re.compile(r"[^A-Za-z0-9_\-.]")


@dataclass
class RawResource:
    """One resource as received, with where it came from and any version it declared."""

    data: dict[str, Any]
    origin: str
    """Where in the input it sat: ``Bundle.entry[3]``, ``prefetch.conditions``, ..."""
    version: FhirVersion | None = None
    """Set when the input says (a fhir.resources model instance of a known version)."""
    full_url: str | None = None

    _resource_type: str | None = field(default=None, init=False, repr=False, compare=False)
    _label: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def resource_type(self) -> str:
        if self._resource_type is None:  # worked out once: read for every fact and issue
            self._resource_type = str(self.data.get("resourceType"))
        return self._resource_type

    @property
    def label(self) -> str:
        """``Type/id``, or ``Type at <origin>`` when the resource has no usable FHIR id: only
        safe text ever names a resource in facts, issues and cards."""
        if self._label is None:
            rtype = safe_text(self.resource_type, 64)
            rid = self.data.get("id")
            self._label = f"{rtype}/{rid}" if is_fhir_id(rid) else f"{rtype} at {self.origin}"
        return self._label


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
            raise InputError.of("input-not-utf8", detail=described(
                str(exc), "word.utf8-byte", position=exc.start)) from exc
    if not data.strip():
        raise InputError.of("input-empty")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputError.of("input-not-json", detail=described(exc.msg, "word.json-syntax"),
                            line=exc.lineno, column=exc.colno) from exc
    except RecursionError as exc:
        raise InputError.of("input-too-deep") from exc
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InputError.of("input-unreadable", detail=described(
            safe_text(str(exc), 200), "word.json-value")) from exc


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
            raise InputError.of("input-not-fhir")
        _collect(data, "input", result)
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            _collect(item, f"input[{index}]", result)
    elif hasattr(data, "model_dump") and hasattr(data, "get_resource_type"):
        _collect(data, "input", result)
    else:
        raise InputError.of("input-type", type=type(data).__name__)
    return result


def _request(data: dict[str, Any], result: ReadInput) -> CdsHooksRequest:
    """The request; an envelope field of the wrong type is reported and left out, so that the
    prefetch is still read. Raise InputError when no prefetch or draft order can be read."""
    try:
        return CdsHooksRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in errors)
    bad = {e["loc"][0] for e in errors if e["loc"]}
    readable = {k: v for k, v in data.items() if k not in bad}
    if "hook" in bad:
        readable["hook"] = "unknown"
    try:
        request = CdsHooksRequest.model_validate(readable)
    except ValidationError:
        request = None
    draft = request.context.get("draftOrders") if request else None
    if request is None or not (request.prefetch or isinstance(draft, dict)):
        raise InputError.of("request-unreadable", detail={
            "en": safe_text(problems, 500), "id": safe_text("; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'request'}: "
                f"{validation_detail(e['msg'], e['type'])['id']}" for e in errors), 500)})
    for error in errors:
        where = ".".join(str(p) for p in error["loc"]) or "request"
        result.issues.append(InputIssue(
            severity="error", resource="request", path=where, action="ignored",
            code="request-invalid",
            **msg("request-invalid", detail=validation_detail(error["msg"], error["type"]))))
    return request


def _read_request(data: dict[str, Any], result: ReadInput) -> None:
    request = _request(data, result)
    result.request = request
    for key, value in (request.prefetch or {}).items():
        origin = f"prefetch.{_KEY.sub('_', key[:64])}"
        if value is None:
            result.issues.append(InputIssue(
                severity="warning", resource=origin, path="prefetch", action="ignored",
                code="prefetch-missing",
                **msg("prefetch-missing")))
            continue
        if not isinstance(value, dict) or "resourceType" not in value:
            result.issues.append(InputIssue(
                severity="error", resource=origin, path="prefetch", action="skipped",
                code="not-a-resource",
                **msg("prefetch-not-a-resource")))
            continue
        _collect(value, origin, result)
    draft_orders = request.context.get("draftOrders")
    if isinstance(draft_orders, dict) and "resourceType" in draft_orders:
        _collect(draft_orders, DRAFT_ORDERS, result)


def _collect(item: Any, origin: str, result: ReadInput, full_url: str | None = None,
             depth: int = 0) -> None:
    version: FhirVersion | None = None
    if hasattr(item, "model_dump") and hasattr(item, "get_resource_type"):
        version = _model_version(item)
        try:
            item = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        except Exception as exc:  # a model instance built without validation
            result.issues.append(InputIssue(
                severity="error", resource=origin, path="resourceType", action="skipped",
                code="unreadable-resource",
                **msg("model-unreadable", error=type(exc).__name__)))
            return
    if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
        result.issues.append(InputIssue(
            severity="error", resource=origin, path="resourceType", action="skipped",
            code="not-a-resource", **msg("not-a-resource")))
        return
    rtype = item["resourceType"]
    if rtype == "Bundle":
        entries = item.get("entry", [])
        if not isinstance(entries, list) or depth >= MAX_BUNDLE_DEPTH:
            result.issues.append(InputIssue(
                severity="error", resource=_bundle_label(item, origin), path="entry",
                action="skipped", code="bundle-invalid",
                **(msg("bundle-entry-not-list") if not isinstance(entries, list) else
                   msg("bundle-too-deep", depth=MAX_BUNDLE_DEPTH))))
            return
        for index, entry in enumerate(entries):
            where = f"{origin}.entry[{index}]"
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if resource is None:
                if isinstance(entry, dict) and entry.get("request") and not entry.get("resource"):
                    continue  # a delete or read request entry carries no resource
                result.issues.append(InputIssue(
                    severity="error", resource=_bundle_label(item, origin),
                    path=f"entry[{index}].resource", action="skipped", code="not-a-resource",
                    **msg("bundle-entry-empty")))
                continue
            url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            _collect(resource, where, result, url, depth + 1)
        return
    if rtype == "OperationOutcome" and origin.startswith("prefetch."):
        result.issues.append(InputIssue(
            severity="warning", resource=origin, path="prefetch", action="ignored",
            code="prefetch-failed",
            **msg("prefetch-failed", diagnostics=_diagnostics(item))))
        return
    result.resources.append(RawResource(item, origin, version, full_url))


def _bundle_label(bundle: dict[str, Any], origin: str) -> str:
    return f"Bundle/{bundle['id']}" if is_fhir_id(bundle.get("id")) else f"Bundle at {origin}"


def _diagnostics(outcome: dict[str, Any]) -> str | dict[str, str]:
    """The client's own words (quoted as sent), or a translatable "none given"."""
    issues = outcome.get("issue")
    texts: Iterable[str] = (
        safe_text(text, 200)
        for issue in (issues if isinstance(issues, list) else ())[:10] if isinstance(issue, dict)
        if (text := _issue_text(issue))
    )
    return "; ".join(texts) or issue_word("no-diagnostics")


def _issue_text(issue: dict[str, Any]) -> str:
    details = issue.get("details")
    for text in (issue.get("diagnostics"),
                 details.get("text") if isinstance(details, dict) else None, issue.get("code")):
        if isinstance(text, str) and text:
            return text
    return ""
