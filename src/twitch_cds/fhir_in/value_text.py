"""What a record says beyond its code, in words for an evidence line: the value with its
unit, a coded or written value, each component, the body site and the lab's flag.

A clinician checks a card against the chart: "Exercise duration, 2026-11-23" hides the 90
minutes the rule read, "Muscle fasciculation" hides that it was the left calf. The words are
the record's own (displays, units as sent); numbers are written with a point here and take
the card language's decimal mark when the card is built."""

from __future__ import annotations

from typing import Any

from twitch_cds.fhir_in.coding import codings, concept_text, number
from twitch_cds.fhir_in.context import fmt

_DETAIL_KEYS = frozenset({"valueQuantity", "valueCodeableConcept", "valueString", "valueInteger",
                          "valueRange", "component", "bodySite", "interpretation"})
"""The keys ``record_details`` reads: a record with none of them has no details."""
_LIMIT = 80
"""Longest text kept from a record's own words (a free-text value can be a paragraph)."""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LIMIT else text[:_LIMIT - 1] + "…"


def _first_words(concept: Any) -> str:
    """The first human words of a CodeableConcept (its text, else its first display)."""
    return _short(concept_text(concept).split(" | ")[0]) if isinstance(concept, dict) else ""


def quantity_text(quantity: Any) -> str:
    """``45 min``: a Quantity's value and its unit as the record wrote it ("" if no value)."""
    if not isinstance(quantity, dict):
        return ""
    value = number(quantity.get("value"))
    if value is None:
        return ""
    comparator = quantity.get("comparator")
    unit = quantity.get("unit") if isinstance(quantity.get("unit"), str) else quantity.get("code")
    prefix = comparator if isinstance(comparator, str) and comparator in ("<", "<=", ">=", ">") \
        else ""
    return f"{prefix}{fmt(value)}" + (f" {_short(unit)}" if isinstance(unit, str) and unit
                                      else "")


def value_text(holder: dict[str, Any], code_words: str = "") -> str:
    """The value[x] of an Observation or one of its components, in words ("" if none or
    if it only repeats the code's own words)."""
    if "valueQuantity" in holder:
        return quantity_text(holder["valueQuantity"])
    if "valueCodeableConcept" in holder:
        words = _first_words(holder["valueCodeableConcept"])
        return "" if words and words in code_words else words
    if isinstance(holder.get("valueString"), str):
        return _short(holder["valueString"])
    if isinstance(holder.get("valueInteger"), int) and not isinstance(holder["valueInteger"],
                                                                        bool):
        return str(holder["valueInteger"])
    value_range = holder.get("valueRange")
    if isinstance(value_range, dict):
        low, high = (quantity_text(value_range.get(end)) for end in ("low", "high"))
        return f"{low or '?'}–{high or '?'}" if low or high else ""
    return ""


def record_details(data: dict[str, Any], code_words: str) -> list[str]:
    """The parts of an evidence line after the code's words: value, components, body site,
    the lab's interpretation codes (as sent: ``L``, ``HH``)."""
    if _DETAIL_KEYS.isdisjoint(data):
        return []
    parts: list[str] = []
    if value := value_text(data, code_words):
        parts.append(value)
    for component in data.get("component") or ():
        if not isinstance(component, dict):
            continue
        value = value_text(component, code_words)
        name = _first_words(component.get("code"))
        if value:
            parts.append(f"{name}: {value}" if name else value)
        elif name and name not in code_words:
            parts.append(name)
    site = data.get("bodySite")
    sites = site if isinstance(site, list) else [site]  # Condition: a list; Observation: one
    parts += [words for s in sites if (words := _first_words(s))]
    flags = [code for concept in data.get("interpretation") or ()
             for _, code, _ in codings(concept) if code]
    if flags:
        parts.append("/".join(dict.fromkeys(flags)))
    return parts
