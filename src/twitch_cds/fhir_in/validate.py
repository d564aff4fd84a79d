"""Strict FHIR validation with fhir.resources, and the lenient fallback.

fhir.resources checks structure and types but rejects unknown fields and ignores status
codes. A resource that fails only in fields the rules never read is still used; a failing
field the rules do read is removed, so that value is not used, and the rest of the
resource still counts. Every failure is reported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import fhir.resources as fhir_r5
import fhir.resources.R4B as fhir_r4b
from pydantic import ValidationError

from twitch_cds.fhir_in.reader import FhirVersion, RawResource
from twitch_cds.fhir_in.validation_cache import VALIDATION_CACHE
from twitch_cds.issues import InputIssue, msg, validation_detail

READ_FIELDS: dict[str, frozenset[str]] = {
    "Observation": frozenset({
        "id", "status", "code", "subject", "effectiveDateTime", "effectivePeriod",
        "effectiveInstant", "issued", "valueQuantity", "valueBoolean", "valueCodeableConcept",
        "dataAbsentReason", "interpretation", "referenceRange", "component"}),
    "Condition": frozenset({
        "id", "clinicalStatus", "verificationStatus", "code", "subject", "onsetDateTime",
        "onsetPeriod", "onsetAge", "onsetRange", "onsetString", "recordedDate",
        "abatementDateTime", "abatementPeriod", "severity"}),
    "MedicationStatement": frozenset({
        "id", "status", "medicationCodeableConcept", "medicationReference", "medication",
        "subject", "effectiveDateTime", "effectivePeriod", "dateAsserted", "adherence",
        "dosage", "contained"}),
    "MedicationRequest": frozenset({
        "id", "status", "medicationCodeableConcept", "medicationReference", "medication",
        "subject", "authoredOn", "dispenseRequest", "dosageInstruction", "doNotPerform",
        "contained"}),
    "MedicationDispense": frozenset({
        "id", "status", "medicationCodeableConcept", "medicationReference", "medication",
        "subject", "whenHandedOver", "whenPrepared", "dosageInstruction", "contained"}),
    "Procedure": frozenset({
        "id", "status", "code", "subject", "performedDateTime", "performedPeriod",
        "performedString", "occurrenceDateTime", "occurrencePeriod", "occurrenceString"}),
    "Patient": frozenset({"id", "birthDate", "gender", "deceasedBoolean", "deceasedDateTime"}),
    "Medication": frozenset({"id", "code", "ingredient", "form"}),
}
"""The fields the FHIR reader reads, per resource type; everything else is cosmetic here."""
MAX_DEPTH = 32
"""Deeper than any FHIR resource nests (a technical bound): a field nested deeper is removed
before validation, which would otherwise recurse without bound."""


@dataclass
class Validated:
    raw: RawResource
    data: dict[str, Any]
    """The resource, minus any field that failed validation in a field the rules read."""
    version: FhirVersion
    issues: list[InputIssue]
    usable: bool


def shape_version(data: dict[str, Any]) -> FhirVersion | None:
    """The FHIR version a resource's shape gives away, if any."""
    rtype = data.get("resourceType")
    if rtype in ("MedicationStatement", "MedicationRequest", "MedicationDispense"):
        if isinstance(data.get("medication"), dict):
            return "R5"
        if "medicationCodeableConcept" in data or "medicationReference" in data:
            return "R4B"
    if rtype == "MedicationStatement" and data.get("status") in ("recorded", "draft"):
        return "R5"
    if rtype == "Procedure":  # R5 renamed performed[x] to occurrence[x]
        if any(k.startswith("occurrence") for k in data):
            return "R5"
        if any(k.startswith("performed") for k in data):
            return "R4B"
    return None


def preferred_version(resources: list[RawResource]) -> FhirVersion:
    """R5 when the input shows R5 shapes and no R4 ones; R4/R4B otherwise (the common case)."""
    seen = {r.version or shape_version(r.data) for r in resources} - {None}
    return "R5" if seen == {"R5"} else "R4B"


