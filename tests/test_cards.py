"""Cards out: CDS Hooks 2.0 shape, order, evidence, languages, stable uuids."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

import twitch_cds
from twitch_cds.card_builder import EXTENSION_KEY
from twitch_cds.card_text import (
    distinct_quotes,
    localise_number_text,
    markers,
    parts_summary,
    render_message,
    summary_text,
)
from twitch_cds.cds_hooks import INDICATOR_ORDER, Card
from twitch_cds.knowledge.bundle import Knowledge, default_knowledge
from twitch_cds.knowledge.cardtexts import CardTexts
from twitch_cds.knowledge.orders import Orders
from twitch_cds.knowledge.rules import KnowledgeSource

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
    condition("myo", ICD, "G25.3"),
]
BENIGN = [EVERYTHING[0], twitching(),
          *(r for r in EVERYTHING[2:] if r.get("id") not in {"w", "n", "a", "als", "myo"})]
"""EVERYTHING without its red flags, known disease and myoclonus: reassurance is withheld
beside them."""
KINDS = {"red-flag", "electrolytes", "medication", "conditions", "explanation"}
"""The cards (contract 3.0): every card but the service's check-incomplete."""


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


def _parts(card: Card) -> list[str]:
    return list((card.extension or {})[EXTENSION_KEY]["kinds"])


def test_one_card_for_every_drug_class_and_one_for_every_condition() -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    assert len(result.cards) == 4  # red flag, electrolytes, medication, conditions
    meds = [c for c in result.cards if c.kind == "medication"]
    assert len(meds) == 1 and meds[0].indicator == "warning"
    assert all(word in (meds[0].detail or "") for word in ("diuretic", "corticosteroid",
                                                            "estrogen"))
    assert "diuretic, corticosteroid, estrogen-containing drug" in meds[0].summary
    # fibromyalgia, ALS (known disease) and myoclonus on one card; myoclonus leads
    conditions = [c for c in result.cards if c.kind == "conditions"]
    assert len(conditions) == 1 and conditions[0].summary.startswith("Myoclonus on record")
    assert _parts(conditions[0]) == ["associated-condition", "known-disease", "myoclonus"]
    assert "Fibromyalgia" in (conditions[0].detail or "")


def test_cards_name_their_evidence_with_values() -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    electrolytes = next(c for c in result.cards if c.kind == "electrolytes")
    assert "`Observation/k`: Potassium 3.1 mmol/L (lab range 3.5–5.1 mmol/L), 2026-11-18\n" in (
        electrolytes.detail or "")
    red = result.cards[0]
    for ref in ("Observation/tw1", "Observation/w", "Observation/n", "Observation/a"):
        assert f"`{ref}`" in (red.detail or "")
    estrogen = next(c for c in result.cards if c.kind == "medication")
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
    assert id_.cards[0].summary.startswith("Fasikulasi tungkai dengan tanda bahaya")
    assert all(a.summary != b.summary for a, b in zip(en.cards, id_.cards, strict=True))
    assert "Kalium 3,1 mmol/L" in next(c.detail or "" for c in id_.cards
                                if c.kind == "electrolytes")
    with pytest.raises(ValueError, match="lang"):
        twitch_cds.evaluate(EVERYTHING, now=NOW, lang="fr")  # type: ignore[arg-type]


def test_a_card_of_several_causes_names_each_with_its_action(knowledge: Knowledge) -> None:
    """Every combination of a card's parts (the benign causes), in both languages: one
    distinct cause leaves the lead kind's summary; two or more give the card's own summary,
    under 140 characters, naming every cause and every action."""
    and_ = knowledge.cards.labels["and"]
    checked = 0
    for plan in knowledge.cards.cards.values():
        for size in range(len(plan.parts) + 1):
            for chosen in itertools.combinations(plan.parts, size):
                for lang in ("en", "id"):
                    summary = parts_summary(plan, set(chosen), lang, and_)
                    causes = {plan.parts[k].cause(lang) for k in chosen}
                    if len(causes) < 2:
                        assert summary is None
                        continue
                    checked += 1
                    assert summary is not None and len(summary) < 140, summary
                    assert all(plan.parts[k].cause(lang) in summary
                               and plan.parts[k].action(lang) in summary for k in chosen)
    assert checked > 0


