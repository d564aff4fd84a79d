"""Clinical scenarios (``tests/scenarios/*.yaml``): load one, run it, list what is wrong.

One checker serves both the test suite (``tests/test_scenarios.py``) and rule mutation
testing (``twitch_cds.knowledge.mutate``), so a mutant is killed by exactly the checks the
tests make. Cited resources are compared with ``result.evidence`` (the structured references
of each card) by exact equality, never as substrings of the card text: ``Observation/k``
must not pass because a card cites ``Observation/k-1``.

Scenario schema (every key but ``now`` and ``input``/``input_file`` is optional)::

    name: what the case shows
    now: 2026-11-24T09:00:00Z
    input: <FHIR>            # or input_file: examples/NN.json (relative to the repository)
    lang: en | id
    parameters: {name: value}
    expect:
      exact: true            # the card kinds are exactly those listed (default true)
      cards:
        - kind: red-flag     # the card (source.topic.code)
          parts: [red-flag]  # the conclusion kinds on it (the card's extension); exactly
          parts_exact: true  # these unless parts_exact is false
          count: 1           # that many cards of this kind
          indicator: critical
          references: [Observation/k]   # this kind's cards cite at least these resources
          references_exact: false       # true: ... and nothing else
          summary_has: [chronic]        # words every listed one must be in some summary
      absent: [explanation]  # cards that must not appear
      absent_parts: [caffeine]  # conclusion kinds that must be on no card
      issues: [{resource: Observation/x, path: ..., action: ...}]
    fires: [rule-id, ...]    # rules that must fire
    quiet: [rule-id, ...]    # rules that must not fire
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.result import EvaluationResult


def load_scenario(path: Path) -> dict[str, Any]:
    """A scenario file as a dict, with ``fires`` and ``quiet`` always present."""
    scenario: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(scenario, dict):
        raise ValueError(f"{path}: a scenario is a mapping")
    scenario.setdefault("fires", [])
    scenario.setdefault("quiet", [])
    return scenario


def scenario_input(scenario: dict[str, Any], repo: Path) -> Any:
    """The FHIR input of a scenario: inline, or the JSON file it names (read from ``repo``)."""
    if "input_file" in scenario:
        return json.loads((repo / scenario["input_file"]).read_text(encoding="utf-8"))
    return scenario["input"]


def run_scenario(
    scenario: dict[str, Any], repo: Path, knowledge: Knowledge | None = None
) -> EvaluationResult:
    """Evaluate a scenario's input with its clock, language and parameters."""
    from twitch_cds.evaluate import evaluate  # evaluate imports the knowledge package

    return evaluate(scenario_input(scenario, repo), now=scenario["now"],
                    lang=scenario.get("lang", "en"), parameters=scenario.get("parameters"),
                    knowledge=knowledge)


def _service_codings(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """A ServiceRequest's codings, R4 (``code.coding``) or R5 (``code.concept.coding``)."""
    code = resource.get("code") or {}
    return list((code.get("concept") or code).get("coding", []))


def _card_problems(want: dict[str, Any], result: EvaluationResult) -> list[str]:
    kind = want["kind"]
    matching = [c for c in result.cards if c.kind == kind]
    if not matching:
        return [f"missing a {kind} card"]
    problems = []
    cited = {ref for c in matching for ref in result.evidence.get(str(c.uuid), [])}
    wanted = want.get("references", [])
    problems += [f"{kind} card does not cite {ref}" for ref in wanted if ref not in cited]
    if want.get("references_exact") and cited - set(wanted):
        problems.append(f"{kind} card also cites {sorted(cited - set(wanted))}")
    for text in want.get("summary_has", []):
        if not any(text in c.summary for c in matching):
            problems.append(f"{kind} summary lacks {text!r}")
    for text in want.get("detail_has", []):
        if not any(text in (c.detail or "") for c in matching):
            problems.append(f"{kind} detail lacks {text!r}")
    for text in want.get("detail_lacks", []):
        if any(text in (c.detail or "") for c in matching):
            problems.append(f"{kind} detail has {text!r}")
    if "services" in want:  # exactly these codes are ServiceRequests on the card(s)
        got = sorted(str(coding.get("code")) for c in matching for s in c.suggestions or ()
                     for a in s.actions or () if a.resource
                     for coding in _service_codings(a.resource))
        if got != sorted(want["services"]):
            problems.append(f"{kind}: ServiceRequest codes {got}, "
                            f"expected {sorted(want['services'])}")
    if "parts" in want:  # the conclusion kinds on the card(s): what the rules concluded
        got_parts = {k for c in matching
                     for k in ((c.extension or {}).get("twitch-cds") or {}).get("kinds", [])}
        problems += [f"{kind} card lacks a {part} conclusion" for part in want["parts"]
                     if part not in got_parts]
        if want.get("parts_exact", True) and got_parts - set(want["parts"]):
            problems.append(f"{kind} card also has {sorted(got_parts - set(want['parts']))}")
    if "indicator" in want and any(c.indicator != want["indicator"] for c in matching):
        problems.append(f"{kind} indicator is not {want['indicator']}")
    if "count" in want and len(matching) != want["count"]:
        problems.append(f"{kind}: expected {want['count']} cards, got {len(matching)}")
    return problems


def check_result(scenario: dict[str, Any], result: EvaluationResult) -> list[str]:
    """Every way ``result`` differs from what ``scenario`` expects (empty: it passes)."""
    expected = scenario["expect"]
    got_kinds = [c.kind or "" for c in result.cards]
    want_kinds: list[str] = [c["kind"] for c in expected.get("cards", [])]
    problems = []
    if expected.get("exact", True) and sorted(got_kinds) != sorted(want_kinds):
        problems.append(f"card kinds: expected {sorted(want_kinds)}, got {sorted(got_kinds)}")
    for want in expected.get("cards", []):
        problems += _card_problems(want, result)
    problems += [f"unexpected {kind} card" for kind in expected.get("absent", [])
                 if kind in got_kinds]
    parts = {k for c in result.cards
             for k in ((c.extension or {}).get("twitch-cds") or {}).get("kinds", [])}
    problems += [f"unexpected {part} conclusion" for part in expected.get("absent_parts", [])
                 if part in parts]
    for issue in expected.get("issues", []):
        if not any(i.resource == issue["resource"] and issue.get("path", i.path) == i.path
                   and issue.get("action", i.action) == i.action for i in result.issues):
            problems.append(f"no issue reported for {issue}")
    fired = {f.rule_id for f in result.trace.fired}
    problems += [f"rule {r} did not fire" for r in scenario["fires"] if r not in fired]
    problems += [f"rule {r} fired but should stay quiet" for r in scenario["quiet"] if r in fired]
    return problems


def check_scenario(
    scenario: dict[str, Any], repo: Path, knowledge: Knowledge | None = None
) -> tuple[EvaluationResult | None, list[str]]:
    """Run and check one scenario; an exception while evaluating is a problem, not a crash
    (a mutant ruleset may break evaluation, and that kills it)."""
    try:
        result = run_scenario(scenario, repo, knowledge)
        return result, check_result(scenario, result)
    except Exception as exc:  # noqa: BLE001 - any failure of the run fails the scenario
        return None, [f"evaluation failed: {type(exc).__name__}: {exc}"]


def describe(cards: Sequence[Any]) -> list[str]:
    """One line per card, for failure messages."""
    return [f"{c.indicator:8} {c.kind:28} {c.summary}" for c in cards]
