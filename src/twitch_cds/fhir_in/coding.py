"""Reading CodeableConcepts, Quantities and References defensively, whatever their shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def codings(concept: Any) -> Iterator[tuple[str | None, str | None, str | None]]:
    """``(system, code, display)`` of every coding in a CodeableConcept (bad shapes skipped)."""
    if not isinstance(concept, dict):
        return
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict):
            system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
            yield (
                system if isinstance(system, str) else None,
                code if isinstance(code, str) else None,
                display if isinstance(display, str) else None,
            )


def concept_text(concept: Any) -> str:
    """The human words of a CodeableConcept: its text and every coding's display."""
    if not isinstance(concept, dict):
        return ""
    words = [concept["text"]] if isinstance(concept.get("text"), str) else []
    words += [display for _, _, display in codings(concept) if display]
    return " | ".join(dict.fromkeys(words))


def first_code(concept: Any) -> str | None:
    for _, code, _ in codings(concept):
        if code:
            return code
    return None


def number(value: Any) -> float | None:
    """A JSON number as float; booleans and strings are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


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