def test_every_summary_fits_with_every_combination_of_subjects(knowledge: Knowledge) -> None:
    """Every subset of every kind's subjects, in both languages: under 140 characters; a red
    flag card (critical) names every one of its subjects, all six at once included; the
    other kinds name at least their first subject (a long list may end in ``+N``)."""
    shortened: dict[str, int] = {}
    for name, kind in knowledge.cards.kinds.items():
        subjects = list(kind.subjects)
        if kind.summary_subjects_of is not None:  # it lists another kind's subjects
            listed = knowledge.cards.kinds[kind.summary_subjects_of].subjects
            subjects = [s for s in subjects if s in listed]
        sizes = len(subjects)  # one card for every subject of a kind (contract 3.0)
        for size in range(1, sizes + 1):
            for chosen in itertools.combinations(subjects, size):
                for lang in ("en", "id"):
                    summary = summary_text(kind, list(chosen), lang)
                    assert 0 < len(summary) < 140, summary
                    labels = [kind.subjects[s](lang) for s in chosen]
                    named = "{subjects}" not in kind.summary(lang) or (
                        all(label in summary for label in labels) and "+" not in summary)
                    if name == "red-flag":  # every flag named
                        assert named, summary
                    else:
                        assert labels[0] in summary or "{subjects}" not in kind.summary(lang)
                        shortened[name] = shortened.get(name, 0) + (not named)
    orders = {"en": ("K, Na, Mg, Ca and creatinine", "sweat loss, on a diuretic"),
              "id": ("K, Na, Mg, Ca, dan kreatinin",
                     "kehilangan elektrolit lewat keringat, menggunakan diuretik")}
    kind = knowledge.cards.kinds["electrolyte-depletion"]
    for size in range(1, len(kind.subjects) + 1):  # the longest orders, with every subset
        for chosen in itertools.combinations(kind.subjects, size):
            for lang, (tests, reasons) in orders.items():
                summary = summary_text(kind, list(chosen), lang, tests, reasons)
                assert 0 < len(summary) < 140 and tests in summary, summary
                assert kind.subjects["no-current-panel"](lang) not in summary, summary
    red = knowledge.cards.kinds["red-flag"]
    assert len(red.subjects) >= 6
    # a list of conditions may end in +N (the card's detail names each); the rest never do
    assert all(count == 0 for kind, count in shortened.items()
               if kind not in ("electrolyte-depletion", "associated-condition",
                               "known-disease")), shortened


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
    weakness = default_knowledge().rules_by_id["red-flag-weakness"].rule
    assert firing.version == weakness.maintenance.version


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.json"))
EXAMPLE_NOW = "2026-11-24T09:00:00Z"


def _results(lang: str) -> list[twitch_cds.EvaluationResult]:
    inputs = [json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES] + [EVERYTHING]
    return [twitch_cds.evaluate(data, now=EXAMPLE_NOW, lang=lang) for data in inputs]


@pytest.mark.parametrize("lang", ["en", "id"])
def test_each_resource_is_cited_once_per_card(lang: str) -> None:
    """Over every example and both languages: each resource behind a card appears exactly
    once in its detail (one evidence list, bullets point into it by number), every resource
    in ``result.evidence`` is there, and each article sentence is quoted once (a card of
    general clinical knowledge only, such as a critical lab, cites its reference instead)."""
    cards = 0
    for result in _results(lang):
        for card in result.cards:
            cards += 1
            detail = card.detail or ""
            cited = result.evidence[str(card.uuid)]
            assert cited, card.summary
            for ref in cited:
                assert detail.count(f"`{ref}`") == 1, (ref, detail)
            assert set(re.findall(r"`([A-Za-z]+/[^`]+)`", detail)) == set(cited)
            quotes = [line for line in detail.splitlines()
                      if line.startswith("> ") and not line.startswith(("> (", "> —"))]
            # a card whose every line is general clinical knowledge quotes no article
            beyond = default_knowledge().cards.labels["beyond_article"](lang)  # type: ignore[arg-type]
            assert quotes or f"**{beyond}**" in detail, detail
            assert len(quotes) == len(set(quotes)), detail
    assert cards > 20


def test_bullets_point_into_the_evidence_list() -> None:
    result = twitch_cds.evaluate(json.loads(EXAMPLES[1].read_text(encoding="utf-8")),
                                 now=EXAMPLE_NOW)
    electrolytes = next(c for c in result.cards if c.kind == "electrolytes")
    detail = electrolytes.detail or ""
    assert detail.count("`Observation/tw-1123`") == 1
    listed = dict(re.findall(r"^(\d+)\. `([^`]+)`", detail, re.M))
    assert listed["1"] == "Observation/tw-1123" and listed["2"] == "Observation/k-1123"
    potassium = next(line for line in detail.splitlines() if line.startswith("- Low potassium"))
    assert potassium.endswith("[1, 2]")
    assert "Rules" not in detail and "1.0.0" not in detail and "1.1.0" not in detail


