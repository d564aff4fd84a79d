"""Data-driven clinical scenarios (``tests/scenarios/*.yaml``), like the AHRQ CQL Testing
Framework: a patient's resources, a frozen now, the expected cards, a readable diff.

Every rule must fire in at least one scenario and stay quiet in at least one other; the
coverage test fails when a rule has no such pair.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.scenarios import check_result, describe, load_scenario, run_scenario
from twitch_cds.result import EvaluationResult

from .cds_checks import mentions

HERE = Path(__file__).parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.yaml"))
REPO = HERE.parent
_load = load_scenario

KNOWN_GAPS = {
}
"""Scenarios that fail for a known defect outside the tests: strict xfail, so the day the
defect is fixed the test says so and the entry must go."""


def _params() -> list[object]:
    return [pytest.param(p, id=p.stem, marks=pytest.mark.xfail(
        reason=KNOWN_GAPS[p.stem], strict=True)) if p.stem in KNOWN_GAPS else
        pytest.param(p, id=p.stem) for p in SCENARIOS]


@pytest.mark.parametrize("path", _params())
def test_scenario(path: Path) -> None:
    scenario = _load(path)
    result = run_scenario(scenario, REPO)
    problems = check_result(scenario, result)
    want_kinds = [c["kind"] for c in scenario["expect"].get("cards", [])]
    assert not problems, (
        f"{path.name}: {scenario.get('name', '')}\n  " + "\n  ".join(problems)
        + "\nexpected:\n  " + "\n  ".join(want_kinds or ["(no cards)"])
        + "\ngot:\n  " + "\n  ".join(describe(result.cards) or ["(no cards)"])
        + "\nevidence:\n  " + "\n  ".join(f"{c.kind}: {result.evidence.get(str(c.uuid))}"
                                          for c in result.cards)
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


def test_references_are_matched_whole() -> None:
    """The helper the service tests use on card text, and the scenario checker on evidence:
    ``Observation/k`` is not cited by ``Observation/k-1``."""
    assert mentions("Evidence: `Observation/k`: twitching", "Observation/k")
    assert mentions("first recorded (Observation/aug).", "Observation/aug")
    assert not mentions("Evidence: `Observation/k-1`", "Observation/k")
    assert not mentions("`Observation/tw-1122`", "Observation/tw-1")
    card = {"kind": "red-flag", "references": ["Observation/k"]}
    problems = check_result({"expect": {"cards": [card]}, "fires": [], "quiet": []},
                            _evaluated_with_evidence(["Observation/k-1", "Observation/k-10"]))
    assert problems == ["red-flag card does not cite Observation/k"]
    exact = {"kind": "red-flag", "references": ["Observation/k-1"], "references_exact": True}
    problems = check_result({"expect": {"cards": [exact]}, "fires": [], "quiet": []},
                            _evaluated_with_evidence(["Observation/k-1", "Observation/k-10"]))
    assert problems == ["red-flag card also cites ['Observation/k-10']"]


def _evaluated_with_evidence(references: list[str]) -> EvaluationResult:
    """A real result for a weakness red flag, its evidence replaced by ``references``."""
    from .builders import NOW, SCT, obs, twitching

    result = run_scenario({"now": NOW, "input": [twitching("k"), obs("w", SCT, "26544005")]},
                          REPO)
    card = next(c for c in result.cards if c.kind == "red-flag")
    return result.model_copy(update={"evidence": {str(card.uuid): references},
                                     "cards": [card]})
