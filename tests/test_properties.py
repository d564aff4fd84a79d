"""Property tests (issue 7): structurally mutated real charts never crash ``evaluate()``,
never lose a red flag through another resource, and always give valid CDS Hooks cards.

The charts are the examples and the scenarios. Mutations: fields dropped, duplicated or
retyped; huge, tiny, NaN and infinite numbers; bad dates; odd unicode (lone surrogates, RTL,
NUL, combining marks); deep nesting; giant strings; wrong resourceTypes; the input passed as
JSON text or bytes.

Profiles (``HYPOTHESIS_PROFILE``): ``quick`` (the default, 300 derandomized inputs per
property, part of ``python -m pytest``), ``medium`` (5,000 random inputs per property) and
``long`` (50,000 random inputs for each of the two properties, 100,000 in all)::

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py -p no:cacheprovider \
        --hypothesis-show-statistics
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds import EngineError, InputError
from twitch_cds.cds_hooks import Card
from twitch_cds.fhir_in.validate import too_deep
from twitch_cds.knowledge.bundle import default_knowledge

from .cds_checks import check_response

REPO = Path(__file__).parent.parent
NOW = "2026-11-24T09:00:00Z"
_COMMON = {"deadline": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("quick", max_examples=300, derandomize=True, **_COMMON)
settings.register_profile("medium", max_examples=5_000, database=None, **_COMMON)
settings.register_profile("long", max_examples=50_000, database=None, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


# -- the charts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Chart:
    name: str
    data: Any
    now: str
    red_flags: frozenset[str]
    """The red-flag rules the unmutated chart fires (each one listed on its red-flag card)."""
    protected: frozenset[str]
    """``Type/id`` of every resource a red-flag card cites: only the others are corrupted."""


def _charts() -> list[Chart]:
    found: list[tuple[str, Any, str]] = [
        (p.name, json.loads(p.read_text(encoding="utf-8")), NOW)
        for p in sorted((REPO / "examples").glob("*.json"))]
    for path in sorted((REPO / "tests" / "scenarios").glob("*.yaml")):
        scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "input" in scenario:
            found.append((path.name, scenario["input"], str(scenario.get("now", NOW))))
    charts = []
    for name, data, now in found:
        result = twitch_cds.evaluate(copy.deepcopy(data), now=now)
        flags = [c for c in result.cards if _is_red_flag(c)]
        protected = {ref for c in flags for ref in result.evidence.get(str(c.uuid), [])}
        protected |= {label for label in _labels(data)
                      if any(label in (c.detail or "") for c in flags)}
        charts.append(Chart(name, data, now, _red_flag_rules(result), frozenset(protected)))
    return charts


DANGER_KINDS = frozenset({"red-flag", "red-flag-evaluated", "critical-lab"})
"""The conclusion kinds of danger: a red flag (evaluated or not), a critical lab result."""
RED_FLAG_RULES = frozenset(
    c.rule.id for c in default_knowledge().rules
    if c.rule.knowledge.conclude is not None and c.rule.knowledge.conclude.card in DANGER_KINDS)
"""Every rule that concludes a red flag or a critical lab result."""


def _red_flag_rules(result: twitch_cds.EvaluationResult) -> frozenset[str]:
    fired = {f.rule_id for f in result.trace.fired} & RED_FLAG_RULES
    assert bool(fired) == any(_is_red_flag(c) for c in result.cards)
    return frozenset(fired)


def _is_red_flag(card: Card) -> bool:
    parts = ((card.extension or {}).get("twitch-cds") or {}).get("kinds", [])
    return card.kind == "red-flag" or bool(DANGER_KINDS & set(parts))


def _resources(data: Any) -> Iterator[dict[str, Any]]:
    """Every resource dict in a chart (Bundles, lists, CDS Hooks prefetch), Bundles too."""
    if isinstance(data, list):
        for item in data:
            yield from _resources(item)
    elif isinstance(data, dict) and "hook" in data and "resourceType" not in data:
        for value in (data.get("prefetch") or {}).values():
            yield from _resources(value)
    elif isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        yield data
        for entry in data.get("entry") or () if data["resourceType"] == "Bundle" else ():
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield from _resources(entry["resource"])


def _labels(data: Any) -> set[str]:
    return {f"{r['resourceType']}/{r.get('id')}" for r in _resources(data)}


CHARTS = _charts()
WITH_RED_FLAGS = [c for c in CHARTS if c.red_flags]


def test_the_corpus_has_charts_with_and_without_red_flags() -> None:
    assert len(CHARTS) >= 30 and len(WITH_RED_FLAGS) >= 8
    assert len(CHARTS) - len(WITH_RED_FLAGS) >= 8


# -- the mutations -------------------------------------------------------------------------
HUGE_NUMBERS = [10**400, -(10**400), 1e308, -1e308, float("nan"), float("inf"),
                float("-inf"), 5e-324, 2**63, -5, 0, -0.0, 1e-300]
BAD_DATES = ["2026-13-45", "", "0000-00-00", "9999-12-31T23:59:59-14:00", "0001-01-01",
             "2026-11-24T25:61:00Z", "yesterday", "2026-02-30", "2026-11-24T09:00:00",
             "2026-11-24T09:00:00+99:00", "１２３４-05-06", "2026-11-24T09:00:00.123456789Z"]
ODD_TEXT = ["\ud800", "\udfff\ud800", "\u202eevil\u202c", "\x00", "e\u0301" * 300, "\u200b",
            "\U0001d518\U0001d52b", "\ufeff", "\n\r\t", "Observation/x", "#", "a" * 70,
            "%00", "<script>", "𝕏" * 50, "\\u0000"]
RESOURCE_TYPES = ["Observaton", "Patient", "Bundle", "", "Observation", "Condition",
                  "MedicationStatement", "Medication", "OperationOutcome", "observation",
                  "Encounter", "Foo_Bar", "\ud800"]


def _paths(node: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys, list indices), not into its root."""
    if depth > 12:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key), depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index), depth + 1)


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        root = root[part]
    return root