def _errors(data: dict[str, Any], version: FhirVersion) -> list[dict[str, Any]]:
    key = VALIDATION_CACHE.key(data, version) if VALIDATION_CACHE.max_entries else None
    if key is not None and (cached := VALIDATION_CACHE.get(key)) is not None:
        return [dict(error) for error in cached]
    module = fhir_r5 if version == "R5" else fhir_r4b
    model = module.get_fhir_model_class(data["resourceType"])
    errors: list[dict[str, Any]] = []
    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        # fhir.resources itself fails on some shapes (e.g. ``"_status": "null"``)
        errors = [{"loc": (), "msg": f"fhir.resources cannot validate it ({type(exc).__name__})",
                   "type": "fhir-resources-failure"}]
    if key is not None:
        VALIDATION_CACHE.put(key, tuple(errors))
    return errors


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON value nests deeper than ``limit`` (iterative: never recurses)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return False


def _primitive_extensions(data: dict[str, Any]) -> list[str]:
    """Top-level ``_field`` keys that are not objects (FHIR requires an Element there)."""
    return [k for k, v in data.items()
            if not isinstance(k, str) or (k.startswith("_") and not isinstance(v, dict))]


def prepare(raw: RawResource) -> tuple[dict[str, Any], list[InputIssue]]:
    """The resource without fields that would make validation itself fail (too deeply
    nested, malformed primitive extensions), and an issue for each field taken out."""
    read = READ_FIELDS.get(raw.resource_type, frozenset())
    removed = [k for k, v in raw.data.items() if too_deep(v, MAX_DEPTH - 1)]
    malformed = [k for k in _primitive_extensions(raw.data) if k not in removed]
    if not removed and not malformed:
        return raw.data, []
    issues = []
    for key in removed + malformed:
        used = key in read or key.lstrip("_") in read
        deep = key in removed
        issues.append(InputIssue(
            severity="error" if used else "warning", resource=raw.label, path=key,
            action="value-not-used" if used else "used-leniently",
            code="nesting-too-deep" if deep else "validation-failed" if used
            else "validation-lenient",
            **(msg("nesting-too-deep", depth=MAX_DEPTH) if deep else msg("primitive-extension"))))
    gone = set(removed + malformed)
    return {k: v for k, v in raw.data.items() if k not in gone}, issues


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _remove(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    node: Any = data
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(loc[-1], None)
    elif isinstance(node, list) and isinstance(loc[-1], int) and loc[-1] < len(node):
        node[loc[-1]] = None


def validate(raw: RawResource, default: FhirVersion) -> Validated:
    """The resource validated, every failure reported. Resources nested too deeply or with
    malformed primitive extensions make fhir.resources itself fail: those fields are taken
    out first. Looking for them costs a walk of the whole resource, so it is done only for a
    resource that failed (the common, well-formed resource pays nothing)."""
    if _primitive_extensions(raw.data):
        return _validate(raw, *prepare(raw), default)
    try:
        validated = _validate(raw, raw.data, [], default)
    except RecursionError:
        return _validate(raw, *prepare(raw), default)
    if validated.issues and any(i.path == raw.resource_type for i in validated.issues):
        data, prepared = prepare(raw)
        if prepared:  # a field made validation itself fail: validate without it
            return _validate(raw, data, prepared, default)
    return validated


def _validate(raw: RawResource, data: dict[str, Any], prepared: list[InputIssue],
              default: FhirVersion) -> Validated:
    rtype = raw.resource_type
    version = raw.version or shape_version(data) or default
    errors = [] if raw.version else _errors(data, version)
    if errors and not raw.version and not shape_version(data):
        other: FhirVersion = "R5" if version == "R4B" else "R4B"
        other_errors = _errors(data, other)
        if not other_errors:
            version, errors = other, []
    if not errors:
        return Validated(raw, data, version, prepared, True)
    read = READ_FIELDS[rtype]
    issues: list[InputIssue] = list(prepared)
    cleaned = copy.deepcopy(data)
    usable = True
    for error in errors:
        loc = tuple(error["loc"])
        field = loc[0] if loc else None
        message = msg("validation", detail=validation_detail(error["msg"], error["type"]),
                      version=version)
        if field is None or field in ("resourceType",):
            usable = False
            issues.append(InputIssue(severity="error", resource=raw.label, path=rtype,
                                     **message, action="skipped",
                                     code="validation-failed"))
        elif field in read:
            _remove(cleaned, loc)
            issues.append(InputIssue(severity="error", resource=raw.label, path=_path(loc),
                                     **message, action="value-not-used",
                                     code="validation-failed"))
        else:
            issues.append(InputIssue(severity="warning", resource=raw.label, path=_path(loc),
                                     **message, action="used-leniently",
                                     code="validation-lenient"))
    return Validated(raw, cleaned if usable else data, version, issues, usable)
