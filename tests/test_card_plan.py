"""The card plan (README: Card plan, contract 3.0) over every example, every scenario and
generated realistic charts: at most 4 cards, each idea on one card, each test asked for once,
no benign explanation or self-care beside a danger sign, no red flag lost."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds.knowledge.bundle import default_knowledge

from .builders import ATC, ICD, LOINC, OURS, RXNORM, SCT, condition, lab, med_statement, obs, parts

REPO = Path(__file__).parent.parent
NOW = "2026-11-24T09:00:00Z"
BUDGET = 4
SAME_IDEA = {"weakness": "muscle-weakness", "wasting": "muscle-wasting"}
"""A red-flag sign and the condition of the same name are one idea."""
DANGER = {"red-flag", "critical-lab"}


def _subjects(card: Any) -> list[str]:
    return list(((card.extension or {}).get("twitch-cds") or {}).get("subjects", []))


def _covered_tests(card: Any) -> list[str]:
    """Every LOINC test a card's suggestions order, a panel counted as the tests it covers."""
    orders = default_knowledge().orders
    by_code = {t.coding.code: [name] for name, t in orders.tests.items()}
    by_code |= {p.coding.code: list(p.covers) for p in orders.panels.values()}
    out: list[str] = []
    for suggestion in card.suggestions or ():
        for action in suggestion.actions or ():
            code = (action.resource or {}).get("code") or {}
            for coding in (code.get("concept") or code).get("coding", []):
                if coding.get("system") == LOINC:
                    out += by_code.get(coding["code"], [coding["code"]])
    return out


def check_plan(result: twitch_cds.EvaluationResult, context: str,
               flags: set[str] | None = None) -> None:
    cards = result.cards
    assert len(cards) <= BUDGET, f"{context}: {len(cards)} cards: {[c.kind for c in cards]}"
    kinds = [c.kind for c in cards]
    assert len(kinds) == len(set(kinds)), f"{context}: a card twice: {kinds}"
    seen: dict[str, str] = {}
    for card in cards:  # each conclusion kind, and each idea, on one card
        for part in parts(card):
            assert seen.setdefault(f"kind:{part}", card.kind or "") == card.kind, \
                f"{context}: {part} on two cards"
        for subject in _subjects(card):
            idea = SAME_IDEA.get(subject.split(":", 1)[1], subject.split(":", 1)[1])
            if subject.startswith(("red-flag:", "associated-condition:", "known-disease:")):
                owner = seen.setdefault(f"idea:{idea}", card.kind or "")
                assert owner == card.kind, f"{context}: {idea} on {owner} and {card.kind}"
    tests = [t for card in cards for t in _covered_tests(card)]
    assert len(tests) == len(set(tests)), f"{context}: a test asked for twice: {tests}"
    danger = any(DANGER & set(parts(c)) for c in cards)
    if danger:
        assert "explanation" not in kinds, f"{context}: reassurance beside a danger sign"
    if flags:
        red = [c for c in cards if c.kind == "red-flag"]
        assert len(red) == 1, f"{context}: red flags {flags} lost"
        listed = {s.split(":", 1)[1] for s in _subjects(red[0]) if s.startswith("red-flag:")}
        assert flags <= listed, f"{context}: red flags {flags - listed} not listed"


def _charts() -> list[tuple[str, Any, str]]:
    found = [(p.name, json.loads(p.read_text(encoding="utf-8")), NOW)
             for p in sorted((REPO / "examples").glob("*.json"))]
    for path in sorted((REPO / "tests" / "scenarios").glob("*.yaml")):
        scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = scenario.get("input")
        if "input_file" in scenario:
            data = json.loads((REPO / scenario["input_file"]).read_text(encoding="utf-8"))
        found.append((path.name, data, str(scenario.get("now", NOW))))
    return found


@pytest.mark.parametrize(("name", "data", "now"), _charts(), ids=lambda v: str(v)[:40])
def test_every_example_and_scenario_keeps_the_plan(name: str, data: Any, now: str) -> None:
    for lang in ("en", "id"):
        check_plan(twitch_cds.evaluate(copy.deepcopy(data), now=now, lang=lang), name)


