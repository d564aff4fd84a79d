"""Data-driven clinical scenarios (``tests/scenarios/*.yaml``), like the AHRQ CQL Testing
Framework: a patient's resources, a frozen now, the expected cards, a readable diff.

Every rule must fire in at least one scenario and stay quiet in at least one other; the
coverage test fails when a rule has no such pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge

HERE = Path(__file__).parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.yaml"))
REPO = HERE.parent


def _load(path: Path) -> dict[str, Any]:
    scenario: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    scenario.setdefault("fires", [])
    scenario.setdefault("quiet", [])
    return scenario


def _input(scenario: dict[str, Any]) -> Any:
    if "input_file" in scenario:
        return json.loads((REPO / scenario["input_file"]).read_text(encoding="utf-8"))
    return scenario["input"]


def _describe(cards: list[twitch_cds.Card]) -> list[str]:
    return [f"{c.indicator:8} {c.kind:28} {c.summary}" for c in cards]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    scenario = _load(path)
    result = twitch_cds.evaluate(_input(scenario), now=scenario["now"],
                                 lang=scenario.get("lang", "en"),
                                 parameters=scenario.get("parameters"))
    expected = scenario["expect"]
    got_kinds = [c.kind for c in result.cards]
    want_kinds = [c["kind"] for c in expected.get("cards", [])]
    problems = []
    if expected.get("exact", True) and sorted(got_kinds) != sorted(want_kinds):
        problems.append(f"card kinds: expected {sorted(want_kinds)}, got {sorted(got_kinds)}")
    for want in expected.get("cards", []):
        matching = [c for c in result.cards if c.kind == want["kind"]]
        if not matching:
            problems.append(f"missing a {want['kind']} card")
            continue
        for ref in want.get("references", []):
            if not any(ref in (c.detail or "") for c in matching):
                problems.append(f"{want['kind']} card does not cite {ref}")
        for text in want.get("summary_has", []):
            if not any(text in c.summary for c in matching):
                problems.append(f"{want['kind']} summary lacks {text!r}")
        if "indicator" in want and any(c.indicator != want["indicator"] for c in matching):
            problems.append(f"{want['kind']} indicator is not {want['indicator']}")
        if "count" in want and len(matching) != want["count"]:
            problems.append(f"{want['kind']}: expected {want['count']} cards, got {len(matching)}")
        if "services" in want:  # exactly these codes are ServiceRequests on the card(s)
            got = sorted(str(coding.get("code")) for c in matching for s in c.suggestions or ()
                         for a in s.actions or () if a.resource
                         for coding in (a.resource.get("code") or {}).get("coding", []))
            if got != sorted(want["services"]):
                problems.append(f"{want['kind']}: ServiceRequest codes {got}, "
                                f"expected {sorted(want['services'])}")
    for kind in expected.get("absent", []):
        if kind in got_kinds:
            problems.append(f"unexpected {kind} card")
    for issue in expected.get("issues", []):
        if not any(i.resource == issue["resource"] and issue.get("path", i.path) == i.path
                   and issue.get("action", i.action) == i.action for i in result.issues):
            problems.append(f"no issue reported for {issue}")
    fired = {f.rule_id for f in result.trace.fired}
    problems += [f"rule {r} did not fire" for r in scenario["fires"] if r not in fired]
    problems += [f"rule {r} fired but should stay quiet" for r in scenario["quiet"] if r in fired]
    assert not problems, (
        f"{path.name}: {scenario.get('name', '')}\n  " + "\n  ".join(problems)
        + "\nexpected:\n  " + "\n  ".join(want_kinds or ["(no cards)"])
        + "\ngot:\n  " + "\n  ".join(_describe(result.cards) or ["(no cards)"])
        + "\nissues:\n  " + "\n  ".join(str(i) for i in result.issues)
    )


def test_every_rule_fires_and_stays_quiet_somewhere(knowledge: Knowledge) -> None:
    scenarios = [_load(p) for p in SCENARIOS]
    fires = {r for s in scenarios for r in s["fires"]}
    quiet = {r for s in scenarios for r in s["quiet"]}
    rules = {c.rule.id for c in knowledge.rules}
    assert not rules - fires, f"rules no scenario makes fire: {sorted(rules - fires)}"
    assert not rules - quiet, f"rules no scenario keeps quiet: {sorted(rules - quiet)}"
    unknown = (fires | quiet) - rules
    assert not unknown, f"scenarios name rules that do not exist: {sorted(unknown)}"