def test_the_card_extension_names_its_rules_and_the_ruleset(knowledge: Knowledge) -> None:
    result = twitch_cds.evaluate(EVERYTHING, now=NOW)
    versions = {c.rule.id: c.rule.maintenance.version for c in knowledge.rules}
    concluding = {c.rule.id: c.rule.knowledge.conclude.card for c in knowledge.rules
                  if c.rule.knowledge.conclude}
    fired = {f.rule_id for f in result.trace.fired}
    for card in result.cards:
        data = card.to_json()
        extension = data["extension"][EXTENSION_KEY]
        assert extension["ruleset"] == result.trace.ruleset_version
        ids = [r["id"] for r in extension["rules"]]
        assert ids == sorted(set(ids)) and ids
        for rule in extension["rules"]:
            assert rule["version"] == versions[rule["id"]]
            assert rule["id"] in fired and concluding[rule["id"]] in extension["kinds"]
            assert rule["id"] not in (card.detail or "")
        plan = knowledge.cards.cards[card.kind or ""]
        assert set(extension["kinds"]) <= set(plan.kinds)
        assert set(ids) == {r for r in fired if concluding.get(r) in plan.kinds}
        assert Card.model_validate(data) == card
    red = result.cards[0].to_json()["extension"][EXTENSION_KEY]["rules"]
    assert {"id": "red-flag-weakness", "version": versions["red-flag-weakness"],
            "validation": "testing"} in red


ENGLISH_MARKERS = re.compile(
    r"\b(the|and|with|see a doctor|evidence|rules|twitching|may|can|of|on record)\b",
    re.IGNORECASE)


def _our_texts(card: Card) -> list[str]:
    """Every text on a card that twitch-cds writes, without the record's own words: the
    evidence lines quote each record's display or name as sent, so only their part after the
    reference is left out (our words in them are checked on their own)."""
    texts = [card.summary, card.source.label]
    if card.source.topic and card.source.topic.display:
        texts.append(card.source.topic.display)
    texts += [r.display or "" for r in card.overrideReasons or []]
    texts += [link.label for link in card.links or []]  # the rules' titles
    for suggestion in card.suggestions or []:
        texts.append(suggestion.label)
        for action in suggestion.actions or []:
            texts.append(action.description)
            texts.append(str(((action.resource or {}).get("code") or {}).get("text", "")))
    texts += [line for line in (card.detail or "").splitlines()
              if not re.match(r"^\d+\. `", line) and not _is_reference(line)]
    return texts


def _is_reference(line: str) -> bool:
    """A line naming a guideline or reference behind general clinical knowledge
    (``library.knowledge_source``): a published title, quoted as published, like the
    article's own sentences."""
    return line.startswith("- ") and any(
        line[2:].strip("`").startswith(source.reference) for source in _knowledge_sources())


def _knowledge_sources() -> list[KnowledgeSource]:
    return [c.rule.library.knowledge_source for c in default_knowledge().rules
            if c.rule.library.knowledge_source is not None]


def test_indonesian_cards_carry_no_english_of_ours(knowledge: Knowledge) -> None:
    english_words = [word for w in knowledge.cards.evidence_words.values()  # "{sex}, age {age}":
                     for part in re.split(r"\{[^}]*\}", w.en)      # "age"
                     if (word := part.strip(" ,;:()"))]
    statuses = list(knowledge.cards.status_words.values())
    for result in _results("id"):
        for card in result.cards:
            for text in _our_texts(card):
                assert not ENGLISH_MARKERS.search(text), text
            for line in (card.detail or "").splitlines():
                if re.match(r"^\d+\. `", line):  # an evidence line: our words in it
                    assert not any(re.search(rf"\b{re.escape(w)}\b", line)
                                   for w in english_words), line
                    assert "recognised" not in line
                    assert not any(f"({w.en}" in line for w in statuses), line
            assert not re.search(r"\d\.\d", card.detail or ""), card.detail


def test_the_english_marker_check_can_fail() -> None:
    english = twitch_cds.evaluate(EVERYTHING, now=NOW, lang="en")
    assert all(any(ENGLISH_MARKERS.search(t) for t in _our_texts(c)) for c in english.cards)


def test_numbers_are_written_the_languages_way() -> None:
    assert render_message("K {lab.value:.1f} mmol/L", "id", {"lab": {"value": 3.14}}) \
        == "K 3,1 mmol/L"
    assert render_message("K {lab.value:.1f} mmol/L", "en", {"lab": {"value": 3.14}}) \
        == "K 3.1 mmol/L"
    assert render_message("{x.n:.0f} hari, {x.s}", "id", {"x": {"n": 176.4, "s": "a.b"}}) \
        == "176 hari, a.b"
    assert render_message("{x.missing:.1f}", "id", {"x": {}}) == "?"
    assert render_message("{subject} may explain it", "en", {}, "low potassium") \
        == "Low potassium may explain it"
    text = "Kalium 3.1 mmol/L (nilai rujukan lab 3.5–5.1 mmol/L), 2026-11-18, G12.21, 1.0.0"
    assert localise_number_text(text, "id") == (
        "Kalium 3,1 mmol/L (nilai rujukan lab 3,5–5,1 mmol/L), 2026-11-18, G12.21, 1.0.0")
    assert localise_number_text(text, "en") == text