# -- realistic charts ------------------------------------------------------------------------
DAY = "2026-11-23T08:00:00Z"
FLAGS: dict[str, Any] = {
    "weakness": lambda: obs("weak", SCT, "26544005", date=DAY),
    "wasting": lambda: obs("wast", SCT, "88092000", date=DAY),
    "sensory-loss": lambda: obs("numb", SCT, "44077006", date=DAY),
    "at-rest": lambda: obs("rest", OURS, "twitching-at-rest", date=DAY),
    "chronic": lambda: condition("chron", SCT, "82470000", onsetDateTime="2026-01-05"),
}
LABS: dict[str, Any] = {  # name -> (LOINC, unit, low, normal, high, critical low, critical high)
    "potassium": ("2823-3", "mmol/L", 3.1, 4.2, 5.6, 2.4, 6.6),
    "sodium": ("2951-2", "mmol/L", 131.0, 140.0, 148.0, 118.0, 162.0),
    "magnesium": ("19123-9", "mmol/L", 0.6, 0.85, 1.2, 0.3, 2.2),
    "calcium": ("17861-6", "mg/dL", 8.0, 9.4, 10.9, 6.0, 13.5),
}
RANGES = {"potassium": (3.5, 5.1), "sodium": (135.0, 145.0), "magnesium": (0.7, 1.0),
          "calcium": (8.6, 10.3)}
LEVELS = ("low", "normal", "high", "critical-low", "critical-high")
DRUGS: dict[str, Any] = {
    "diuretic": lambda r5: _med("furo", {"system": RXNORM, "code": "4603"}, r5),
    "corticosteroid": lambda r5: _med("pred", {"system": ATC, "code": "H02AB07"}, r5),
    "estrogen": lambda r5: _med("coc", {"system": ATC, "code": "G03AA07"}, r5),
}
CONDITIONS: dict[str, Any] = {
    "fibromyalgia": lambda: condition("fm", ICD, "M79.7"),
    "restless-legs": lambda: condition("rls", ICD, "G25.81"),
    "als": lambda: condition("als", ICD, "G12.21"),
    "myoclonus": lambda: condition("myo", ICD, "G25.3"),
    "muscle-weakness": lambda: condition("wkc", SCT, "26544005"),
}
LIFESTYLE: dict[str, Any] = {
    "caffeine": lambda: obs("caf", SCT, "1208604004", date=DAY,
                            valueQuantity={"value": 700, "unit": "mg/d"}),
    "diet": lambda: obs("diet", OURS, "unbalanced-diet", date=DAY),
    "heat": lambda: obs("heat", OURS, "hot-humid-weather", date=DAY),
    "sweat": lambda: obs("sweat", OURS, "heavy-sweating", date=DAY),
    "walk": lambda: obs("walk", LOINC, "55411-3", date="2026-11-23T06:00:00Z", valueQuantity={
        "value": 60, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}),
}
EVALUATIONS: dict[str, Any] = {
    "emg": lambda: obs("emg", SCT, "42803009", date="2026-06-01T08:00:00Z",
                       valueString="normal"),
    "bfs": lambda: condition("bfs", OURS, "benign-fasciculation-syndrome"),
    # as EHRs record them: a completed Procedure, R4 (performed[x]) or R5 (occurrence[x])
    "emg-procedure": lambda: {"resourceType": "Procedure", "id": "emgp", "status": "completed",
                              "code": {"coding": [{"system": SCT, "code": "42803009"}]},
                              "subject": {"reference": "Patient/p1"},
                              "performedDateTime": "2026-06-01T08:00:00Z"},
    "ncs-procedure-r5": lambda: {"resourceType": "Procedure", "id": "ncsp",
                                 "status": "completed",
                                 "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt",
                                                      "code": "95907"}]},
                                 "subject": {"reference": "Patient/p1"},
                                 "occurrenceDateTime": "2026-06-01T08:00:00Z"},
}


def _med(rid: str, coding: dict[str, str], r5: bool) -> dict[str, Any]:
    if not r5:
        return med_statement(rid, [coding])
    return {"resourceType": "MedicationStatement", "id": rid, "status": "recorded",
            "medication": {"concept": {"coding": [coding]}},
            "subject": {"reference": "Patient/p1"}}


