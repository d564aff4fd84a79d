"""Cards out: CDS Hooks 2.0 shape, order, evidence, languages, stable uuids."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

import twitch_cds
from twitch_cds.cds_hooks import INDICATOR_ORDER
from twitch_cds.knowledge.bundle import Knowledge

from .builders import (
    ATC,
    ICD,
    NOW,
    OURS,
    RXNORM,
    SCT,
    condition,
    lab,
    med_statement,
    obs,
    twitching,
)
from .cds_checks import check_card, empty_values

EVERYTHING = [
    {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"},
    twitching(valueCodeableConcept={"coding": [{"system": OURS, "code": "twitching-at-rest"}]}),
    obs("after", OURS, "twitching-after-exercise"),
    obs("w", SCT, "26544005"), obs("n", SCT, "44077006"), obs("a", SCT, "88092000"),
    obs("heat", OURS, "hot-humid-weather"), obs("diet", OURS, "unbalanced-diet"),
    obs("caf", SCT, "1208604004", valueQuantity={"value": 700, "unit": "mg/d"}),
    obs("fat", SCT, "444042007"),
    lab("k", "2823-3", 3.1, "mmol/L", low=3.5, high=5.1, date="2026-11-18T08:00:00Z"),
    med_statement("furo", [{"system": RXNORM, "code": "4603"}]),
    med_statement("pred", [{"system": ATC, "code": "H02AB07"}]),
    med_statement("coc", text="Ethinyl Estradiol 0.03 MG / Levonorgestrel 0.15 MG Oral Tablet"),
    condition("als", ICD, "G12.21"), condition("fm", ICD, "M79.7"),
]
BENIGN = [EVERYTHING[0], twitching(),
          *(r for r in EVERYTHING[2:] if r.get("id") not in {"w", "n", "a", "als"})]
"""EVERYTHING without its red flags: self-care advice is withheld beside a red flag."""
KINDS = {"red-flag", "electrolyte-depletion", "medication-side-effect", "associated-condition",
         "muscle-fatigue", "post-exercise-irritability", "caffeine", "diet", "self-care"}


@pytest.mark.parametrize("lang", ["en", "id"])
def test_every_card_kind_is_valid_cds_hooks(lang: str) -> None:
    cards = [card for chart in (EVERYTHING, BENIGN)
             for card in twitch_cds.evaluate(chart, now=NOW, lang=lang).cards]
    assert {c.kind for c in cards} == KINDS
    for card in cards:
        data = card.model_dump(mode="json", exclude_none=True)
        check_card(data)
        assert empty_values(data) == []
        assert len(data["summary"]) < 140
        assert data["indicator"] in ("info", "warning", "critical")
        assert data["source"]["label"] and data["source"]["topic"]["code"] in KINDS
        assert data["source"]["topic"]["system"] == OURS
        assert data["uuid"]
        if "suggestions" in data:
            assert data["selectionBehavior"] in ("at-most-one", "any")
            for suggestion in data["suggestions"]:
                for action in suggestion["actions"]:
                    assert action["type"] == "create" and action["description"]
                    ServiceRequest.model_validate(action["resource"])
                    assert action["resource"]["subject"] == {"reference": "Patient/p1"}


def test_the_json_body_equals_the_dumped_cards() -> None:
    import json

    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    assert json.loads(result.cds_hooks_json()) == result.to_cds_hooks()


def test_cards_come_critical_first_then_warning_then_info() -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    order = [INDICATOR_ORDER[c.indicator] for c in result.cards]
    assert order == sorted(order)
    assert result.cards[0].kind == "red-flag"


def test_one_card_per_drug_class_and_per_condition() -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    meds = [c for c in result.cards if c.kind == "medication-side-effect"]
    assert len(meds) == 3
    # ALS and fibromyalgia; the weakness is observed, not diagnosed, so it is a red flag only
    assert len([c for c in result.cards if c.kind == "associated-condition"]) == 2


def test_cards_name_their_evidence_with_values() -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    electrolytes = next(c for c in result.cards if c.kind == "electrolyte-depletion")
    assert "`Observation/k`: Potassium 3.1 mmol/L (lab range 3.5–5.1 mmol/L), 2026-11-18" in (
        electrolytes.detail or "")
    red = result.cards[0]
    for ref in ("Observation/tw1", "Observation/w", "Observation/n", "Observation/a"):
        assert f"`{ref}`" in (red.detail or "")
    estrogen = next(c for c in result.cards if "estrogen" in c.summary)
    assert "recognised by its name" in (estrogen.detail or "")
    assert "Jika berkedut parah atau kronis" in (red.detail or "")


def test_same_input_and_now_give_the_same_cards_and_uuids() -> None:
    first = twitch_cds.evaluate(EVERYTHING, now=NOW)
    second = twitch_cds.evaluate(list(reversed(EVERYTHING)), now=NOW)
    assert [c.to_json() for c in first.cards] == [c.to_json() for c in second.cards]
    other = twitch_cds.evaluate([dict(r, subject={"reference": "Patient/p2"}) if "subject" in r
                                 else dict(r, id="p2") for r in EVERYTHING], now=NOW)
    assert {c.uuid for c in first.cards}.isdisjoint({c.uuid for c in other.cards})


def test_indonesian_cards_use_the_rulesets_texts() -> None:
    en = twitch_cds.evaluate(EVERYTHING, now=NOW, lang="en")
    id_ = twitch_cds.evaluate(EVERYTHING, now=NOW, lang="id")
    assert id_.cards[0].summary.startswith("Kedutan kaki dengan tanda bahaya")
    assert all(a.summary != b.summary for a, b in zip(en.cards, id_.cards, strict=True))
    assert "Kalium 3.1" in next(c.detail or "" for c in id_.cards
                                if c.kind == "electrolyte-depletion")
    with pytest.raises(ValueError, match="lang"):
        twitch_cds.evaluate(EVERYTHING, now=NOW, lang="fr")  # type: ignore[arg-type]


def test_every_summary_fits_with_every_subject(knowledge: Knowledge) -> None:
    for kind in knowledge.cards.kinds.values():
        for lang in ("en", "id"):
            one = kind.summary(lang).format(subjects=max(
                (t(lang) for t in kind.subjects.values()), key=len))
            assert len(one) < 140, one


def test_a_long_subject_list_is_shortened_to_fit() -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW, lang="id")
    assert all(len(c.summary) < 140 for c in result.cards)


def test_no_red_flag_card_without_a_patient_lacks_only_suggestions() -> None:
    resources = [r for r in EVERYTHING if r["resourceType"] != "Patient"]
    resources = [{k: v for k, v in r.items() if k != "subject"} for r in resources]
    result = twitch_cds.evaluate(resources, now=NOW)
    assert result.patient is None
    assert result.cards[0].kind == "red-flag" and result.cards[0].suggestions is None


def test_the_trace_names_rules_facts_and_derived_findings() -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    low = next(d for d in result.trace.derived if d.name == "low-electrolyte")
    assert low.values["analyte"] == "potassium" and low.evidence == ["Observation/k"]
    firing = next(f for f in result.trace.fired if f.rule_id == "red-flag-weakness")
    assert firing.facts["sign"].reference == "Observation/w"
    estrogen = next(f for f in result.trace.fired if f.rule_id == "drug-exposure"
                    and f.facts["drug"].reference == "MedicationStatement/coc")
    assert estrogen.facts["drug"].match == "name"
    assert firing.version == "1.1.0"