def test_indonesian_suggestions_are_indonesian_and_valid_fhir() -> None:
    resources = [r for r in EVERYTHING if r.get("resourceType") != "MedicationStatement"]
    result = twitch_cds.evaluate(resources, now=NOW, lang="id")
    red = result.cards[0]
    assert red.suggestions
    action = (red.suggestions[0].actions or [])[0]
    assert action.description.startswith("Evaluasi neurologis segera")
    assert action.resource and action.resource["code"]["text"] == action.description
    ServiceRequest.model_validate(action.resource)
    english = twitch_cds.evaluate(resources, now=NOW, lang="en").cards[0]
    assert (english.suggestions or [])[0].label != red.suggestions[0].label


def test_a_suggestion_an_ehr_cannot_route_is_refused_at_load(knowledge: Knowledge) -> None:
    orders = knowledge.orders.model_dump()
    orders["procedures"]["neurology-referral"]["coding"]["system"] = (
        "https://twitch-cds.github.io/fhir/CodeSystem/twitch-cds")
    with pytest.raises(ValueError, match="not LOINC or SNOMED CT"):
        Orders.model_validate(orders)
    orders = knowledge.orders.model_dump()
    orders["tests"]["potassium"]["text"] = {"en": "Serum potassium", "id": ""}
    with pytest.raises(ValueError, match="id"):
        Orders.model_validate(orders)
    assert Orders.model_validate(knowledge.orders.model_dump()) == knowledge.orders
    cards = knowledge.cards.model_dump()
    cards["suggestions"]["neurology-referral"]["tests"] = ["potassium"]
    with pytest.raises(ValueError, match="either a procedure or tests"):
        CardTexts.model_validate(cards)


def test_article_passages_and_markers_are_written_once() -> None:
    sentence = "Memijat otot yang berkedut dapat membantu."
    paragraph = f"Tetap hangat. {sentence} Lalu istirahat."
    assert distinct_quotes([sentence, paragraph, "Lain."]) == [paragraph, "Lain."]
    assert distinct_quotes(["A.", "A.", "B."]) == ["A.", "A.", "B."]  # equal ones: a dict upstream
    assert markers([1]) == "[1]"
    assert markers([4, 1, 2]) == "[1, 2, 4]"
    assert markers([1, 2, 3, 5, 7, 8, 9, 10]) == "[1–3, 5, 7–10]"


PATIENT_VOICE = re.compile(r"\b(you|your|see a doctor|how to twitch less)\b", re.IGNORECASE)
"""Words that address the patient: cards are read by the clinician."""
ID_MISTRANSLATIONS = ("mudah tersinggung", "dapat merupakan", "kata artikel", "temui dokter")
"""Machine-translation slips of the source article that our own Indonesian must not repeat
(verbatim article quotations, ``citation.text``, may keep them)."""


def _card_texts(knowledge: Knowledge) -> list[tuple[str, str, str]]:
    """(where, lang, text) for every text of ours a card can show."""
    cards = knowledge.cards
    out: list[tuple[str, str, str]] = []
    def add(where: str, text: Any) -> None:
        out.extend((where, lang, text(lang)) for lang in ("en", "id"))
    for name, kind in cards.kinds.items():
        add(f"{name}.summary", kind.summary)
        add(f"{name}.display", kind.display)
        for subject, label in kind.subjects.items():
            add(f"{name}.{subject}", label)
    for key, label in cards.labels.items():
        add(f"labels.{key}", label)
    for key, suggestion in cards.suggestions.items():
        for text in (suggestion.label, suggestion.text, suggestion.reason):
            if text is not None:
                add(f"suggestions.{key}", text)
    for compiled in knowledge.rules:
        message = compiled.rule.knowledge.message
        out += [(compiled.rule.id, "en", message.en), (compiled.rule.id, "id", message.id)]
    return out


def test_card_texts_speak_to_the_clinician(knowledge: Knowledge) -> None:
    for where, lang, text in _card_texts(knowledge):
        if lang == "en":
            assert not PATIENT_VOICE.search(text), (where, text)
        else:
            assert not any(slip in text.lower() for slip in ID_MISTRANSLATIONS), (where, text)
    for compiled in knowledge.rules:
        conclude = compiled.rule.knowledge.conclude
        if conclude and conclude.card == "self-care":  # advice to give, not to follow
            text = compiled.rule.knowledge.message.en.lower()
            assert "advise" in text or "the patient" in text, (compiled.rule.id, text)
