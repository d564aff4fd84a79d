"""Orders an EHR can route, summaries that say what to do, an honest source, Indonesian
words for our own codes (issue 16)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fhir.resources import get_fhir_model_class as r5_model
from fhir.resources.R4B import get_fhir_model_class as r4b_model

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.orders import STANDARD_SYSTEMS, as_r5
from twitch_cds.knowledge.scenarios import scenario_input

from .builders import NOW, OURS, lab, med_statement, obs, twitching

REPO = Path(__file__).resolve().parent.parent
CHARTS = [*sorted((REPO / "examples").glob("*.json")),
          *sorted((REPO / "tests" / "scenarios").glob("*.yaml"))]
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _evaluate(path: Path, lang: str) -> twitch_cds.EvaluationResult:
    if path.suffix == ".json":
        return twitch_cds.evaluate(json.loads(path.read_text()), now=NOW, lang=lang)  # type: ignore[arg-type]
    scenario = yaml.safe_load(path.read_text())
    return twitch_cds.evaluate(scenario_input(scenario, REPO), now=scenario["now"],
                               lang=lang, parameters=scenario.get("parameters"))  # type: ignore[arg-type]


def _requests(result: twitch_cds.EvaluationResult) -> list[dict[str, Any]]:
    return [a.resource for c in result.cards for s in c.suggestions or ()
            for a in s.actions or () if a.resource]


@pytest.mark.parametrize("lang", ["en", "id"])
def test_every_suggestion_is_a_routable_r4_and_r5_service_request(lang: str,
                                                                   knowledge: Knowledge) -> None:
    """Over every example and scenario: standard codes only, each one an orders.yaml entry
    with its verification mark, valid as R4B and (reshaped) R5 ServiceRequests."""
    known = {o.coding.code: o for o in [*knowledge.orders.tests.values(),
                                        *knowledge.orders.panels.values(),
                                        *knowledge.orders.procedures.values()]}
    seen = 0
    for path in CHARTS:
        for resource in _requests(_evaluate(path, lang)):
            seen += 1
            if "concept" in resource["code"]:  # an R5 chart gets R5 suggestions
                r5_model("ServiceRequest").model_validate(resource)
                codings = resource["code"]["concept"]["coding"]
            else:
                r4b_model("ServiceRequest").model_validate(resource)
                r5_model("ServiceRequest").model_validate(as_r5(resource))
                codings = resource["code"]["coding"]
            for coding in codings:
                assert coding["system"] in STANDARD_SYSTEMS, (path.name, coding)
                assert known[coding["code"]].verification in ("V", "W")
    assert seen > 10


def test_one_test_is_asked_for_once_whatever_the_reasons() -> None:
    """Sweat loss and a diuretic, no labs: one bullet names every test due and both reasons;
    one suggestion orders a basic metabolic panel (with creatinine) and magnesium."""
    chart = [{"resourceType": "Patient", "id": "p1"}, twitching(),
             obs("sweat", OURS, "heavy-sweating"),
             med_statement("hctz", [{"system": RXNORM, "code": "5487"}])]
    card = next(c for c in twitch_cds.evaluate(chart, now=NOW).cards
                if c.kind == "electrolyte-depletion")
    bullets = [line for line in (card.detail or "").splitlines() if "No current" in line]
    assert len(bullets) == 1 and "potassium, sodium, magnesium or calcium" in bullets[0]
    assert "sweat loss" in bullets[0] and "on a diuretic" in bullets[0]
    assert card.summary.endswith("order K, Na, Mg, Ca and creatinine")
    assert len(card.suggestions or []) == 1
    codes = [c["code"] for r in _requests_of(card) for c in r["code"]["coding"]]
    assert codes == ["24321-2", "19123-9"]


def _requests_of(card: Any) -> list[dict[str, Any]]:
    return [a.resource for s in card.suggestions or () for a in s.actions or () if a.resource]


def test_not_checked_recently_only_for_what_was_not() -> None:
    """Potassium and magnesium measured yesterday, after sweat loss: only sodium and calcium
    are due, and the card says so by name."""
    chart = [{"resourceType": "Patient", "id": "p1"}, twitching(),
             obs("sweat", OURS, "heavy-sweating"),
             lab("k", "2823-3", 4.2, "mmol/L", low=3.5, high=5.1, date="2026-11-23T08:00:00Z"),
             lab("mg", "19123-9", 2.0, "mg/dL", low=1.7, high=2.2, date="2026-11-23T08:00:00Z")]
    card = next(c for c in twitch_cds.evaluate(chart, now=NOW).cards
                if c.kind == "electrolyte-depletion")
    assert "not checked recently" not in card.summary + (card.detail or "")
    assert "order Na and Ca" in card.summary
    assert "No current sodium or calcium result (sweat loss)" in (card.detail or "")
    assert [c["code"] for r in _requests_of(card) for c in r["code"]["coding"]] == ["24321-2"]


def test_panels_are_chosen_as_labs_order_them(knowledge: Knowledge) -> None:
    plan = knowledge.orders.plan
    assert [o.coding.code for o in plan(["calcium"])] == ["17861-6"]
    assert [o.coding.code for o in plan(["potassium", "sodium"])] == ["24326-1"]
    assert [o.coding.code for o in plan(["potassium", "calcium", "magnesium"])] == [
        "24321-2", "19123-9"]
    assert [o.coding.code for o in plan(["magnesium", "creatinine"])] == ["19123-9", "2160-0"]
    assert plan([]) == []


def test_the_red_flag_card_refers_to_neurology_with_snomed_ct() -> None:
    chart = [{"resourceType": "Patient", "id": "p1"}, twitching(),
             obs("w", "http://snomed.info/sct", "26544005")]
    red = twitch_cds.evaluate(chart, now=NOW).cards[0]
    (request,) = _requests_of(red)
    assert request["code"]["coding"][0] == {"system": "http://snomed.info/sct",
                                             "code": "308474002",
                                             "display": "Referral to neurologist (procedure)"}
    assert request["priority"] == "urgent"


@pytest.mark.parametrize("lang", ["en", "id"])
def test_the_source_says_what_the_knowledge_is_and_links_each_rule(
        lang: str, knowledge: Knowledge) -> None:
    chart = [{"resourceType": "Patient", "id": "p1"}, twitching(),
             obs("sweat", OURS, "heavy-sweating")]
    result = twitch_cds.evaluate(chart, now=NOW, lang=lang)  # type: ignore[arg-type]
    for card in result.cards:
        label = card.source.label
        assert "John Su" in label and "Joel Stager" in label and "Los Angeles Times" in label
        assert ("lay patient article" if lang == "en" else "artikel awam") in label
        rules = [r["id"] for r in (card.extension or {})["twitch-cds"]["rules"]]
        urls = [link.url for link in card.links or ()]
        assert sorted(urls) == sorted(
            f"https://twitch-cds.github.io/catalogue/{lang}/rules/{r}.html" for r in rules)
        assert card.source.url in urls
        # each link is labelled with the rule's title in the card's language, not its id
        prefix = "Rule in the catalogue: " if lang == "en" else "Aturan di katalog: "
        for link in card.links or ():
            rule = knowledge.rules_by_id[str(link.url).rsplit("/", 1)[1][:-len(".html")]].rule
            assert link.label == prefix + rule.library.name(lang)
            assert rule.id not in link.label
    other = twitch_cds.evaluate(chart, now=NOW, lang=lang,  # type: ignore[arg-type]
                                catalogue="https://cds.example.org/rules-catalogue/")
    assert all(str(c.source.url).startswith(f"https://cds.example.org/rules-catalogue/{lang}/"
                                            "rules/") for c in other.cards)


def test_section_titles_are_in_the_cards_language(knowledge: Knowledge) -> None:
    """English cards never print an article heading as a title: each is quoted after an
    English one; every section a rule cites has titles in both languages."""
    cited = {c.rule.library.citation.section for c in knowledge.rules
             if c.rule.library.citation is not None}  # general knowledge cites no section
    assert cited <= set(knowledge.cards.sections)
    for path in CHARTS[:12]:
        for card in _evaluate(path, "en").cards:
            for line in (card.detail or "").splitlines():
                if line.startswith("> (") and "“" in line:
                    assert re.match(r"> \([A-Z][a-z ,']+; heading in the article: “", line), line


def test_corrections_are_article_sentences_shown_on_indonesian_cards_only(
        knowledge: Knowledge) -> None:
    article = next((REPO.parent / "shared" / "source").glob("000_*.txt"), None)
    if article is not None:
        text = article.read_text()
        assert all(c.text in text for c in knowledge.cards.corrections)
    chart = [{"resourceType": "Patient", "id": "p1"}, twitching(),
             obs("sweat", OURS, "heavy-sweating")]
    english = twitch_cds.evaluate(chart, now=NOW).cards[0].detail or ""
    indonesian = twitch_cds.evaluate(chart, now=NOW, lang="id").cards[0].detail or ""
    assert "kerutan" in indonesian and "Bacaan yang benar" in indonesian
    assert "kedutan atau kram" in indonesian
    assert "Bacaan yang benar" not in english


def test_our_own_codes_are_indonesian_on_indonesian_cards() -> None:
    chart = [{"resourceType": "Patient", "id": "p1"}, twitching(),
             {**obs("sweat", OURS, "heavy-sweating"), "code": {"text": "Heavy sweating", "coding": [
                 {"system": OURS, "code": "heavy-sweating", "display": "Heavy sweating"}]}},
             obs("heat", OURS, "hot-humid-weather")]
    detail = twitch_cds.evaluate(chart, now=NOW, lang="id").cards[0].detail or ""
    assert "Berkeringat banyak" in detail and "cuaca panas atau lembap" in detail
    assert "Heavy sweating" not in detail and "humid" not in detail
    english = twitch_cds.evaluate(chart, now=NOW).cards[0].detail or ""
    assert "Heavy sweating" in english


def test_an_r5_chart_gets_r5_service_requests() -> None:
    """R5 made ServiceRequest.code a CodeableReference and reasonReference a reason."""
    chart = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        {"resource": twitching()},
        {"resource": {"resourceType": "MedicationStatement", "id": "hctz", "status": "recorded",
                      "medication": {"concept": {"coding": [{"system": RXNORM, "code": "5487"}]}},
                      "subject": {"reference": "Patient/p1"},
                      "effectiveDateTime": "2026-11-01"}}]}
    result = twitch_cds.evaluate(chart, now=NOW)
    card = next(c for c in result.cards if c.kind == "electrolyte-depletion")
    requests = _requests_of(card)
    assert requests and all("concept" in r["code"] and "reasonReference" not in r
                            and r["reason"] for r in requests)
    for request in requests:
        r5_model("ServiceRequest").model_validate(request)


def test_at_order_sign_each_test_is_ordered_on_one_card_only() -> None:
    """A diuretic on record with no labs, and another diuretic being ordered: the electrolyte
    card orders the panel; the draft order's card keeps its monitoring advice but does not
    order the same tests again."""
    scenario = yaml.safe_load((REPO / "tests" / "scenarios"
                               / "024-order-sign-draft-diuretic.yaml").read_text())
    request = scenario["input"]
    request["prefetch"]["medicationStatements"] = {
        "resourceType": "Bundle", "type": "searchset", "entry": [{"resource": med_statement(
            "furo", [{"system": RXNORM, "code": "4603"}], effectiveDateTime="2026-11-01")}]}
    result = twitch_cds.evaluate(request, now=scenario["now"])
    codes = [c["code"] for r in _requests(result) for c in r["code"]["coding"]]
    assert sorted(codes) == ["19123-9", "24321-2"]
    ordering = next(c for c in result.cards if c.kind == "electrolyte-depletion")
    assert len(_requests_of(ordering)) == 2
    draft = next(c for c in result.cards if c.kind == "medication-side-effect"
                 and "Before starting the diuretic" in (c.detail or ""))
    assert not draft.suggestions


def test_every_code_of_ours_has_an_indonesian_designation() -> None:
    codesystem = json.loads(
        (REPO / "rulesets" / "terminology" / "codesystem-twitch-cds.json").read_text())
    pending, missing = list(codesystem["concept"]), []
    while pending:
        concept = pending.pop()
        pending += concept.get("concept") or ()
        if not any(d.get("language") == "id" and d.get("value")
                   for d in concept.get("designation") or ()):
            missing.append(concept["code"])
    assert not missing