def _nested(value: Any, levels: int, kind: str) -> Any:
    for _ in range(levels):
        value = [value] if kind == "list" else {"url": "http://example.org/x",
                                                "extension": [value]}
    return value


@st.composite
def _value(draw: st.DrawFn, old: Any) -> Any:
    kind = draw(st.sampled_from(["retype", "huge", "date", "text", "deep", "giant",
                                 "duplicate", "python"]))
    if kind == "python":  # what only a Python caller can send (turned to text when sent as JSON)
        return draw(st.sampled_from([Decimal("3.1"), Decimal("NaN"), (1, 2), {1: "a"},
                                     b"\xff", dt.date(2026, 11, 20), frozenset({1}),
                                     {None: None}, object()]))
    if kind == "retype":
        return draw(st.sampled_from([None, True, False, 0, 7, -1, 1.5, "", "x", [], {}, [1],
                                     {"a": 1}, [None], {"coding": 7}, {"value": "abc"}]))
    if kind == "huge":
        return draw(st.sampled_from(HUGE_NUMBERS))
    if kind == "date":
        return draw(st.sampled_from(BAD_DATES))
    if kind == "text":
        odd = draw(st.sampled_from(ODD_TEXT))
        return (old + odd) if isinstance(old, str) and draw(st.booleans()) else odd
    if kind == "deep":
        if too_deep(old, 20):
            return None  # nesting on nesting would defeat the test's own json.dumps
        # deeper than 32 levels is removed; JSON text much deeper than 500 is beyond Python's
        # parser, a whole-input failure (InputError, tested in test_hardening.py)
        kind = draw(st.sampled_from(["list", "dict"]))
        levels = draw(st.sampled_from([40, 200, 500] if kind == "list" else [40, 150, 250]))
        return _nested(old, levels, kind)
    if kind == "giant":
        return draw(st.sampled_from(["G" * 300_000, "é" * 100_000, ["x"] * 20_000,
                                     {f"k{i}": i for i in range(5_000)}]))
    return [old, old]  # duplicated (the same object twice: cheap however deep)


