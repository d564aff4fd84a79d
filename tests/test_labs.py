"""Critical and high electrolytes, rules beyond the article, and what evidence lines keep."""

from __future__ import annotations

from pathlib import Path

import pytest

import twitch_cds
from twitch_cds import RulesetError, load_knowledge
from twitch_cds.fhir_in.value_text import quantity_text, record_details
from twitch_cds.knowledge.bundle import Knowledge

from .builders import NOW, changed_ruleset, lab, parts, twitching

CRITICAL_RULE = Path("rules") / "causes" / "critical-electrolyte-1-low.yaml"
FLAG = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _flagged(code: str) -> list[dict]:
    return [{"coding": [{"system": FLAG, "code": code}]}]


def test_a_rule_needs_the_article_or_a_knowledge_source(tmp_path: Path,
                                                        knowledge: Knowledge) -> None:
    copy = changed_ruleset(tmp_path, knowledge.directory, CRITICAL_RULE,
                           lambda r: r["library"].pop("knowledge_source"))
    with pytest.raises(RulesetError, match="knowledge_source") as error:
        load_knowledge(copy)
    assert "critical-electrolyte-1-low.yaml" in str(error.value)


def test_a_knowledge_source_is_general_knowledge_with_a_reference(
        tmp_path: Path, knowledge: Knowledge) -> None:
    copy = changed_ruleset(tmp_path, knowledge.directory, CRITICAL_RULE,
                           lambda r: r["library"]["knowledge_source"].update(kind="article"))
    with pytest.raises(RulesetError, match="general-clinical-knowledge"):
        load_knowledge(copy)


def test_a_suggestion_per_analyte_must_exist_for_every_analyte(
        tmp_path: Path, knowledge: Knowledge) -> None:
    copy = changed_ruleset(tmp_path, knowledge.directory, CRITICAL_RULE,
                           lambda r: r["knowledge"]["conclude"].update(
                               suggest="urgent-{crit.analyte}"))
    with pytest.raises(RulesetError, match="urgent-potassium"):
        load_knowledge(copy)


@pytest.mark.parametrize(("value", "flag", "critical"), [
    (2.4, "LL", True), (3.6, "LL", True), (2.7, None, True), (2.8, None, False),
    (3.2, "L", False), (6.3, None, True), (6.2, None, False), (5.9, "HH", True),
    (4.0, "N", False),
])
def test_critical_potassium_by_flag_or_limit(value: float, flag: str | None,
                                             critical: bool) -> None:
    potassium = lab("k", "2823-3", value, "mmol/L",
                    **({"interpretation": _flagged(flag)} if flag else {}))
    result = twitch_cds.evaluate([twitching(), potassium], now=NOW)
    kinds = {kind for card in result.cards for kind in parts(card)}
    assert ("critical-lab" in kinds) is critical
    assert ("self-care" in kinds) is not critical  # no reassurance beside a critical result


def test_the_critical_card_names_value_unit_and_flag_in_both_languages() -> None:
    potassium = lab("k", "2823-3", 2.45, "mmol/L", interpretation=_flagged("LL"))
    for lang, line, label in (
            ("en", "Potassium 2.45 mmol/L (flagged LL by the lab)", "Critically low potassium"),
            ("id", "Kalium 2,45 mmol/L (ditandai LL oleh lab)", "Kalium sangat rendah")):
        result = twitch_cds.evaluate([twitching(), potassium], now=NOW, lang=lang)
        card = next(c for c in result.cards if "critical-lab" in parts(c))
        assert card.indicator == "critical"
        assert line in (card.detail or "") and label in (card.detail or "")
        assert "> " not in (card.detail or "")  # no article quotation under it
        codes = [c["code"] for s in card.suggestions or () for a in s.actions or ()
                 for c in (a.resource or {})["code"]["coding"]]
        assert sorted(codes) == ["2823-3", "29303009"]  # potassium again, and an ECG
        priorities = {c["code"]: (a.resource or {}).get("priority")
                      for s in card.suggestions or () for a in s.actions or ()
                      for c in (a.resource or {})["code"]["coding"]}
        assert priorities["29303009"] == "stat"  # the ECG now


def test_quantity_words_keep_value_unit_and_comparator() -> None:
    assert quantity_text({"value": 95, "unit": "min", "code": "min"}) == "95 min"
    assert quantity_text({"value": 1.5, "comparator": "<", "code": "mmol/L"}) == "<1.5 mmol/L"
    assert quantity_text({"value": "x"}) == ""
    assert quantity_text(None) == ""


def test_record_details_keep_values_components_sites_and_flags() -> None:
    observation = {
        "valueQuantity": {"value": 90, "unit": "min"},
        "component": [
            {"code": {"text": "Heart rate"}, "valueQuantity": {"value": 150, "unit": "/min"}},
            {"code": {"text": "Where"}, "valueCodeableConcept": {"text": "left calf"}},
            {"code": {"text": "Severity"}},
        ],
        "bodySite": {"coding": [{"display": "Calf"}]},
        "interpretation": _flagged("H"),
    }
    assert record_details(observation, "Exercise duration") == [
        "90 min", "Heart rate: 150 /min", "Where: left calf", "Severity", "Calf", "H"]
    # a coded value that only repeats the code's words is not said twice
    assert record_details({"valueCodeableConcept": {"text": "Fasciculation"}},
                          "Fasciculation") == []
    # Condition.bodySite is a list
    assert record_details({"bodySite": [{"text": "right calf"}, {"text": "left calf"}]},
                          "Strain") == ["right calf", "left calf"]


def test_an_exercise_record_keeps_its_duration_on_the_card() -> None:
    walk = {"resourceType": "Observation", "id": "walk", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "55411-3",
                                 "display": "Exercise duration"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-23T08:00:00Z",
            "valueQuantity": {"value": 95.5, "unit": "min", "code": "min",
                              "system": "http://unitsofmeasure.org"}}
    for lang, words in (("en", "Exercise duration: 95.5 min"),
                        ("id", "Exercise duration: 95,5 min")):
        after = twitching(effectiveDateTime="2026-11-23T10:00:00Z")  # twitching after the walk
        result = twitch_cds.evaluate([after, walk], now=NOW, lang=lang)
        assert any(words in (c.detail or "") for c in result.cards), lang
