"""No reassurance where it misleads (issue 14): the benign explanations, the self-care advice
and the "can accompany twitching" lines are withheld beside a red flag, twitching at rest, a
known neuromuscular disease or myoclonus; "after exercise" needs a bout of exercise before
the twitching. The clinical cases are scenarios 200-213; these tests hold the mechanism."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds import RulesetError, load_knowledge
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.scenarios import load_scenario, scenario_input
from twitch_cds.knowledge.terminology import ICD10WHO, ICD11MMS

from .builders import ICD, LOINC, NOW, OURS, SCT, UCUM, condition, fired, lab, obs, twitching

WITHHELD = {"type": "derived", "name": "reassurance-withheld"}
REASSURING = {"self-care", "muscle-fatigue", "post-exercise-irritability"}
"""Card kinds that reassure: advice for benign twitching, or a benign explanation."""
DANGER = {"red-flag", "known-disease", "myoclonus"}
"""Card kinds beside which no reassuring card may stand."""
ROOT = Path(__file__).parent.parent
WHO, ICD11 = ICD10WHO, ICD11MMS


def _walk(rid: str = "walk", date: str = "2026-11-23T06:00:00Z") -> dict[str, Any]:
    return obs(rid, LOINC, "55411-3", date=date, valueQuantity={
        "value": 60, "unit": "min", "system": UCUM, "code": "min"})


BENIGN: dict[str, dict[str, Any]] = {
    "walk": _walk(),
    "fatigue": obs("fat", SCT, "444042007", date="2026-11-23T08:00:00Z"),
    "leg-tingling": obs("ting", SCT, "309087008", date="2026-11-23T08:00:00Z"),
    "jerks": obs("jerk", SCT, "260912008", date="2026-11-23T08:00:00Z"),
    "no-warm-up": obs("nowarm", OURS, "no-warm-up", date="2026-11-23T08:00:00Z"),
}
"""Records that, beside twitching alone, bring every reassuring card and line."""

REASONS: dict[str, dict[str, Any]] = {
    "at rest": obs("rest", OURS, "twitching-at-rest", date="2026-11-23T08:00:00Z"),
    "weakness": condition("weak", SCT, "26544005"),
    "sensory loss": obs("numb", SCT, "44077006", date="2026-11-23T08:00:00Z"),
    "ALS": condition("als", ICD, "G12.21"),
    "spinal muscular atrophy": condition("sma", ICD, "G12.9"),
    "muscular dystrophy": condition("md", ICD, "G71.01"),
    "diabetic polyneuropathy": condition("dpn", ICD, "E11.42"),
    "lumbosacral radiculopathy": condition("rad", ICD, "M54.17"),
    "myoclonus": condition("myo", ICD, "G25.3"),
}
"""One record each of the reasons to withhold reassurance (a critical electrolyte is the
labs branch's)."""


def _tw() -> dict[str, Any]:
    return twitching(date="2026-11-23T08:00:00Z")


def test_twitching_with_the_benign_records_gets_every_reassuring_card() -> None:
    """The baseline the other tests withhold from: without a reason, everything shows."""
    result = twitch_cds.evaluate([_tw(), *BENIGN.values()], now=NOW)
    assert {c.kind for c in result.cards} == REASSURING
    self_care = next(c for c in result.cards if c.kind == "self-care")
    assert "tingling in the leg can accompany twitching" in (self_care.detail or "")
    assert "involuntary muscle movements can accompany twitching" in (self_care.detail or "")


@pytest.mark.parametrize("reason", REASONS, ids=list(REASONS))
@pytest.mark.parametrize("lang", ["en", "id"])
def test_each_reason_withholds_every_reassuring_card(reason: str, lang: str) -> None:
    result = twitch_cds.evaluate([_tw(), *BENIGN.values(), REASONS[reason]], now=NOW,
                                 lang=lang)
    kinds = {c.kind for c in result.cards}
    assert not kinds & REASSURING, (reason, kinds)
    assert kinds & DANGER, (reason, kinds)  # the reason itself is on a card
    assert not fired(result) & {"accompanying-tingling", "accompanying-involuntary-movement",
                                "muscle-fatigue-recorded", "muscle-fatigue-after-exercise"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(benign=st.sets(st.sampled_from(sorted(BENIGN)), min_size=1),
       reasons=st.sets(st.sampled_from(sorted(REASONS)), min_size=1),
       order=st.randoms(use_true_random=False))
def test_no_reassurance_beside_any_reason_in_any_order(benign: set[str], reasons: set[str],
                                                       order: Any) -> None:
    """Any mix of benign records and reasons, in any order (durable-rules' negation is
    order-dependent; the go fact makes it safe)."""
    chart = [_tw(), *(BENIGN[b] for b in benign), *(REASONS[r] for r in reasons)]
    order.shuffle(chart)
    kinds = {c.kind for c in twitch_cds.evaluate(chart, now=NOW).cards}
    assert not kinds & REASSURING and kinds & DANGER, kinds


def _charts() -> list[tuple[str, Any]]:
    scenarios = [(p.stem, scenario_input(load_scenario(p), ROOT))
                 for p in sorted((ROOT / "tests" / "scenarios").glob("*.yaml"))]
    examples = [(p.stem, json.loads(p.read_text(encoding="utf-8")))
                for p in sorted((ROOT / "examples").glob("*.json"))]
    return scenarios + examples


@pytest.mark.parametrize(("name", "chart"), _charts(), ids=[n for n, _ in _charts()])
def test_no_scenario_or_example_puts_reassurance_beside_danger(name: str, chart: Any) -> None:
    kinds = {c.kind for c in twitch_cds.evaluate(chart, now=NOW).cards}
    assert not (kinds & DANGER and kinds & REASSURING), (name, kinds)


# -- the rule files ---------------------------------------------------------------------

def test_every_reassuring_rule_waits_on_reassurance_withheld(knowledge: Knowledge) -> None:
    reassuring = [c.rule for c in knowledge.rules if c.rule.knowledge.conclude is not None
                  and c.rule.knowledge.conclude.card in REASSURING]
    assert len(reassuring) >= 14  # 3 benign causes, 5 fluids, 4 self-care, 2 accompanying
    derivers: dict[str, list[Any]] = {}
    for c in knowledge.rules:
        if c.rule.knowledge.derive is not None:
            derivers.setdefault(c.rule.knowledge.derive.name, []).append(c.rule)

    def guarded(rule: Any) -> bool:
        """It waits on reassurance-withheld itself, or needs a derived fact (fluids-advisable)
        every rule deriving which waits on it."""
        return WITHHELD in rule.knowledge.unless or any(
            p.get("type") == "derived" and derivers.get(p.get("name"))
            and all(guarded(d) for d in derivers[p["name"]])
            for p in rule.knowledge.when.values())

    missing = [r.id for r in reassuring if not guarded(r)]
    assert not missing


def _derivers(knowledge: Knowledge) -> list[Path]:
    return [c.path for c in knowledge.rules if c.rule.knowledge.derive is not None
            and c.rule.knowledge.derive.name == "reassurance-withheld"]


def test_reassurance_withheld_has_a_rule_per_reason(knowledge: Knowledge) -> None:
    reasons = {c.rule.knowledge.derive.set_fields["reason"] for c in knowledge.rules
               if c.rule.knowledge.derive is not None
               and c.rule.knowledge.derive.name == "reassurance-withheld"}
    assert reasons == {"red-flag", "at-rest", "known-neuromuscular-disease", "myoclonus",
                       "critical-lab"}


@pytest.mark.parametrize("which", range(4))
def test_a_reason_derived_after_the_go_fact_is_refused(which: int, tmp_path: Path,
                                                       knowledge: Knowledge) -> None:
    """Every reason is derived before the unless is checked: a deriver that waited on the go
    fact (an unless of its own) could arrive after the self-care rules looked, and the loader
    refuses it."""
    original = sorted(_derivers(knowledge))[which]
    copy = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, copy)
    path = copy / original.relative_to(knowledge.directory)
    rule = yaml.safe_load(path.read_text(encoding="utf-8"))
    rule["knowledge"]["unless"] = [{"type": "lab"}]
    path.write_text(yaml.safe_dump(rule, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RulesetError, match="reassurance-withheld.*unless of its own"):
        load_knowledge(copy)


# -- after exercise -----------------------------------------------------------------------

@pytest.mark.parametrize(("walk_date", "window", "after"), [
    ("2026-11-23T06:00:00Z", None, True),    # two hours before the twitching
    ("2026-11-21T08:00:00Z", None, True),    # exactly the window before it
    ("2026-11-21T07:00:00Z", None, False),   # an hour more
    ("2026-11-21T07:00:00Z", 3, True),       # the window is a parameter
    ("2026-11-23T09:00:00Z", None, False),   # after the twitching
])
def test_exercise_counts_only_before_the_twitching_within_the_window(
        walk_date: str, window: int | None, after: bool) -> None:
    parameters = {"exercise_before_twitching_days": window} if window else None
    result = twitch_cds.evaluate([_tw(), _walk(date=walk_date)], now=NOW,
                                 parameters=parameters)
    assert ("twitching-after-recorded-exercise" in fired(result)) is after


@pytest.mark.parametrize("code", ["41950-7", "82290-8", "89555-7", "68516-4"])
def test_a_step_count_or_habitual_activity_is_not_a_bout(code: str) -> None:
    record = obs("activity", LOINC, code, date="2026-11-23T06:00:00Z",
                 valueQuantity={"value": 9000, "unit": "/d", "system": UCUM, "code": "/d"})
    result = twitch_cds.evaluate([_tw(), record], now=NOW)
    assert "twitching-after-recorded-exercise" not in fired(result)


def test_an_active_twitching_condition_is_seen_until_now() -> None:
    """A Condition is continuous until resolved: a walk yesterday came before it."""
    fasc = condition("fasc", ICD, "R25.3", onsetDateTime="2026-11-20")
    assert "twitching-after-recorded-exercise" in fired(
        twitch_cds.evaluate([fasc, _walk(date="2026-11-23T18:00:00Z")], now=NOW))


def test_repeated_twitching_records_of_one_episode_stay_one_fact() -> None:
    """The window reads the episode's last record, not each record's date: repeats group."""
    records = [twitching(f"tw{d}", date=f"2026-11-{d:02d}T08:00:00Z") for d in range(10, 24)]
    one = twitch_cds.evaluate([_tw(), _walk()], now=NOW)
    many = twitch_cds.evaluate([*records, _walk()], now=NOW)
    assert many.trace.asserted == one.trace.asserted
    assert {c.kind for c in many.cards} == {c.kind for c in one.cards}


# -- terminology ---------------------------------------------------------------------------

@pytest.mark.parametrize(("system", "code"), [
    (ICD, "E11.42"), (ICD, "E10.42"), (ICD, "E11.40"), (ICD, "M54.17"), (ICD, "M54.16"),
    (ICD, "G61.0"), (ICD, "G63"), (ICD, "G64"), (ICD, "G62.9"),
    (SCT, "230572002"), (SCT, "72274001"),
    (WHO, "E11.4"), (WHO, "E10.4"), (WHO, "G63.2"), (WHO, "M54.1"), (WHO, "G61.0"),
    (ICD11, "8C03.0"), (ICD11, "8B93.6"), (ICD11, "8B94"),
])
def test_nerve_damage_covers_diabetic_polyneuropathy_and_radiculopathy(
        knowledge: Knowledge, system: str, code: str) -> None:
    assert "nerve-damage" in {m.valueset for m in knowledge.terminology.lookup(system, code)}


@pytest.mark.parametrize(("system", "code"), [(SCT, "17450006"), (ICD, "G25.3"), (WHO, "G25.3"),
                                              (ICD11, "8A06.0")])
def test_myoclonus_is_not_a_benign_involuntary_movement(knowledge: Knowledge, system: str,
                                                        code: str) -> None:
    sets = {m.valueset for m in knowledge.terminology.lookup(system, code)}
    assert "myoclonus" in sets and "involuntary-movement" not in sets


def test_only_tingling_in_the_leg_is_reassured(knowledge: Knowledge) -> None:
    leg, anywhere = (SCT, "309087008"), [(SCT, "91019004"), (SCT, "62507009"), (ICD, "R20.2")]
    assert "tingling-leg" in {m.valueset for m in knowledge.terminology.lookup(*leg)}
    for coding in anywhere:
        sets = {m.valueset for m in knowledge.terminology.lookup(*coding)}
        assert "tingling" in sets and "tingling-leg" not in sets


def test_the_known_disease_rules_say_their_knowledge_is_not_the_article(
        knowledge: Knowledge) -> None:
    ids = {"condition-als", "condition-spinal-muscular-atrophy", "condition-muscular-dystrophy",
           "condition-nerve-damage", "condition-myoclonus", "reassurance-withheld-known-disease",
           "reassurance-withheld-myoclonus"}
    rules = {c.rule.id: c.rule for c in knowledge.rules if c.rule.id in ids}
    assert set(rules) == ids
    for rule in rules.values():
        source = rule.library.knowledge_source
        assert source is not None and source.kind == "general-clinical-knowledge"
        assert source.reference and source.date
    for rule_id, lang in itertools.product(sorted(ids - {"reassurance-withheld-known-disease",
                                                        "reassurance-withheld-myoclonus"}),
                                           ("en", "id")):
        text = getattr(rules[rule_id].knowledge.message, lang)
        assert "may be a symptom" not in text and "dapat menjadi gejala" not in text


ELECTROLYTES = [("2823-3", "mmol/L", 3.5, 5.1), ("2951-2", "mmol/L", 135, 145),
                ("19123-9", "mg/dL", 1.7, 2.2), ("17861-6", "mg/dL", 8.5, 10.2)]
"""Potassium, sodium, magnesium, total calcium: LOINC, unit, the lab's range."""


@pytest.mark.parametrize(("code", "unit", "low", "high"), ELECTROLYTES)
@pytest.mark.parametrize("lang", ["en", "id"])
def test_the_article_s_reassurance_never_stands_beside_an_abnormal_electrolyte(
        code: str, unit: str, low: float, high: float, lang: str) -> None:
    """"Usually not a sign of a serious disease" is said with a result in range, never beside
    one just below or above it (not critical: the other self-care lines may stay)."""
    words = {"en": "usually not a sign of a serious", "id": "umumnya tidak menandakan"}[lang]
    for value, said in [(low, True), (high, True), (low * 0.97, False), (high * 1.03, False)]:
        chart = [twitching(), lab("x", code, value, unit, low=low, high=high)]
        result = twitch_cds.evaluate(chart, now=NOW, lang=lang)  # type: ignore[arg-type]
        assert ("self-care-reassurance" in fired(result)) is said, (code, value)
        assert any(words in (c.detail or "") for c in result.cards) is said, (code, value)
        assert not said or "critical-lab" not in [c.kind for c in result.cards]
