"""Rule mutation testing (``python -m twitch_cds.knowledge.mutate``): the operators make the
mutants they promise, a known-bad mutant is killed, and the command's report and exit status
say what a reviewer needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from twitch_cds.knowledge import mutate
from twitch_cds.knowledge.files import rulesets_dir

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"

RULE: dict[str, Any] = {
    "maintenance": {"id": "demo"},
    "knowledge": {
        "when": {
            "tw": {"type": "finding", "concept": "twitching", "severe": True,
                   "duration_days": {"ge": {"param": "chronic_twitching_days"}}},
            "lab": {"type": "lab", "range_low": {"exists": False}, "value": {"lt": 3.5},
                    "interpretation": ["L", "LL"]},
            "drug": {"type": "derived", "name": "drug-exposure", "drug_class": "diuretic"},
        },
        "unless": [{"type": "lab"}],
    },
}
SIBLINGS = mutate.Siblings(
    lists={"findings": ["twitching", "twitching-at-rest"], "drug_classes": ["diuretic", "estrogen"],
           "analytes": []},
    derived={"drug-exposure": {"drug_class"}, "sweat-loss": {"concept"},
             "other-exposure": {"drug_class"}},
    parameters={"chronic_twitching_days": 28.0},
)


def _mutants() -> dict[str, mutate.Mutant]:
    params = {"parameters": {"chronic_twitching_days": {"default": 28}}}
    found = mutate.mutants_of(RULE, "rules/demo.yaml", SIBLINGS, params)
    by_id = {m.id: m for m in found}
    assert len(by_id) == len(found), "mutant ids must be unique"
    return by_id


def test_operators_make_the_mutants_they_promise() -> None:
    mutants = _mutants()
    when = lambda m: m.document["knowledge"]["when"]  # noqa: E731

    assert "tw" not in when(mutants["demo:drop-when:tw"])
    assert "severe" not in when(mutants["demo:drop-field:tw.severe"])["tw"]
    assert when(mutants["demo:negate:tw.severe"])["tw"]["severe"] is False
    assert when(mutants["demo:negate:tw.duration_days.ge"])["tw"]["duration_days"] == {
        "lt": {"param": "chronic_twitching_days"}}
    assert when(mutants["demo:negate:lab.value.lt"])["lab"]["value"] == {"ge": 3.5}
    assert when(mutants["demo:negate:lab.range_low.exists"])["lab"]["range_low"] == {
        "exists": True}
    assert when(mutants["demo:shift-up:lab.value.lt"])["lab"]["value"] == {"lt": 3.6}
    assert when(mutants["demo:shift-down:lab.value.lt"])["lab"]["value"] == {"lt": 3.4}
    assert when(mutants["demo:drop-alt:lab.interpretation=LL"])["lab"]["interpretation"] == ["L"]
    assert when(mutants["demo:swap-valueset:tw.concept"])["tw"]["concept"] == "twitching-at-rest"
    assert when(mutants["demo:swap-valueset:drug.drug_class"])["drug"]["drug_class"] == "estrogen"
    # a derived fact is swapped for one that has the fields the pattern reads
    assert when(mutants["demo:swap-valueset:drug.name"])["drug"]["name"] == "other-exposure"
    assert mutants["demo:drop-unless:0"].document["knowledge"]["unless"] == []
    # a parameter threshold moves in parameters.yaml; the rule itself is unchanged
    up = mutants["demo:shift-up:tw.duration_days.ge"]
    assert up.parameters == {"parameters": {"chronic_twitching_days": {"default": 29.0}}}
    assert up.document == RULE
    down = mutants["demo:shift-down:tw.duration_days.ge"]
    assert down.parameters == {"parameters": {"chronic_twitching_days": {"default": 27.0}}}
    # never: dropping a fact's type, or a derived pattern's name (the loader refuses both)
    assert not [i for i in mutants if i.endswith((".type", "drug.name")) and "drop" in i]
    assert RULE["knowledge"]["when"]["tw"]["severe"] is True  # the original is untouched


def test_every_rule_file_has_mutants() -> None:
    directory = rulesets_dir()
    mutants = mutate.all_mutants(directory)
    rules = {p.stem for p in (directory / "rules").rglob("*.yaml")}
    assert len({m.rule for m in mutants}) == len(rules)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = mutate.main([*args, "--scenarios", str(SCENARIOS), "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_a_known_bad_mutant_is_killed_and_the_report_has_its_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, report = _run(capsys, "--rule", "red-flag-weakness", "--rule", "severe-twitching")
    assert status == 0
    assert set(report) >= {"score", "counts", "seconds", "jobs", "broken_scenarios", "mutants"}
    outcomes = {m["id"]: m for m in report["mutants"]}
    assert {m["rule"] for m in outcomes.values()} == {"red-flag-weakness", "severe-twitching"}
    # weakness as the sign swapped for loss of sensation: a wrong red flag, must be caught
    swapped = outcomes["red-flag-weakness:swap-valueset:sign.concept"]
    assert swapped["status"] == "killed"
    assert (SCENARIOS / f"{swapped['killed_by']}.yaml").is_file()
    assert outcomes["severe-twitching:negate:twitching.severe"]["status"] == "killed"
    counts = report["counts"]
    assert counts["killed"] + counts["survived"] + counts["invalid"] == counts["mutants"]
    assert counts["mutants"] == len(outcomes)
    assert report["score"] == 1.0


def test_a_survivor_without_a_written_reason_fails_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rulesets = tmp_path / "rulesets"
    shutil.copytree(rulesets_dir(), rulesets)
    explained = rulesets / mutate.SURVIVORS_FILE
    args = ("--rulesets", str(rulesets), "--rule", "large-caffeine-intake", "--jobs", "2")
    status, report = _run(capsys, *args)
    survivor = "large-caffeine-intake:drop-field:intake.substance"
    outcome = next(m for m in report["mutants"] if m["id"] == survivor)
    assert (status, outcome["status"], report["jobs"]) == (0, "survived", 2)
    assert outcome["reason"]
    explained.unlink()
    status, report = _run(capsys, *args)
    assert status == 1
    assert report["counts"]["unexplained"] == 1
    assert mutate.main([*args[:4], "--scenarios", str(SCENARIOS)]) == 1
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "intake.substance" in line)
    assert row.split()[:3] == ["large-caffeine-intake", "drop-field", "intake.substance"]
    assert row.endswith("SURVIVED (no reason written)")
    assert "mutation score:" in table


def test_an_unknown_rule_id_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        mutate.main(["--rule", "no-such-rule", "--list"])
    assert exit_.value.code == 2
    assert "no-such-rule" in capsys.readouterr().err


def test_every_surviving_mutant_of_the_rules_is_explained() -> None:
    """The whole run (about 10 s): every mutant of every rule is killed by a scenario, or
    its survival is explained in rulesets/mutation-survivors.yaml. A new rule or field
    whose mutants survive needs a scenario (110-139) or a written reason."""
    report = mutate.run(rulesets_dir(), SCENARIOS, jobs=1)
    unexplained = [f"{o.id}" for o in report.outcomes if o.status == "survived" and not o.reason]
    assert not unexplained, "mutants no scenario kills:\n  " + "\n  ".join(unexplained)
    assert report.score() >= 0.95, f"mutation score {report.score():.1%}"


def test_no_scenarios_is_an_error_not_a_score(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        mutate.main(["--scenarios", str(tmp_path), "--rule", "red-flag-weakness"])
    assert stop.value.code == 2
    assert "no scenarios" in capsys.readouterr().err