@st.composite
def _mutate(draw: st.DrawFn, resource: dict[str, Any]) -> None:
    """One structural mutation, in place, somewhere in the resource."""
    if draw(st.integers(0, 9)) == 0:  # the resource's type itself
        if draw(st.booleans()):
            resource.pop("resourceType", None)
        else:
            resource["resourceType"] = draw(st.sampled_from(RESOURCE_TYPES))
        return
    paths = [p for p in _paths(resource) if p != ("resourceType",)]
    if not paths:
        resource["extension"] = draw(_value(None))
        return
    path = draw(st.sampled_from(paths))
    parent = _parent(resource, path)
    operation = draw(st.sampled_from(["drop", "change", "change", "change", "add"]))
    if operation == "drop":
        del parent[path[-1]]
    elif operation == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["foo", "_status", "valueString", "value", "coding",
                                     "extension", "id"]))] = draw(_value(None))
    else:
        parent[path[-1]] = draw(_value(parent[path[-1]]))


@st.composite
def _corrupted(draw: st.DrawFn, charts: list[Chart], others_only: bool) -> tuple[Chart, Any]:
    chart = draw(st.sampled_from(charts))
    data = copy.deepcopy(chart.data)
    targets = [r for r in _resources(data)
               if not others_only or (f"{r.get('resourceType')}/{r.get('id')}"
                                      not in chart.protected and r.get("resourceType")
                                      != "Bundle")]
    if others_only and not targets:  # nothing else to corrupt: add a broken resource
        targets = [{"resourceType": "Observation", "id": "added", "status": "final",
                    "code": {"coding": 7}}]
        data = {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": r} for r in [*targets, *(data if isinstance(data, list) else [data])]]}
    for _ in range(draw(st.integers(1, 3))):
        draw(_mutate(draw(st.sampled_from(targets))))
    if not others_only and draw(st.integers(0, 4)) == 0 and isinstance(data, dict):
        draw(_mutate(data))  # the envelope or Bundle itself
    form = draw(st.sampled_from(["python", "python", "json", "bytes"]))
    if form != "python":
        # bytes are UTF-8: a lone surrogate travels as a JSON escape (raw, it is not UTF-8,
        # a whole-input failure)
        text = json.dumps(data, ensure_ascii=form == "bytes" or draw(st.booleans()),
                          allow_nan=True, default=repr)
        data = text if form == "json" else text.encode("utf-8")
    return chart, data


# -- the properties ------------------------------------------------------------------------
def _evaluate(chart: Chart, data: Any) -> twitch_cds.EvaluationResult | None:
    """Evaluate; the only exceptions allowed are the documented ones."""
    try:
        result = twitch_cds.evaluate(data, now=chart.now)
    except (InputError, EngineError) as exc:
        event(f"outcome: {type(exc).__name__}")
        return None
    event(f"outcome: {len(result.issues) and 'issues reported' or 'no issue'}")
    body = result.to_cds_hooks()
    text = json.dumps(body, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # no lone surrogate in any card
    check_response(json.loads(text))
    for card in result.cards:
        Card.model_validate(card.to_json())
        assert len(card.summary) < 140
    for issue in result.issues:
        str(issue).encode("utf-8")
        assert "\n" not in str(issue)
    return result


@given(_corrupted(WITH_RED_FLAGS, others_only=True))
def test_corrupting_other_resources_never_loses_a_red_flag(case: tuple[Chart, Any]) -> None:
    chart, data = case
    result = _evaluate(chart, data)
    assert result is not None, "InputError or EngineError for a chart with readable data"
    assert chart.red_flags <= _red_flag_rules(result), (chart.name, result.issues)


@given(_corrupted(CHARTS, others_only=False))
def test_any_corruption_gives_valid_cards_or_a_documented_error(
        case: tuple[Chart, Any]) -> None:
    _evaluate(*case)
