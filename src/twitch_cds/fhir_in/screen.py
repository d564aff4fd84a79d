"""Which resources are read at all: each one checked, chosen and validated on its own, so a
resource that cannot be read costs only itself (it is reported, and the rest evaluated).

Unknown resource types, unusable ids, codes without a system and findings given only as text
are reported here rather than silently passed over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol, get_args, get_origin

import fhir.resources as fhir_r5
import fhir.resources.R4B as fhir_r4b
from fhir.resources.R4B.resource import Resource as ResourceR4B
from fhir.resources.resource import Resource as ResourceR5

from twitch_cds.fhir_in.coding import (
    codings,
    is_fhir_id,
    is_resource_type_name,
    preview,
    repaired_concepts,
)
from twitch_cds.fhir_in.reader import FhirVersion, RawResource
from twitch_cds.fhir_in.validate import Validated, preferred_version, validate
from twitch_cds.issues import InputIssue, Severity, msg


class Chooser(Protocol):
    """What the normaliser tells the screen: which resources matter, and why others might."""

    def relevant(self, data: dict[str, Any]) -> bool: ...

    def unrecognised(self, raw: RawResource) -> list[InputIssue]: ...


@dataclass
class Screened:
    validated: list[Validated] = field(default_factory=list)
    issues: list[InputIssue] = field(default_factory=list)


@lru_cache(maxsize=512)
def is_resource_type(name: str) -> bool:
    """Whether FHIR R4B or R5 has a resource of this name (``Observaton`` has not)."""
    if not is_resource_type_name(name):
        return False
    for module, base in ((fhir_r4b, ResourceR4B), (fhir_r5, ResourceR5)):
        try:
            if issubclass(module.get_fhir_model_class(name), base):
                return True
        except (ValueError, TypeError, ImportError):
            continue
    return False


@lru_cache(maxsize=512)
def list_elements(name: str) -> frozenset[str]:
    """The top-level elements FHIR R4B or R5 gives as lists in this resource type
    (``Observation.category``): a list there is FHIR's shape, not a malformed concept."""
    found: set[str] = set()
    for module in (fhir_r4b, fhir_r5):
        try:
            fields = module.get_fhir_model_class(name).model_fields
        except (ValueError, TypeError, ImportError, AttributeError):
            continue
        found.update(info.alias or field_name for field_name, info in fields.items()
                     if _is_list(info.annotation))
    return frozenset(found)


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(
        get_origin(arg) is list for arg in get_args(annotation))


Stage = Literal["reading", "validation", "subject"]
"""What was being done when reading a resource failed (``unreadable.<stage>`` in
locale/issues.yaml)."""


def unreadable(raw: RawResource, exc: BaseException, stage: Stage) -> InputIssue:
    """The issue for a resource whose reading failed: the exception's type, never its text
    (which may quote the resource's content)."""
    return InputIssue(severity="error", resource=raw.label, path=raw.resource_type,
                      action="skipped", code="unreadable-resource",
                      **msg(f"unreadable.{stage}", error=type(exc).__name__))


def _checked(raw: RawResource, chooser: Chooser, issues: list[InputIssue]) -> bool:
    """Whether the resource goes on to validation; anything passed over for a reason other
    than irrelevance is reported."""
    rtype = raw.data.get("resourceType")
    if not isinstance(rtype, str) or not is_resource_type(rtype):
        severity: Severity = "warning"
        words = msg("unknown-resource-type")
        for as_type in ("Observation", "Condition", "MedicationStatement"):
            if chooser.relevant({**raw.data, "resourceType": as_type}):
                severity, words = "error", msg("unknown-resource-type.coded", as_type=as_type)
                break
        issues.append(InputIssue(
            severity=severity, resource=raw.label, path="resourceType", action="skipped",
            code="unknown-resource-type",
            **words))
        return False
    if not chooser.relevant(raw.data):
        issues.extend(chooser.unrecognised(raw))
        issues.extend(_malformed(raw, chooser))
        return False
    rid = raw.data.get("id")
    if rid is not None and not is_fhir_id(rid):
        issues.append(InputIssue(
            severity="warning", resource=raw.label, path="id", action="used",
            code="id-unusable",
            **msg("id-unusable")))
    return True


def _malformed(raw: RawResource, chooser: Chooser) -> list[InputIssue]:
    """A coding malformed in shape (an object where FHIR has a list, a code given as a
    number) that, put in shape, carries a code the rules read: reported with the resource
    and the field, never used (strict validation would drop that field anyway)."""
    found = []
    for path, kind, concept, repaired in repaired_concepts(
            raw.data, list_elements(raw.resource_type)):
        if chooser.relevant(repaired):
            codes = ", ".join(list(dict.fromkeys(
                preview(code) for _, code, _ in codings(concept) if code))[:5])
            found.append(InputIssue(severity="error", resource=raw.label, path=path,
                                    action="skipped", code="coding-malformed",
                                    **msg(f"coding-malformed.{kind}", codes=codes)))
    return found


def _each(items: Iterable[RawResource], stage: Stage, issues: list[InputIssue],
          work: Callable[[RawResource], None]) -> None:
    for raw in items:
        try:
            work(raw)
        except Exception as exc:  # one resource's failure costs only that resource
            issues.append(unreadable(raw, exc, stage))


def screen(resources: list[RawResource], chooser: Chooser,
           fhir_version: FhirVersion | None) -> Screened:
    """The resources that can matter to the rules, validated; every other outcome reported."""
    out = Screened()
    chosen: list[RawResource] = []
    _each(resources, "reading", out.issues,
          lambda raw: chosen.append(raw) if _checked(raw, chooser, out.issues) else None)
    default = fhir_version or preferred_version(chosen)
    _each(chosen, "validation", out.issues,
          lambda raw: out.validated.append(validate(raw, default)))
    return out