def _lab(name: str, level: str) -> dict[str, Any]:
    code, unit, low, normal, high, crit_low, crit_high = LABS[name]
    value = {"low": low, "normal": normal, "high": high, "critical-low": crit_low,
             "critical-high": crit_high}[level]
    lo, hi = RANGES[name]
    return lab(f"lab-{name}", code, value, unit, low=lo, high=hi, date=DAY)


@st.composite
def charts(draw: st.DrawFn) -> tuple[list[dict[str, Any]], set[str], bool]:
    r5 = draw(st.booleans())
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1", "gender": draw(st.sampled_from(["female", "male"])),
         "birthDate": draw(st.sampled_from(["1950-02-01", "1985-07-15", "2001-10-30"]))},
        obs("tw1", SCT, "82470000", date=DAY)]
    flags = set(draw(st.sets(st.sampled_from(sorted(FLAGS)), max_size=3)))
    resources += [FLAGS[f]() for f in sorted(flags)]
    for name in draw(st.sets(st.sampled_from(sorted(LABS)), max_size=4)):
        resources.append(_lab(name, draw(st.sampled_from(LEVELS))))
    resources += [DRUGS[d](r5) for d in sorted(draw(st.sets(st.sampled_from(sorted(DRUGS)))))]
    resources += [CONDITIONS[c]() for c in sorted(draw(st.sets(st.sampled_from(sorted(CONDITIONS)),
                                                               max_size=3)))]
    resources += [LIFESTYLE[x]() for x in sorted(draw(st.sets(st.sampled_from(sorted(LIFESTYLE)))))]
    evaluated = draw(st.sets(st.sampled_from(sorted(EVALUATIONS)), max_size=1))
    resources += [EVALUATIONS[e]() for e in sorted(evaluated)]
    if any(r.get("id") == "wkc" for r in resources):
        flags.add("weakness")  # a weakness diagnosis is the weakness red flag too
    if any(r.get("id") == "chron" for r in resources):
        flags.add("chronic")
    draft = draw(st.sampled_from([None, *sorted(DRUGS)]))
    if draft is not None:  # an order-select/order-sign request with a draft order: only the
        # rules meant for ordering run (evoke), so the red flags are patient-view's to show
        resources = [_order_request(resources, draft, draw(st.sampled_from(
            ["order-select", "order-sign"])))]
        flags = set()
    return resources, flags, r5


DRAFTS = {"diuretic": {"system": RXNORM, "code": "5487"},
          "corticosteroid": {"system": ATC, "code": "H02AB07"},
          "estrogen": {"system": ATC, "code": "G03AA07"}}


def _order_request(resources: list[dict[str, Any]], drug: str, hook: str) -> dict[str, Any]:
    """The chart as a CDS Hooks order request: a draft MedicationRequest for ``drug`` in
    ``draftOrders``, the records as prefetch searchsets."""
    def searchset(kind: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in resources if r["resourceType"] == kind]}
    order = {"resourceType": "MedicationRequest", "id": f"draft-{drug}", "status": "draft",
             "intent": "order", "medicationCodeableConcept": {"coding": [DRAFTS[drug]]},
             "subject": {"reference": "Patient/p1"}}
    return {"hook": hook, "hookInstance": "0b6e4b9e-2f0e-4a43-9c64-0f52b2a0a1ff",
            "context": {"userId": "Practitioner/1", "patientId": "p1",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": order}]}},
            "prefetch": {"patient": resources[0], "observations": searchset("Observation"),
                         "conditions": searchset("Condition"),
                         "medicationStatements": searchset("MedicationStatement"),
                         "procedures": searchset("Procedure")}}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(charts())
def test_realistic_charts_keep_the_plan(chart: tuple[list[dict[str, Any]], set[str], bool]) -> None:
    resources, flags, r5 = chart
    result = twitch_cds.evaluate(resources, now=NOW, fhir_version="R5" if r5 else None)
    check_plan(result, f"{json.dumps(resources)[:600]} R5={r5}", flags)
