"""Reading CodeableConcepts, Quantities and References defensively, whatever their shape.

Every reader here accepts any JSON value (or any Python object) and never raises: a shape
that is not what FHIR says reads as nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Literal

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""FHIR ``id`` (R4B and R5): the only ids twitch-cds carries into facts and cards."""
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")


def codings(concept: Any) -> Iterator[tuple[str | None, str | None, str | None]]:
    """``(system, code, display)`` of every coding in a CodeableConcept (bad shapes skipped)."""
    if not isinstance(concept, dict):
        return
    found = concept.get("coding")
    if not isinstance(found, list):
        return
    for coding in found:
        if isinstance(coding, dict):
            system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
            yield (
                system if isinstance(system, str) else None,
                code if isinstance(code, str) else None,
                display if isinstance(display, str) else None,
            )


def concept_text(concept: Any,
                 own: Mapping[tuple[str, str], tuple[str, str]] | None = None) -> str:
    """The human words of a CodeableConcept: its text and every coding's display. ``own``
    maps twitch-cds's own codes to (English display, display in the caller's language): an
    Indonesian card does not say "Heavy sweating", even where the record's text repeats our
    English display; other codings and texts keep the record's words."""
    if not isinstance(concept, dict):
        return ""
    text = concept.get("text")
    if not own:  # the record's words as sent (English cards): its text, then each display
        words = [text] if isinstance(text, str) else []
        words += [display for _, _, display in codings(concept) if display]
        return " | ".join(dict.fromkeys(words))
    found = list(codings(concept))
    ours = [own[key] for system, code, _ in found
            if (key := (system or "", code or "")) in own]
    words = [text] if isinstance(text, str) and all(text != e for e, _ in ours) else []
    words += [local for _, local in ours]
    words += [display for system, code, display in found
              if display and (system or "", code or "") not in own]
    return " | ".join(dict.fromkeys(words))


def first_code(concept: Any) -> str | None:
    for _, code, _ in codings(concept):
        if code:
            return code
    return None


def number(value: Any) -> float | None:
    """A JSON number as a finite float; booleans, strings, NaN, infinities and integers too
    large for a float are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def is_fhir_id(value: Any) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_resource_type_name(value: Any) -> bool:
    """Spelled like a FHIR resource type (whether FHIR has one of that name is checked later)."""
    return isinstance(value, str) and _TYPE.fullmatch(value) is not None


def reference(value: Any) -> str | None:
    """``Reference.reference`` reduced to ``Type/id`` when it is a URL, else as given."""
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        return None
    ref: str = value["reference"]
    if ref.startswith(("http://", "https://")):
        parts = ref.rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            return f"{parts[-2]}/{parts[-1]}"
    return ref


def safe_reference(ref: str | None) -> str | None:
    """A ``Type/id`` reference when it is one with a FHIR id, else None."""
    if ref is None:
        return None
    rtype, slash, rid = ref.partition("/")
    return ref if slash and is_resource_type_name(rtype) and is_fhir_id(rid) else None


def preview(value: Any, limit: int = 60) -> str:
    """A short, safe rendering of a value for an issue's text (never the whole value)."""
    if isinstance(value, str):
        return repr(value[:limit] + ("…" if len(value) > limit else ""))
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a very large integer"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, dict):
        return "a JSON object"
    return "a JSON array" if isinstance(value, list) else f"a {type(value).__name__}"


Malformation = Literal["object", "number", "list"]
"""How a CodeableConcept's codings miss FHIR's shape: ``coding`` an object instead of a list,
a coding's ``code`` a number instead of a string, the CodeableConcept itself a list."""


def repaired_concepts(
        data: dict[str, Any], lists: Collection[str] = (),
) -> Iterator[tuple[str, Malformation, Any, dict[str, Any]]]:
    """For each top-level CodeableConcept (or R5 CodeableReference ``concept``) whose codings
    are malformed in a way that still says which code was meant: its path, how it is
    malformed, the concept put in FHIR's shape, and a copy of the resource with it (so the
    caller can ask whether the rules would have read it). ``lists``: the elements FHIR gives
    as lists in this resource type (``category``), which a list does not malform. Never
    raises."""
    for key, value in data.items():
        if isinstance(value, list):
            if (value and key not in lists and isinstance(value[0], dict)
                    and "coding" in value[0]):
                fixed = _repaired(value[0])[1]
                yield key, "list", fixed, {**data, key: fixed}
            continue
        if not isinstance(value, dict):
            continue
        concept, path = value, key
        if "coding" not in value and isinstance(value.get("concept"), dict):
            concept, path = value["concept"], f"{key}.concept"
        kind, fixed = _repaired(concept)
        if kind is not None:
            whole = fixed if concept is value else {**value, "concept": fixed}
            yield f"{path}.coding", kind, fixed, {**data, key: whole}


def _repaired(concept: Any) -> tuple[Malformation | None, Any]:
    found = concept.get("coding") if isinstance(concept, dict) else None
    if isinstance(found, dict):
        return "object", {**concept, "coding": [_as_text_code(found)]}
    if not isinstance(found, list):
        return None, concept
    fixed = [_as_text_code(c) for c in found]
    return ("number", {**concept, "coding": fixed}) if fixed != found else (None, concept)


def _as_text_code(coding: Any) -> Any:
    code = coding.get("code") if isinstance(coding, dict) else None
    if isinstance(code, float) and code.is_integer():
        code = int(code)  # 26544005.0 means 26544005
    if isinstance(code, int) and not isinstance(code, bool) and code.bit_length() > 332:
        return coding  # over 100 digits: no code of any system (and str() may refuse it)
    if isinstance(code, int | float) and not isinstance(code, bool):
        return {**coding, "code": str(code)}
    return coding
