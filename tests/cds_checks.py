"""The CDS Hooks 2.0 card rules, checked on every card a test sees."""

from __future__ import annotations

import json
from typing import Any


def empty_values(value: Any, path: str = "card") -> list[str]:
    """Paths of null or empty values (the spec forbids them)."""
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in empty_values(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in empty_values(v, f"{path}[{i}]")]
    return []


def check_card(card: dict[str, Any]) -> None:
    assert empty_values(card) == [], empty_values(card)
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    if "suggestions" in card:
        assert card["selectionBehavior"] in ("at-most-one", "any")
        for suggestion in card["suggestions"]:
            assert suggestion["label"]
            for action in suggestion.get("actions", []):
                assert action["type"] in ("create", "update", "delete") and action["description"]
    for reason in card.get("overrideReasons", []):
        assert reason["display"]
    if "extension" in card:  # CDS Hooks 2.0: an object, JSON as it stands
        assert isinstance(card["extension"], dict) and card["extension"]
        assert json.loads(json.dumps(card["extension"])) == card["extension"]


def check_response(body: dict[str, Any]) -> None:
    assert set(body) <= {"cards", "systemActions"} and isinstance(body["cards"], list)
    for card in body["cards"]:
        check_card(card)


def mentions(text: str, reference: str) -> bool:
    """Whether ``text`` names ``reference`` as a whole reference: ``Observation/tw-1`` is not
    named by ``Observation/tw-1122`` (a plain substring test would say it is)."""
    import re

    return re.search(rf"(?<![\w/.-]){re.escape(reference)}(?![\w-]|\.\w)", text) is not None
